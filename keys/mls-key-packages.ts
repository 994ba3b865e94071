// The MLS KeyPackage directory (docs/mls.md): each device of a user keeps a
// supply of one-time KeyPackages and one last-resort KeyPackage here; whoever
// adds the user to a group claims one per device. A one-time package is handed
// out at most once, whatever the number of processes: a claim takes it in the
// same atomic step that reads it (one Lua script on the user's slot, or one
// LevelDB batch under this process's write queue). The store keeps packages as
// opaque strings: what they contain is checked before (mls-key-package-check.ts).
import { ClassicLevel } from 'classic-level'
import { join } from 'node:path'
import type { BrokerStore } from '../storage/broker-store.ts'
import type { Config } from '../config/config.ts'
import type { RedisClient } from '../storage/redis-client.ts'
import { ownerKey, userTag } from '../storage/redis-keys.ts'

/** A package as stored: `ref` (lowercase hex SHA-256 of its bytes: 64 characters, unique per device) and its base64 `data`. */
export interface StoredKeyPackage {
  ref: string
  data: string
}

export interface KeyPackageLimits {
  /** One-time packages one device may hold. */
  perDevice: number
  /** Devices of one user that may hold packages (0: no limit). */
  devicesPerUser: number
}

export type UploadRefusal = 'last_resort_required' | 'too_many_packages' | 'too_many_devices' | 'duplicate'

export type UploadResult =
  | { ok: true, oneTime: number }
  | { ok: false, reason: UploadRefusal, oneTime: number }

export interface ClaimedKeyPackage {
  device: string
  /** base64 */
  data: string
  /** The device had no one-time package left: this is its last-resort one, which stays. */
  lastResort: boolean
}

export interface KeyPackageCount { oneTime: number, lastResort: boolean }

export interface MlsKeyPackageStore {
  /**
   * Adds one-time packages for the device and, if given, replaces its last-resort one. All or nothing:
   * refused when the device has no last-resort package and none is given, when it would hold more than
   * `limits.perDevice` one-time ones, when it is a new device beyond `limits.devicesPerUser`, or when a
   * ref is already stored for the device (or twice in the call). `oneTime`: how many it holds after.
   */
  upload (user: string, device: string, oneTime: StoredKeyPackage[], lastResort: StoredKeyPackage | undefined, limits: KeyPackageLimits): Promise<UploadResult>
  count (user: string, device: string): Promise<KeyPackageCount>
  /** One package for each device of the user that holds any, in device order: a one-time one (removed) or else its last-resort one. */
  claim (user: string): Promise<ClaimedKeyPackage[]>
  /** Forgets a device's packages (device retired); false when it had none. */
  removeDevice (user: string, device: string): Promise<boolean>
  /** Forgets all of a user's packages (account deletion). */
  removeUser (user: string): Promise<void>
  close (): Promise<void>
}

// Redis, all on the user's slot (device ids never contain '|', protocol/identity.ts):
//   inboxd:mlskp:{u:<user>}:lr   hash   <device> → <ref>|<data>       the last-resort package; its fields are the user's devices
//   inboxd:mlskp:{u:<user>}:q    zset   <device>|<ref>, all score 0   one-time packages, found per device by lex range
//   inboxd:mlskp:{u:<user>}:d    hash   <device>|<ref> → <data>
const lrKey = (user: string): string => ownerKey('mlskp', userTag(user), 'lr')
const queueKey = (user: string): string => ownerKey('mlskp', userTag(user), 'q')
const dataKey = (user: string): string => ownerKey('mlskp', userTag(user), 'd')

/**
 * KEYS: lr, q, d. ARGV: device, perDevice, devicesPerUser, last-resort `<ref>|<data>` or '', then
 * refs and datas alternately. Returns {1, count} or {0, reason, count}.
 */
const UPLOAD = `
local device, perDevice, maxDevices, lr = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local lo, hi = '[' .. device .. '|', '(' .. device .. '}'
local count = redis.call('ZLEXCOUNT', KEYS[2], lo, hi)
local current = redis.call('HGET', KEYS[1], device)
if not current then
  if lr == '' then return {0, 'last_resort_required', count} end
  if maxDevices > 0 and redis.call('HLEN', KEYS[1]) >= maxDevices then return {0, 'too_many_devices', count} end
end
local n = (#ARGV - 4) / 2
if count + n > perDevice then return {0, 'too_many_packages', count} end
local lrRef = false
if lr ~= '' then lrRef = string.sub(lr, 1, 64) elseif current then lrRef = string.sub(current, 1, 64) end
local seen = {}
if lrRef then
  if redis.call('HEXISTS', KEYS[3], device .. '|' .. lrRef) == 1 then return {0, 'duplicate', count} end
  seen[lrRef] = true
end
for i = 5, #ARGV, 2 do
  local ref = ARGV[i]
  if seen[ref] or redis.call('HEXISTS', KEYS[3], device .. '|' .. ref) == 1 then return {0, 'duplicate', count} end
  seen[ref] = true
end
if lr ~= '' then redis.call('HSET', KEYS[1], device, lr) end
for i = 5, #ARGV, 2 do
  local member = device .. '|' .. ARGV[i]
  redis.call('ZADD', KEYS[2], 0, member)
  redis.call('HSET', KEYS[3], member, ARGV[i + 1])
end
return {1, count + n}
`

