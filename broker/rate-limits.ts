// Limits that keep one client from hurting the others, enforced in each
// server process (cheap: no storage round trip on the message path):
//   - per user, publishes per second with a burst (token bucket), one budget
//     for MQTT publishes and REST sends alike: over the limit an MQTT publish
//     is acknowledged, not stored, and the sender gets the error event
//     `rate_limited` with `retryAfterMs` (hooks/authorize-publish.ts); a REST
//     send gets 429 `rate_limited` with `retry-after` (bridge/routes/messages.ts).
//     Users listed in PUBLISH_RATE_EXEMPT (servers, devices that send in bulk)
//     are not counted;
//   - per source address, CONNECTs per second with a burst: over the limit the
//     CONNACK is 3 (server unavailable, retry later).
// With several processes (WORKERS, machines) a user whose devices sit on n
// processes gets at most n times the rate: the bound still holds per process.

import { BoundedMap } from '../history/bounded-map.ts'

export interface RateLimit {
  /** Sustained rate per second; 0 turns the limit off. */
  perSecond: number
  burst: number
}

/** Keys one TokenBuckets keeps at most (see below). */
export const MAX_RATE_LIMIT_KEYS = 100_000

interface Bucket { tokens: number, at: number }

/**
 * One token bucket per key. Its memory is bounded two ways:
 *   - a bucket untouched for `burst / perSecond` seconds is full again, the
 *     same as a new one, so it is forgotten (this changes no answer). The map
 *     is kept in the order of the last take, so the oldest is always first and
 *     forgetting costs O(1) per take: the map holds at most the keys that took
 *     a token in the `burst / perSecond` seconds before the latest take
 *     (PUBLISH: users who published in the last 10 s by default);
 *   - and never more than `maxKeys`: beyond, the least recently used key is
 *     forgotten, so it starts again from a full burst.
 */
export class TokenBuckets {
  readonly #limit: RateLimit
  /** How long an untouched bucket takes to be full again, in ms. */
  readonly #refillMs: number
  /** In the order of the last take; beyond maxKeys the least recently used goes. */
  readonly #buckets: BoundedMap<string, Bucket>

  constructor (limit: RateLimit, maxKeys = MAX_RATE_LIMIT_KEYS) {
    this.#limit = limit
    this.#buckets = new BoundedMap(maxKeys)
    this.#refillMs = limit.perSecond === 0 ? 0 : limit.burst * 1000 / limit.perSecond
  }

  /** Keys held now. */
  get size (): number { return this.#buckets.size }

  /** Takes one token for `key`; returns 0 if allowed, else the ms until one is available. `now`: a monotonic clock, in ms. */
  take (key: string, now = performance.now()): number {
    const { perSecond, burst } = this.#limit
    if (perSecond === 0) return 0
    const bucket = this.#buckets.get(key) ?? { tokens: burst, at: now }
    this.#forgetFull(now)
    this.#buckets.set(key, bucket)
    bucket.tokens = Math.min(burst, bucket.tokens + Math.max(0, now - bucket.at) * perSecond / 1000)
    bucket.at = now
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1
      return 0
    }
    return Math.ceil((1 - bucket.tokens) * 1000 / perSecond)
  }

  /** Drops the oldest buckets while they are full again (untouched for #refillMs). */
  #forgetFull (now: number): void {
    for (const [key, bucket] of this.#buckets) {
      if (now - bucket.at < this.#refillMs) return
      this.#buckets.delete(key)
    }
  }
}

/** The per-user publish budget, shared by the MQTT and REST doors of one process. */
export class PublishBudget {
  readonly #buckets: TokenBuckets
  readonly #exempt: ReadonlySet<string>

  constructor (limit: RateLimit, exempt: Iterable<string>, maxKeys?: number) {
    this.#buckets = new TokenBuckets(limit, maxKeys)
    this.#exempt = new Set(exempt)
  }

  /** One publish by `user`: 0 when allowed, else the ms until the next one is. */
  take (user: string): number {
    return this.#exempt.has(user) ? 0 : this.#buckets.take(user)
  }
}
