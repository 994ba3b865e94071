// What a sweeper completes: the owners (groups with a fan-out, writers with
// relay items) that have sat in a pending index for longer than a grace
// period, which a process that died left behind. A single Redis has one
// index; a cluster one per slot, of which one call looks at 1,024 in turn.
import type { RedisClient } from '../storage/redis-client.ts'

/** Indexes read per call on a cluster (all 16,384 with `everySlot`). */
const PER_CALL = 1024

export class PendingSweep {
  readonly #redis: RedisClient
  readonly #pendingKeys: () => string[]
  #from = 0

  constructor (redis: RedisClient, pendingKeys: () => string[]) {
    this.#redis = redis
    this.#pendingKeys = pendingKeys
  }

  /** Owners pending for longer than `graceMs` (at most 100 per index). */
  async due ({ graceMs = 2000, everySlot = false }: { graceMs?: number, everySlot?: boolean } = {}): Promise<string[]> {
    const all = this.#pendingKeys()
    let keys = all
    if (!everySlot && all.length > PER_CALL) {
      keys = all.slice(this.#from, this.#from + PER_CALL)
      this.#from = (this.#from + PER_CALL) % all.length
    }
    const found = await Promise.all(keys.map((key) => this.#redis.zrangebyscore(key, '-inf', Date.now() - graceMs, 'LIMIT', 0, 100)))
    return found.flat()
  }
}
