// Registered push devices, per user. A device is the MQTT clientId
// `<user>:<deviceId>`; its push token belongs to one (user, device) at a
// time, so when a phone changes account the old registration is dropped and
// the previous user's notifications stop going to it. A user holds at most
// `limit` registrations (re-registering a device is not a new one).
// Redis: push/redis-device-registry.ts; embedded: LevelDeviceRegistry here.
import { ClassicLevel } from 'classic-level'

export interface RegisteredDevice {
  deviceId: string
  platform: 'ios' | 'android'
  token: string
  /** APNs only (always false for android). */
  sandbox: boolean
  /** ms; APNs' 410 only removes a token if it was unregistered after this. */
  registeredAt: number
}

export interface DeviceRegistry {
  /**
   * Registers (or updates) the device. Refused ('limit') when it is a new
   * device and the user already holds `limit` others (0: no limit); then
   * nothing changes, not even the token's previous owner.
   */
  put (user: string, device: RegisteredDevice, limit?: number): Promise<'registered' | 'limit'>
  /** Returns false if there was no such device. */
  remove (user: string, deviceId: string): Promise<boolean>
  /**
   * Removes the device only while it still has `token` (it may have
   * re-registered meanwhile) and, if `registeredAt` is given, only while it
   * is still that registration (not registered again, even with the same token).
   */
  removeToken (user: string, deviceId: string, token: string, registeredAt?: number): Promise<void>
  list (user: string): Promise<RegisteredDevice[]>
  close (): Promise<void>
}

function isRegistration (stored: RegisteredDevice, token: string, registeredAt: number | undefined): boolean {
  return stored.token === token && (registeredAt === undefined || stored.registeredAt === registeredAt)
}

/** Embedded mode: `d!<user>!<deviceId>` → device JSON, `t!<token>` → `<user>:<deviceId>`. */
export class LevelDeviceRegistry implements DeviceRegistry {
  #writes: Promise<void> = Promise.resolve()

  private constructor (private readonly db: ClassicLevel<string, string>, private readonly write: { sync: boolean }) {}

  /** `sync`: fsync each change before it is acknowledged (DURABILITY=disk). */
  static async open (path: string, options: { sync?: boolean } = {}): Promise<LevelDeviceRegistry> {
    const db = new ClassicLevel<string, string>(path, { valueEncoding: 'utf8' })
    await db.open()
    return new LevelDeviceRegistry(db, { sync: options.sync ?? false })
  }

  /** Writes run one at a time, so a count and the write it allows cannot interleave with another's. */
  #serial<T> (work: () => Promise<T>): Promise<T> {
    const result = this.#writes.then(work)
    this.#writes = result.then(() => {}, () => {})
    return result
  }

  put (user: string, device: RegisteredDevice, limit = 0): Promise<'registered' | 'limit'> {
    return this.#serial(async () => {
      const owner = `${user}:${device.deviceId}`
      const replaced = await this.db.get(`d!${user}!${device.deviceId}`)
      const previousOwner = await this.db.get(`t!${device.token}`)
      if (replaced === undefined && limit > 0) {
        let count = (await this.db.keys({ gt: `d!${user}!`, lt: `d!${user}!~`, limit }).all()).length
        // The token moving from another device of the same user frees that one.
        const previous = previousOwner?.startsWith(`${user}:`) === true ? await this.db.get(`d!${user}!${previousOwner.slice(user.length + 1)}`) : undefined
        if (previous !== undefined && (JSON.parse(previous) as RegisteredDevice).token === device.token) count--
        if (count >= limit) return 'limit'
      }
      if (previousOwner !== undefined && previousOwner !== owner) {
        const colon = previousOwner.indexOf(':')
        await this.#removeToken(previousOwner.slice(0, colon), previousOwner.slice(colon + 1), device.token)
      }
      const ops: Array<{ type: 'put', key: string, value: string } | { type: 'del', key: string }> = []
      if (replaced !== undefined) {
        const old = JSON.parse(replaced) as RegisteredDevice
        if (old.token !== device.token && await this.db.get(`t!${old.token}`) === owner) ops.push({ type: 'del', key: `t!${old.token}` })
      }
      ops.push({ type: 'put', key: `d!${user}!${device.deviceId}`, value: JSON.stringify(device) }, { type: 'put', key: `t!${device.token}`, value: owner })
      await this.db.batch(ops, this.write)
      return 'registered'
    })
  }

  remove (user: string, deviceId: string): Promise<boolean> {
    return this.#serial(async () => {
      const stored = await this.db.get(`d!${user}!${deviceId}`)
      if (stored === undefined) return false
      await this.#removeToken(user, deviceId, (JSON.parse(stored) as RegisteredDevice).token)
      return true
    })
  }

  removeToken (user: string, deviceId: string, token: string, registeredAt?: number): Promise<void> {
    return this.#serial(() => this.#removeToken(user, deviceId, token, registeredAt))
  }

  async #removeToken (user: string, deviceId: string, token: string, registeredAt?: number): Promise<void> {
    const stored = await this.db.get(`d!${user}!${deviceId}`)
    if (stored === undefined || !isRegistration(JSON.parse(stored) as RegisteredDevice, token, registeredAt)) return
    const ops: Array<{ type: 'del', key: string }> = [{ type: 'del', key: `d!${user}!${deviceId}` }]
    if (await this.db.get(`t!${token}`) === `${user}:${deviceId}`) ops.push({ type: 'del', key: `t!${token}` })
    await this.db.batch(ops, this.write)
  }

  async list (user: string): Promise<RegisteredDevice[]> {
    const values = await this.db.values({ gt: `d!${user}!`, lt: `d!${user}!~` }).all()
    return values.map((json) => JSON.parse(json) as RegisteredDevice)
  }

  async close (): Promise<void> {
    await this.db.close()
  }
}