/** KEYS: lr, q, d. Returns device, kind ('o' one-time, 'l' last resort), data, … */
const CLAIM = `
local devices = redis.call('HKEYS', KEYS[1])
table.sort(devices)
local out = {}
for _, device in ipairs(devices) do
  local first = redis.call('ZRANGEBYLEX', KEYS[2], '[' .. device .. '|', '(' .. device .. '}', 'LIMIT', 0, 1)[1]
  if first then
    local data = redis.call('HGET', KEYS[3], first)
    redis.call('ZREM', KEYS[2], first)
    redis.call('HDEL', KEYS[3], first)
    table.insert(out, device); table.insert(out, 'o'); table.insert(out, data)
  else
    local lr = redis.call('HGET', KEYS[1], device)
    table.insert(out, device); table.insert(out, 'l'); table.insert(out, string.sub(lr, 66))
  end
end
return out
`

/** KEYS: lr, q, d. ARGV: device. 1 if it had anything. */
const REMOVE_DEVICE = `
local members = redis.call('ZRANGEBYLEX', KEYS[2], '[' .. ARGV[1] .. '|', '(' .. ARGV[1] .. '}')
for _, member in ipairs(members) do redis.call('HDEL', KEYS[3], member) end
if #members > 0 then redis.call('ZREM', KEYS[2], unpack(members)) end
local lr = redis.call('HDEL', KEYS[1], ARGV[1])
if lr + #members > 0 then return 1 end
return 0
`

interface Scripted {
  mlsKpUpload (lr: string, q: string, d: string, ...args: Array<string | number>): Promise<[number, string | number, number?]>
  mlsKpClaim (lr: string, q: string, d: string): Promise<string[]>
  mlsKpRemoveDevice (lr: string, q: string, d: string, device: string): Promise<number>
}

// '}' follows '|' in ASCII, so `(<device>}` ends the range of `<device>|…` and of nothing else
// (device ids are [A-Za-z0-9._@-]: a longer id sharing the prefix continues with one of those, all below '|').
export class RedisMlsKeyPackages implements MlsKeyPackageStore {
  readonly #redis: RedisClient & Scripted

  constructor (redis: RedisClient) {
    redis.defineCommand('mlsKpUpload', { numberOfKeys: 3, lua: UPLOAD })
    redis.defineCommand('mlsKpClaim', { numberOfKeys: 3, lua: CLAIM })
    redis.defineCommand('mlsKpRemoveDevice', { numberOfKeys: 3, lua: REMOVE_DEVICE })
    this.#redis = redis as RedisClient & Scripted
  }

  async upload (user: string, device: string, oneTime: StoredKeyPackage[], lastResort: StoredKeyPackage | undefined, limits: KeyPackageLimits): Promise<UploadResult> {
    const args = oneTime.flatMap((p) => [p.ref, p.data])
    const [ok, second, third] = await this.#redis.mlsKpUpload(lrKey(user), queueKey(user), dataKey(user), device, limits.perDevice, limits.devicesPerUser,
      lastResort === undefined ? '' : `${lastResort.ref}|${lastResort.data}`, ...args)
    return ok === 1 ? { ok: true, oneTime: Number(second) } : { ok: false, reason: second as UploadRefusal, oneTime: Number(third) }
  }

  async count (user: string, device: string): Promise<KeyPackageCount> {
    const [oneTime, lastResort] = await Promise.all([
      this.#redis.zlexcount(queueKey(user), `[${device}|`, `(${device}}`),
      this.#redis.hexists(lrKey(user), device)
    ])
    return { oneTime, lastResort: lastResort === 1 }
  }

  async claim (user: string): Promise<ClaimedKeyPackage[]> {
    const flat = await this.#redis.mlsKpClaim(lrKey(user), queueKey(user), dataKey(user))
    const claimed: ClaimedKeyPackage[] = []
    for (let i = 0; i < flat.length; i += 3) claimed.push({ device: flat[i]!, data: flat[i + 2]!, lastResort: flat[i + 1] === 'l' })
    return claimed
  }

  async removeDevice (user: string, device: string): Promise<boolean> {
    return await this.#redis.mlsKpRemoveDevice(lrKey(user), queueKey(user), dataKey(user), device) === 1
  }

  async removeUser (user: string): Promise<void> {
    // One DEL: the three keys share the user's slot.
    await this.#redis.del(lrKey(user), queueKey(user), dataKey(user))
  }

  async close (): Promise<void> {}
}

// Embedded: `lr!<user>!<device>` → `<ref>|<data>`; `q!<user>!<device>!<ref>` → data.
export class LevelMlsKeyPackages implements MlsKeyPackageStore {
  #writes: Promise<void> = Promise.resolve()

  /** `write.sync`: fsync each change before it is acknowledged (DURABILITY=disk). */
  constructor (private readonly db: ClassicLevel<string, string>, private readonly write: { sync: boolean }) {}

