// Device cursors in Redis: a hash per user (`cur`, in the user's slot beside
// their log). Opening one reads the user's head and who is connected
// (presence's hash, same slot) in one script, so the session bound never
// evicts a connected device; saves are batched, one script per slot.
import { defineVariadicScript, type RedisClient } from '../storage/redis-client.ts'
import { bySlot, presenceConnectionsKey } from '../storage/redis-keys.ts'
import type { CursorStore, DeviceCursor, OpenedCursor } from './history-store.ts'
import { redisKeys, type GroupKeys } from './redis-group-keys.ts'
import { OPEN_CURSOR, SAVE_CURSORS } from './redis-scripts.ts'

interface ScriptedRedis {
  historyOpenCursor (...args: Array<string | number>): Promise<Array<string | number>>
  historySaveCursors (...args: Array<string | number>): Promise<number>
}

export class RedisCursors implements CursorStore {
  readonly #redis: RedisClient & ScriptedRedis
  readonly #keys: GroupKeys
  readonly #maxSessions: number
  readonly #perSlot: boolean

  /** `maxSessionsPerUser`: MAX_SESSIONS_PER_USER (0: no bound). */
  constructor (redis: RedisClient, { maxSessionsPerUser = 0, keys = redisKeys(redis.isCluster) }: { maxSessionsPerUser?: number, keys?: GroupKeys } = {}) {
    redis.defineCommand('historyOpenCursor', { numberOfKeys: 3, lua: OPEN_CURSOR })
    defineVariadicScript(redis, 'historySaveCursors', SAVE_CURSORS)
    this.#redis = redis as RedisClient & ScriptedRedis
    this.#keys = keys
    this.#maxSessions = maxSessionsPerUser
    this.#perSlot = redis.isCluster
  }

  #k (user: string, name: string): string {
    return this.#keys.member(user, name)
  }

  async cursor (user: string, device: string): Promise<number | undefined> {
    const value = await this.#redis.hget(this.#k(user, 'cur'), device)
    return value === null ? undefined : Number(value)
  }

  async openCursor (user: string, device: string): Promise<OpenedCursor> {
    const [seq, created, ...evicted] = await this.#redis.historyOpenCursor(this.#k(user, 'cur'), this.#k(user, 'seq'), presenceConnectionsKey(user), user, device, this.#maxSessions)
    return { seq: Number(seq), created: Number(created) === 1, evicted: evicted.map(String) }
  }

  async saveCursors (cursors: DeviceCursor[]): Promise<void> {
    if (cursors.length === 0) return
    const batches = this.#perSlot ? bySlot(cursors, ({ user }) => this.#k(user, 'cur')) : [cursors]
    await Promise.all(batches.map((batch) =>
      this.#redis.historySaveCursors(batch.length, ...batch.map(({ user }) => this.#k(user, 'cur')), ...batch.flatMap(({ device, seq }) => [device, seq]))))
  }

  async dropCursor (user: string, device: string): Promise<void> {
    await this.#redis.hdel(this.#k(user, 'cur'), device)
  }
}
