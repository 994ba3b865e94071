// Coalescing: at most one push per (device, conversation) per window. The
// first message opens the window and is pushed at once; later ones in the
// window are only remembered, and the window's owner sends one trailing push
// for them (with the badge current) when the window ends. In Redis mode the
// window is shared by every process.
import type { Redis } from 'ioredis'

export interface PushGate {
  /** True if the window was closed: the caller pushes now and owns the new window. */
  open (key: string, windowMs: number): Promise<boolean>
  /** Remembers the latest message (highest `seq`) that arrived while the window was open; processes may defer out of order. */
  defer (key: string, payload: string, windowMs: number): Promise<void>
  /** Takes what was deferred, if anything. */
  take (key: string): Promise<string | undefined>
}

export class MemoryPushGate implements PushGate {
  readonly #windows = new Map<string, number>()
  readonly #deferred = new Map<string, string>()

  async open (key: string, windowMs: number): Promise<boolean> {
    const now = Date.now()
    if ((this.#windows.get(key) ?? 0) > now) return false
    this.#windows.set(key, now + windowMs)
    // Forget old windows so the map does not grow without bound.
    if (this.#windows.size > 10_000) for (const [k, until] of this.#windows) if (until <= now) this.#windows.delete(k)
    return true
  }

  async defer (key: string, payload: string): Promise<void> {
    const current = this.#deferred.get(key)
    if (current === undefined || seqIn(payload) > seqIn(current)) this.#deferred.set(key, payload)
  }

  async take (key: string): Promise<string | undefined> {
    const payload = this.#deferred.get(key)
    this.#deferred.delete(key)
    return payload
  }
}

const seqIn = (payload: string): number => (JSON.parse(payload) as { seq: number }).seq

const P = 'inboxd:push:'

/** KEYS: deferred key. ARGV: payload, seq, ttl ms. Keeps the payload with the highest seq. */
const DEFER_LATEST = `
local current = redis.call('GET', KEYS[1])
if current and cjson.decode(current).seq >= tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
`

interface GateRedis extends Redis {
  pushDeferLatest (key: string, payload: string, seq: number, ttlMs: number): Promise<number>
}

export class RedisPushGate implements PushGate {
  readonly #redis: GateRedis

  constructor (redis: Redis) {
    redis.defineCommand('pushDeferLatest', { numberOfKeys: 1, lua: DEFER_LATEST })
    this.#redis = redis as GateRedis
  }

  async open (key: string, windowMs: number): Promise<boolean> {
    return (await this.#redis.set(`${P}window:${key}`, '1', 'PX', windowMs, 'NX')) === 'OK'
  }

  async defer (key: string, payload: string, windowMs: number): Promise<void> {
    await this.#redis.pushDeferLatest(`${P}deferred:${key}`, payload, seqIn(payload), windowMs * 3)
  }

  async take (key: string): Promise<string | undefined> {
    return (await this.#redis.getdel(`${P}deferred:${key}`)) ?? undefined
  }
}
