// Limits that keep one client from hurting the others, enforced in each
// server process (cheap: no storage round trip on the message path):
//   - per user, publishes per second with a burst (token bucket): over the
//     limit a publish is acknowledged, not stored, and the sender gets the
//     error event `rate_limited` with `retryAfterMs`, held back 1 s so a
//     flooder that waits for its PUBACKs slows down (hooks/authorize-publish.ts);
//   - per source address, CONNECTs per second with a burst: over the limit the
//     CONNACK is 3 (server unavailable, retry later).
// With several processes (WORKERS, machines) a user whose devices sit on n
// processes gets at most n times the rate: the bound still holds per process.

export interface RateLimit {
  /** Sustained rate per second; 0 turns the limit off. */
  perSecond: number
  burst: number
}

interface Bucket { tokens: number, at: number }

export class TokenBuckets {
  readonly #limit: RateLimit
  readonly #buckets = new Map<string, Bucket>()

  constructor (limit: RateLimit) {
    this.#limit = limit
  }

  /** Takes one token for `key`; returns 0 if allowed, else the ms until one is available. */
  take (key: string, now = Date.now()): number {
    const { perSecond, burst } = this.#limit
    if (perSecond === 0) return 0
    let bucket = this.#buckets.get(key)
    if (bucket === undefined) {
      // Forget full buckets now and then, so the map stays as small as the set of active keys.
      if (this.#buckets.size > 100_000) this.#sweep(now)
      this.#buckets.set(key, bucket = { tokens: burst, at: now })
    }
    bucket.tokens = Math.min(burst, bucket.tokens + (now - bucket.at) * perSecond / 1000)
    bucket.at = now
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1
      return 0
    }
    return Math.ceil((1 - bucket.tokens) * 1000 / perSecond)
  }

  #sweep (now: number): void {
    const { perSecond, burst } = this.#limit
    for (const [key, bucket] of this.#buckets) {
      if (bucket.tokens + (now - bucket.at) * perSecond / 1000 >= burst) this.#buckets.delete(key)
    }
  }
}
