// Public keys for end-to-end encryption, one per user. The server only
// stores and hands them out; it never sees a private key or a plaintext.
import { ClassicLevel } from 'classic-level'
import { join } from 'node:path'
import type { BrokerStore } from '../storage/broker-store.ts'
import type { Config } from '../config/config.ts'
import type { RedisClient } from '../storage/redis-client.ts'
import { isCluster } from '../storage/redis-connection.ts'
import { ownerKey, userTag } from '../storage/redis-keys.ts'

export interface PublishedKey {
  user: string
  /** X25519 public key, base64 (32 bytes). */
  publicKey: string
  updatedAt: number
}

export interface KeyDirectory {
  put (key: PublishedKey): Promise<void>
  get (user: string): Promise<PublishedKey | undefined>
  /** Forgets the user's key (account deletion); false when there was none. */
  remove (user: string): Promise<boolean>
  close (): Promise<void>
}

/** The hash every user's key was in before #20 (one Redis): still read, by default on one Redis, for keys published before. */
const LEGACY = 'inboxd:keys'

/** Redis: one key per user, `inboxd:keys:{u:<user>}` → the key's JSON, on the user's own slot. */
export class RedisKeyDirectory implements KeyDirectory {
  readonly #legacy: boolean

  constructor (private readonly redis: RedisClient, options: { legacy?: boolean } = {}) {
    this.#legacy = options.legacy ?? !isCluster(redis)
  }

  async put (key: PublishedKey): Promise<void> { await this.redis.set(keyOf(key.user), JSON.stringify(key)) }

  async get (user: string): Promise<PublishedKey | undefined> {
    const json = await this.redis.get(keyOf(user)) ?? (this.#legacy ? await this.redis.hget(LEGACY, user) : null)
    return json === null ? undefined : JSON.parse(json) as PublishedKey
  }

  async remove (user: string): Promise<boolean> {
    const removed = await this.redis.del(keyOf(user))
    const legacy = this.#legacy ? await this.redis.hdel(LEGACY, user) : 0
    return removed + legacy > 0
  }

  async close (): Promise<void> {}
}

const keyOf = (user: string): string => ownerKey('keys', userTag(user))

/** Embedded: `<user>` → the key's JSON. */
export class LevelKeyDirectory implements KeyDirectory {
  /** `write.sync`: fsync each key before it is acknowledged (DURABILITY=disk). */
  constructor (private readonly db: ClassicLevel<string, string>, private readonly write: { sync: boolean }) {}

  static async open (path: string, options: { sync?: boolean } = {}): Promise<LevelKeyDirectory> {
    const db = new ClassicLevel<string, string>(path, { valueEncoding: 'utf8' })
    await db.open()
    return new LevelKeyDirectory(db, { sync: options.sync ?? false })
  }

  async put (key: PublishedKey): Promise<void> { await this.db.put(key.user, JSON.stringify(key), this.write) }
  async get (user: string): Promise<PublishedKey | undefined> {
    const json = await this.db.get(user)
    return json === undefined ? undefined : JSON.parse(json) as PublishedKey
  }

  async remove (user: string): Promise<boolean> {
    if (await this.db.get(user) === undefined) return false
    await this.db.del(user, this.write)
    return true
  }

  async close (): Promise<void> { await this.db.close() }
}

export async function openKeyDirectory (config: Config, store: BrokerStore): Promise<KeyDirectory> {
  return store.redis !== undefined ? new RedisKeyDirectory(store.redis) : LevelKeyDirectory.open(join(config.dataDir, 'keys'), { sync: config.durability === 'disk' })
}
