// Public keys for end-to-end encryption, one per user. The server only
// stores and hands them out; it never sees a private key or a plaintext.
import type { Redis } from 'ioredis'
import { ClassicLevel } from 'classic-level'
import { join } from 'node:path'
import type { BrokerStore } from '../storage/broker-store.ts'
import type { Config } from '../config/config.ts'

export interface PublishedKey {
  user: string
  /** X25519 public key, base64 (32 bytes). */
  publicKey: string
  updatedAt: number
}

export interface KeyDirectory {
  put (key: PublishedKey): Promise<void>
  get (user: string): Promise<PublishedKey | undefined>
  close (): Promise<void>
}

class RedisKeyDirectory implements KeyDirectory {
  constructor (private readonly redis: Redis) {}
  async put (key: PublishedKey): Promise<void> { await this.redis.hset('inboxd:keys', key.user, JSON.stringify(key)) }
  async get (user: string): Promise<PublishedKey | undefined> {
    const json = await this.redis.hget('inboxd:keys', user)
    return json === null ? undefined : JSON.parse(json) as PublishedKey
  }

  async close (): Promise<void> {}
}

class LevelKeyDirectory implements KeyDirectory {
  /** `write.sync`: fsync each key before it is acknowledged (DURABILITY=disk). */
  constructor (private readonly db: ClassicLevel<string, string>, private readonly write: { sync: boolean }) {}
  async put (key: PublishedKey): Promise<void> { await this.db.put(key.user, JSON.stringify(key), this.write) }
  async get (user: string): Promise<PublishedKey | undefined> {
    const json = await this.db.get(user)
    return json === undefined ? undefined : JSON.parse(json) as PublishedKey
  }

  async close (): Promise<void> { await this.db.close() }
}

export async function openKeyDirectory (config: Config, store: BrokerStore): Promise<KeyDirectory> {
  if (store.redis !== undefined) return new RedisKeyDirectory(store.redis)
  const db = new ClassicLevel<string, string>(join(config.dataDir, 'keys'), { valueEncoding: 'utf8' })
  await db.open()
  return new LevelKeyDirectory(db, { sync: config.durability === 'disk' })
}
