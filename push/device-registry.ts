// Registered push devices, per user. A device is the MQTT clientId
// `<user>:<deviceId>`; its push token belongs to one (user, device) at a
// time, so when a phone changes account the old registration is dropped and
// the previous user's notifications stop going to it.
import type { Redis } from 'ioredis'
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
  put (user: string, device: RegisteredDevice): Promise<void>
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

const P = 'inboxd:devices:'

export class RedisDeviceRegistry implements DeviceRegistry {
  constructor (private readonly redis: Redis) {}

  async put (user: string, device: RegisteredDevice): Promise<void> {
    const owner = `${user}:${device.deviceId}`
    const previousOwner = await this.redis.getset(`${P}token:${device.token}`, owner)
    if (previousOwner !== null && previousOwner !== owner) {
      const colon = previousOwner.indexOf(':')
      await this.removeToken(previousOwner.slice(0, colon), previousOwner.slice(colon + 1), device.token)
    }
    const replaced = await this.redis.hget(P + user, device.deviceId)
    if (replaced !== null) {
      const old = JSON.parse(replaced) as RegisteredDevice
      if (old.token !== device.token) await this.redis.del(`${P}token:${old.token}`)
    }
    await this.redis.hset(P + user, device.deviceId, JSON.stringify(device))
  }

  async remove (user: string, deviceId: string): Promise<boolean> {
    const stored = await this.redis.hget(P + user, deviceId)
    if (stored === null) return false
    await this.removeToken(user, deviceId, (JSON.parse(stored) as RegisteredDevice).token)
    return true
  }

  async removeToken (user: string, deviceId: string, token: string, registeredAt?: number): Promise<void> {
    const stored = await this.redis.hget(P + user, deviceId)
    if (stored === null || !isRegistration(JSON.parse(stored) as RegisteredDevice, token, registeredAt)) return
    await this.redis.hdel(P + user, deviceId)
    if (await this.redis.get(`${P}token:${token}`) === `${user}:${deviceId}`) await this.redis.del(`${P}token:${token}`)
  }

  async list (user: string): Promise<RegisteredDevice[]> {
    return Object.values(await this.redis.hgetall(P + user)).map((json) => JSON.parse(json) as RegisteredDevice)
  }

  async close (): Promise<void> {}
}

/** Embedded mode: `d!<user>!<deviceId>` → device JSON, `t!<token>` → `<user>:<deviceId>`. */
export class LevelDeviceRegistry implements DeviceRegistry {
  private constructor (private readonly db: ClassicLevel<string, string>, private readonly write: { sync: boolean }) {}

  /** `sync`: fsync each change before it is acknowledged (DURABILITY=disk). */
  static async open (path: string, options: { sync?: boolean } = {}): Promise<LevelDeviceRegistry> {
    const db = new ClassicLevel<string, string>(path, { valueEncoding: 'utf8' })
    await db.open()
    return new LevelDeviceRegistry(db, { sync: options.sync ?? false })
  }

  async put (user: string, device: RegisteredDevice): Promise<void> {
    const owner = `${user}:${device.deviceId}`
    const previousOwner = await this.db.get(`t!${device.token}`)
    if (previousOwner !== undefined && previousOwner !== owner) {
      const colon = previousOwner.indexOf(':')
      await this.removeToken(previousOwner.slice(0, colon), previousOwner.slice(colon + 1), device.token)
    }
    const replaced = await this.db.get(`d!${user}!${device.deviceId}`)
    const ops: Array<{ type: 'put', key: string, value: string } | { type: 'del', key: string }> = []
    if (replaced !== undefined) {
      const old = JSON.parse(replaced) as RegisteredDevice
      if (old.token !== device.token) ops.push({ type: 'del', key: `t!${old.token}` })
    }
    ops.push({ type: 'put', key: `d!${user}!${device.deviceId}`, value: JSON.stringify(device) }, { type: 'put', key: `t!${device.token}`, value: owner })
    await this.db.batch(ops, this.write)
  }

  async remove (user: string, deviceId: string): Promise<boolean> {
    const stored = await this.db.get(`d!${user}!${deviceId}`)
    if (stored === undefined) return false
    await this.removeToken(user, deviceId, (JSON.parse(stored) as RegisteredDevice).token)
    return true
  }

  async removeToken (user: string, deviceId: string, token: string, registeredAt?: number): Promise<void> {
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
