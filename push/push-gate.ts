// Coalescing: at most one push per (device, conversation) per window. The
// first message opens the window and is pushed at once; later ones in the
// window are only remembered, and the window's owner sends one trailing push
// for them (with the badge current) when the window ends. In Redis mode the
// window is shared by every process.
import type { Redis } from 'ioredis'

export interface PushGate {
  /** True if the window was closed: the caller pushes now and owns the new window. */
  open (key: string, windowMs: number): Promise<boolean>
  /** Remembers the latest message that arrived while the window was open. */
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
    this.#deferred.set(key, payload)
  }

  async take (key: string): Promise<string | undefined> {
    const payload = this.#deferred.get(key)
    this.#deferred.delete(key)
    return payload
  }
}

const P = 'inboxd:push:'

export class RedisPushGate implements PushGate {
  constructor (private readonly redis: Redis) {}

  async open (key: string, windowMs: number): Promise<boolean> {
    return (await this.redis.set(`${P}window:${key}`, '1', 'PX', windowMs, 'NX')) === 'OK'
  }

  async defer (key: string, payload: string, windowMs: number): Promise<void> {
    await this.redis.set(`${P}deferred:${key}`, payload, 'PX', windowMs * 3)
  }

  async take (key: string): Promise<string | undefined> {
    return (await this.redis.getdel(`${P}deferred:${key}`)) ?? undefined
  }
}