  static async open (path: string, options: { sync?: boolean } = {}): Promise<LevelMlsKeyPackages> {
    const db = new ClassicLevel<string, string>(path, { valueEncoding: 'utf8' })
    await db.open()
    return new LevelMlsKeyPackages(db, { sync: options.sync ?? false })
  }

  /** Changes run one at a time, so a read and the write it decides cannot interleave with another's (one process in embedded mode). */
  #serial<T> (work: () => Promise<T>): Promise<T> {
    const result = this.#writes.then(work)
    this.#writes = result.then(() => {}, () => {})
    return result
  }

  #queued (user: string, device: string, limit?: number): Promise<string[]> {
    return this.db.keys({ gt: `q!${user}!${device}!`, lt: `q!${user}!${device}!~`, limit }).all()
  }

  upload (user: string, device: string, oneTime: StoredKeyPackage[], lastResort: StoredKeyPackage | undefined, limits: KeyPackageLimits): Promise<UploadResult> {
    return this.#serial(async () => {
      const queued = await this.#queued(user, device)
      const count = queued.length
      const current = await this.db.get(`lr!${user}!${device}`)
      if (current === undefined) {
        if (lastResort === undefined) return { ok: false, reason: 'last_resort_required', oneTime: count }
        if (limits.devicesPerUser > 0 && (await this.#devices(user, limits.devicesPerUser)).length >= limits.devicesPerUser) return { ok: false, reason: 'too_many_devices', oneTime: count }
      }
      if (count + oneTime.length > limits.perDevice) return { ok: false, reason: 'too_many_packages', oneTime: count }
      const seen = new Set(queued.map((key) => key.slice(key.lastIndexOf('!') + 1)))
      const lrRef = lastResort?.ref ?? current?.slice(0, 64)
      for (const ref of [...(lrRef === undefined ? [] : [lrRef]), ...oneTime.map((p) => p.ref)]) {
        if (seen.has(ref)) return { ok: false, reason: 'duplicate', oneTime: count }
        seen.add(ref)
      }
      await this.db.batch([
        ...(lastResort === undefined ? [] : [{ type: 'put' as const, key: `lr!${user}!${device}`, value: `${lastResort.ref}|${lastResort.data}` }]),
        ...oneTime.map((p) => ({ type: 'put' as const, key: `q!${user}!${device}!${p.ref}`, value: p.data }))
      ], this.write)
      return { ok: true, oneTime: count + oneTime.length }
    })
  }

  async #devices (user: string, limit?: number): Promise<string[]> {
    const keys = await this.db.keys({ gt: `lr!${user}!`, lt: `lr!${user}!~`, limit }).all()
    return keys.map((key) => key.slice(`lr!${user}!`.length))
  }

  async count (user: string, device: string): Promise<KeyPackageCount> {
    const [queued, lastResort] = await Promise.all([this.#queued(user, device), this.db.get(`lr!${user}!${device}`)])
    return { oneTime: queued.length, lastResort: lastResort !== undefined }
  }

  claim (user: string): Promise<ClaimedKeyPackage[]> {
    return this.#serial(async () => {
      const claimed: ClaimedKeyPackage[] = []
      const taken: string[] = []
      for (const device of (await this.#devices(user)).sort()) {
        const [first] = await this.db.iterator({ gt: `q!${user}!${device}!`, lt: `q!${user}!${device}!~`, limit: 1 }).all()
        if (first !== undefined) {
          taken.push(first[0])
          claimed.push({ device, data: first[1], lastResort: false })
        } else {
          const lr = await this.db.get(`lr!${user}!${device}`)
          claimed.push({ device, data: lr!.slice(65), lastResort: true })
        }
      }
      if (taken.length > 0) await this.db.batch(taken.map((key) => ({ type: 'del' as const, key })), this.write)
      return claimed
    })
  }

  removeDevice (user: string, device: string): Promise<boolean> {
    return this.#serial(async () => {
      const keys = [...await this.#queued(user, device), ...(await this.db.get(`lr!${user}!${device}`) === undefined ? [] : [`lr!${user}!${device}`])]
      if (keys.length === 0) return false
      await this.db.batch(keys.map((key) => ({ type: 'del' as const, key })), this.write)
      return true
    })
  }

  removeUser (user: string): Promise<void> {
    return this.#serial(async () => {
      const keys = [
        ...await this.db.keys({ gt: `lr!${user}!`, lt: `lr!${user}!~` }).all(),
        ...await this.db.keys({ gt: `q!${user}!`, lt: `q!${user}!~` }).all()
      ]
      if (keys.length > 0) await this.db.batch(keys.map((key) => ({ type: 'del' as const, key })), this.write)
    })
  }

  async close (): Promise<void> { await this.db.close() }
}

export async function openMlsKeyPackages (config: Config, store: BrokerStore): Promise<MlsKeyPackageStore> {
  return store.redis !== undefined ? new RedisMlsKeyPackages(store.redis) : LevelMlsKeyPackages.open(join(config.dataDir, 'mls-key-packages'), { sync: config.durability === 'disk' })
}
