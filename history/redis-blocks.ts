// Blocks in Redis: a hash per blocker (`blocks`, in the blocker's slot, where
// the relay reads it before a blocked sender's message would land).
import type { RedisClient } from '../storage/redis-client.ts'
import type { BlockStore } from './history-store.ts'
import { redisKeys, type GroupKeys } from './redis-group-keys.ts'
import { BLOCK } from './redis-scripts.ts'

interface ScriptedRedis {
  historyBlock (...args: Array<string | number>): Promise<string>
}

export class RedisBlocks implements BlockStore {
  readonly #redis: RedisClient & ScriptedRedis
  readonly #keys: GroupKeys

  constructor (redis: RedisClient, keys: GroupKeys = redisKeys(redis.isCluster)) {
    redis.defineCommand('historyBlock', { numberOfKeys: 1, lua: BLOCK })
    this.#redis = redis as RedisClient & ScriptedRedis
    this.#keys = keys
  }

  #blocks (blocker: string): string {
    return this.#keys.member(blocker, 'blocks')
  }

  async setBlocked (blocker: string, user: string, since: number, limit = 0): Promise<number | 'limit'> {
    const reply = await this.#redis.historyBlock(this.#blocks(blocker), user, since, limit)
    return reply === 'limit' ? reply : Number(reply)
  }

  async setUnblocked (blocker: string, user: string): Promise<boolean> {
    return await this.#redis.hdel(this.#blocks(blocker), user) === 1
  }

  async blocked (blocker: string): Promise<Array<{ user: string, since: number }>> {
    const all = await this.#redis.hgetall(this.#blocks(blocker))
    return Object.entries(all).map(([user, since]) => ({ user, since: Number(since) })).sort((a, b) => b.since - a.since)
  }

  async isBlocked (blocker: string, user: string): Promise<boolean> {
    return await this.#redis.hexists(this.#blocks(blocker), user) === 1
  }
}
