// The rules of the MLS KeyPackage directory (docs/protocol.md, "MLS KeyPackages"):
// a device uploads checked packages for itself; anyone adding users to a group
// claims one package per device of each, except from users who blocked them.
import { KeyPackageRejected, type KeyPackageChecker } from './mls-key-package-check.ts'
import type { KeyPackageCount, MlsKeyPackageStore, UploadRefusal } from './mls-key-packages.ts'

/** The directory's bounds (docs/protocol.md, Limits). */
export const MLS_KEY_PACKAGE_LIMITS = {
  /** One-time KeyPackages one device may hold (and upload in one call). */
  perDevice: 100,
  /** Devices of one user that may hold KeyPackages. */
  devicesPerUser: 50,
  /** Users named in one claim. */
  usersPerClaim: 20
} as const

export type MlsKeyPackageErrorCode = 'invalid_key_package' | UploadRefusalCode

type UploadRefusalCode = 'last_resort_required' | 'too_many_key_packages' | 'too_many_key_package_devices' | 'duplicate_key_package'

const REFUSAL: Record<UploadRefusal, UploadRefusalCode> = {
  last_resort_required: 'last_resort_required',
  too_many_packages: 'too_many_key_packages',
  too_many_devices: 'too_many_key_package_devices',
  duplicate: 'duplicate_key_package'
}

/** An upload the rules refuse; the door maps `code` to a status. `field` names the offending package. */
export class MlsKeyPackageRejected extends Error {
  constructor (readonly code: MlsKeyPackageErrorCode, message: string, readonly field?: string) {
    super(message)
  }
}

export interface ClaimedPackage {
  user: string
  deviceId: string
  /** base64 of the MLSMessage, as the device uploaded it. */
  keyPackage: string
  /** The device had no one-time package left: its last-resort one, which others may get too. */
  lastResort: boolean
}

export interface MlsKeyPackageServiceOptions {
  store: MlsKeyPackageStore
  checker: KeyPackageChecker
  /** True when `blocker` blocked `user`. */
  isBlocked: (blocker: string, user: string) => Promise<boolean>
  limits?: { perDevice: number, devicesPerUser: number, usersPerClaim: number }
}

export class MlsKeyPackageService {
  readonly limits: { perDevice: number, devicesPerUser: number, usersPerClaim: number }

  constructor (private readonly options: MlsKeyPackageServiceOptions) {
    this.limits = options.limits ?? MLS_KEY_PACKAGE_LIMITS
  }

  /**
   * Checks and stores a device's upload. The cheap refusals come before the signatures are checked, and
   * the first bad package stops the checking, so an upload refused costs little CPU (about 1 ms per
   * package accepted: decoding and two Ed25519 verifications).
   */
  async upload (user: string, device: string, keyPackages: string[], lastResort?: string): Promise<KeyPackageCount> {
    const { checker, store } = this.options
    const held = await store.count(user, device)
    if (held.oneTime + keyPackages.length > this.limits.perDevice) throw refused('too_many_packages', held.oneTime, this.limits)
    if (!held.lastResort && lastResort === undefined) throw refused('last_resort_required', held.oneTime, this.limits)
    const named = [...keyPackages.map((p, i) => ({ base64: p, field: `body.keyPackages.${i}` })), ...(lastResort === undefined ? [] : [{ base64: lastResort, field: 'body.lastResort' }])]
    const parsed = named.map(({ base64, field }) => ({ field, package: rejectedAs(field, () => checker.parse(base64, user, device)) }))
    if (new Set(parsed.map((p) => p.package.ref)).size !== parsed.length) throw refused('duplicate', held.oneTime, this.limits)
    for (const { field, package: p } of parsed) await rejectedAs(field, () => checker.verify(p))
    const packages = parsed.map((p) => ({ ref: p.package.ref, data: p.package.data }))
    const last = lastResort === undefined ? undefined : packages.pop()
    const result = await store.upload(user, device, packages, last, this.limits)
    if (!result.ok) throw refused(result.reason, result.oneTime, this.limits)
    return { oneTime: result.oneTime, lastResort: true }
  }

  count (user: string, device: string): Promise<KeyPackageCount> {
    return this.options.store.count(user, device)
  }

  /**
   * One package per device of each named user (the caller's own other devices too). Users with no device
   * holding packages, and users who blocked the caller (not told apart), are in `missing`.
   */
  async claim (caller: string, users: string[]): Promise<{ keyPackages: ClaimedPackage[], missing: string[] }> {
    const unique = [...new Set(users)]
    const perUser = await Promise.all(unique.map(async (user) => {
      if (user !== caller && await this.options.isBlocked(user, caller)) return []
      return (await this.options.store.claim(user)).map((p) => ({ user, deviceId: p.device, keyPackage: p.data, lastResort: p.lastResort }))
    }))
    return {
      keyPackages: perUser.flat(),
      missing: unique.filter((_, i) => perUser[i]!.length === 0)
    }
  }

  removeDevice (user: string, device: string): Promise<boolean> {
    return this.options.store.removeDevice(user, device)
  }
}

/** `work`'s result, or its KeyPackageRejected as the upload's invalid_key_package naming `field`. */
function rejectedAs<T> (field: string, work: () => T): T {
  try {
    const result = work()
    if (result instanceof Promise) {
      return result.catch((error: unknown) => { throw asUploadError(field, error) }) as T
    }
    return result
  } catch (error) {
    throw asUploadError(field, error)
  }
}

function asUploadError (field: string, error: unknown): unknown {
  return error instanceof KeyPackageRejected ? new MlsKeyPackageRejected('invalid_key_package', `${field}: ${error.message}`, field) : error
}

function refused (reason: UploadRefusal, held: number, limits: { perDevice: number, devicesPerUser: number }): MlsKeyPackageRejected {
  return new MlsKeyPackageRejected(REFUSAL[reason], refusalMessage(reason, held, limits))
}

function refusalMessage (reason: UploadRefusal, held: number, limits: { perDevice: number, devicesPerUser: number }): string {
  switch (reason) {
    case 'last_resort_required': return 'this device has no last-resort KeyPackage: send one as lastResort with its first upload'
    case 'too_many_packages': return `this device holds ${held} one-time KeyPackages; at most ${limits.perDevice} (GET /v1/mls/key-packages/count, then upload the difference)`
    case 'too_many_devices': return `${limits.devicesPerUser} of your devices hold KeyPackages, the most allowed; retire one with DELETE /v1/mls/key-packages/:deviceId`
    case 'duplicate': return 'a KeyPackage in this upload is already stored for this device, or is in it twice'
  }
}
