// Push registrations in Redis, on the user's own keys (one slot, so a Redis
// Cluster runs them):
//   inboxd:devices:{u:<user>}:d   deviceId → device JSON
//   inboxd:devices:{u:<user>}:t   token → deviceId (which of the user's devices holds it)
// and, per token, inboxd:devices:{t:<token>} → `<user>:<deviceId>` (who holds
// it across users). The user's two keys change in one script, so the cap
// holds against concurrent registrations on any number of processes. A token
// moving from another user is one step more, on that user's keys: the
// previous holder is dropped before the token's key names the new one, so a
// registration retried after a crash drops it still.
import type { RedisClient } from '../storage/redis-client.ts'
import { ownerKey, pushTokenKey, userTag } from '../storage/redis-keys.ts'
import type { DeviceRegistry, RegisteredDevice } from './device-registry.ts'

const devicesKey = (user: string): string => ownerKey('devices', userTag(user), 'd')
const tokensKey = (user: string): string => ownerKey('devices', userTag(user), 't')

/**
 * KEYS: devices, tokens (one user). ARGV: deviceId, token, device JSON, limit.
 * Returns {0} at the cap (nothing changed), else {1, the device's previous
 * token if it changed, or ''}. The stored JSON is the server's own (five flat
 * fields, each validated by the route): safe to decode.
 */
const REGISTER = `
local deviceId, token, json, limit = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local replaced = redis.call('HGET', KEYS[1], deviceId)
local sibling = redis.call('HGET', KEYS[2], token)
if sibling == deviceId then sibling = false end
if not replaced and limit > 0 then
  local count = redis.call('HLEN', KEYS[1])
  -- The token moving from another device of the same user frees that one.
  if sibling then count = count - 1 end
  if count >= limit then return {0} end
end
if sibling then redis.call('HDEL', KEYS[1], sibling) end
local old = ''
if replaced then
  old = cjson.decode(replaced).token
  if old == token then old = '' else redis.call('HDEL', KEYS[2], old) end
end
redis.call('HSET', KEYS[1], deviceId, json)
redis.call('HSET', KEYS[2], token, deviceId)
return {1, old}
`

/** KEYS: devices, tokens. ARGV: deviceId, token, registeredAt or ''. Removes the device while it is that registration; 1 if removed. */
const UNREGISTER = `
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if not stored then return 0 end
local device = cjson.decode(stored)
if device.token ~= ARGV[2] or (ARGV[3] ~= '' and device.registeredAt ~= tonumber(ARGV[3])) then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[1] then redis.call('HDEL', KEYS[2], ARGV[2]) end
return 1
`

/** KEYS: a token's key. ARGV: holder. Deletes it while it still names that holder. */
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`

interface Scripted {
  deviceRegister (devices: string, tokens: string, deviceId: string, token: string, json: string, limit: number): Promise<[number, string?]>
  deviceUnregister (devices: string, tokens: string, deviceId: string, token: string, registeredAt: string): Promise<number>
  deviceTokenRelease (key: string, holder: string): Promise<number>
}

export class RedisDeviceRegistry implements DeviceRegistry {
  readonly #redis: RedisClient & Scripted

  constructor (redis: RedisClient) {
    redis.defineCommand('deviceRegister', { numberOfKeys: 2, lua: REGISTER })
    redis.defineCommand('deviceUnregister', { numberOfKeys: 2, lua: UNREGISTER })
    redis.defineCommand('deviceTokenRelease', { numberOfKeys: 1, lua: RELEASE })
    this.#redis = redis as RedisClient & Scripted
  }

  async put (user: string, device: RegisteredDevice, limit = 0): Promise<'registered' | 'limit'> {
    const [done, old = ''] = await this.#redis.deviceRegister(devicesKey(user), tokensKey(user), device.deviceId, device.token, JSON.stringify(device), limit)
    if (done !== 1) return 'limit'
    const holder = `${user}:${device.deviceId}`
    const tokenKey = pushTokenKey(device.token)
    const previous = await this.#redis.get(tokenKey)
    // Another user's device had this token (a phone changing account): it stops getting their pushes.
    if (previous !== null && previous !== holder) {
      const colon = previous.indexOf(':') // ids never contain ':'
      const [previousUser, previousDevice] = [previous.slice(0, colon), previous.slice(colon + 1)]
      if (previousUser !== user) await this.#unregister(previousUser, previousDevice, device.token, '')
    }
    if (previous !== holder) await this.#redis.set(tokenKey, holder)
    if (old !== '') await this.#redis.deviceTokenRelease(pushTokenKey(old), holder)
    return 'registered'
  }

  async remove (user: string, deviceId: string): Promise<boolean> {
    const stored = await this.#redis.hget(devicesKey(user), deviceId)
    if (stored === null) return false
    await this.removeToken(user, deviceId, (JSON.parse(stored) as RegisteredDevice).token)
    return true
  }

  async removeToken (user: string, deviceId: string, token: string, registeredAt?: number): Promise<void> {
    await this.#unregister(user, deviceId, token, registeredAt === undefined ? '' : String(registeredAt))
  }

  async #unregister (user: string, deviceId: string, token: string, registeredAt: string): Promise<void> {
    if (await this.#redis.deviceUnregister(devicesKey(user), tokensKey(user), deviceId, token, registeredAt) === 1) {
      await this.#redis.deviceTokenRelease(pushTokenKey(token), `${user}:${deviceId}`)
    }
  }

  async list (user: string): Promise<RegisteredDevice[]> {
    return (await this.#redis.hvals(devicesKey(user))).map((json) => JSON.parse(json) as RegisteredDevice)
  }

  async close (): Promise<void> {}
}
