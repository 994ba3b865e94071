// Coalescing: at most one push per (device, conversation) per window. The
// first message opens the window and is pushed at once; later ones in the
// window are only remembered, and the window's owner sends one trailing push
// for them (with the badge current) when the window ends. In Redis mode the
// window is shared by every process, on the user's keys:
//   inboxd:push:{u:<user>}:w:<deviceId>:<conversation>   the open window
//   inboxd:push:{u:<user>}:q:<deviceId>:<conversation>   `<seq>|<alert JSON>`, the latest deferred
import type { RedisClient } from '../storage/redis-client.ts'
import { ownerKey, userTag } from '../storage/redis-keys.ts'

/** One window: a user's device and a conversation (the sender, or `g:<group>`). */
export interface PushWindow {
  user: string
  deviceId: string
  conversation: string
}

/** What a trailing push needs of a message: small, and made by the server (no body). */
export interface DeferredAlert {
  from: string
  to: string
  id: string
  seq: number
  group?: { id: string, name: string }
}

export interface PushGate {
  /** True if the window was closed: the caller pushes now and owns the new window. */
  open (window: PushWindow, windowMs: number): Promise<boolean>
  /** Remembers the latest alert (highest `seq`) that arrived while the window was open; processes may defer out of order. */
  defer (window: PushWindow, alert: DeferredAlert, windowMs: number): Promise<void>
  /** Takes what was deferred, if anything. */
  take (window: PushWindow): Promise<DeferredAlert | undefined>
}

/** Only the fields a push uses, whatever else the caller's object carries. */
function encode (alert: DeferredAlert): string {
  const { from, to, id, seq, group } = alert
  return JSON.stringify(group === undefined ? { from, to, id, seq } : { from, to, id, seq, group: { id: group.id, name: group.name } })
}

export class MemoryPushGate implements PushGate {
  readonly #windows = new Map<string, number>()
  readonly #deferred = new Map<string, DeferredAlert>()

  async open (window: PushWindow, windowMs: number): Promise<boolean> {
    const key = memoryKey(window)
    const now = Date.now()
    if ((this.#windows.get(key) ?? 0) > now) return false
    this.#windows.set(key, now + windowMs)
    // Forget old windows so the map does not grow without bound.
    if (this.#windows.size > 10_000) for (const [k, until] of this.#windows) if (until <= now) this.#windows.delete(k)
    return true
  }

  async defer (window: PushWindow, alert: DeferredAlert): Promise<void> {
    const key = memoryKey(window)
    const current = this.#deferred.get(key)
    if (current === undefined || alert.seq > current.seq) this.#deferred.set(key, JSON.parse(encode(alert)) as DeferredAlert)
  }

  async take (window: PushWindow): Promise<DeferredAlert | undefined> {
    const key = memoryKey(window)
    const alert = this.#deferred.get(key)
    this.#deferred.delete(key)
    return alert
  }
}

// User and device ids never contain ':'.
const memoryKey = ({ user, deviceId, conversation }: PushWindow): string => `${user}:${deviceId}:${conversation}`
const windowKey = ({ user, deviceId, conversation }: PushWindow): string => ownerKey('push', userTag(user), `w:${deviceId}:${conversation}`)
const deferredKey = ({ user, deviceId, conversation }: PushWindow): string => ownerKey('push', userTag(user), `q:${deviceId}:${conversation}`)

/**
 * KEYS: deferred key. ARGV: seq, `<seq>|<alert JSON>`, ttl ms. Keeps the alert
 * with the highest seq, read from the value's prefix: nothing is decoded.
 */
const DEFER_LATEST = `
local current = redis.call('GET', KEYS[1])
if current and tonumber(string.match(current, '^(%d+)|')) >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
`

interface Scripted {
  pushDeferLatest (key: string, seq: number, value: string, ttlMs: number): Promise<number>
}

export class RedisPushGate implements PushGate {
  readonly #redis: RedisClient & Scripted

  constructor (redis: RedisClient) {
    redis.defineCommand('pushDeferLatest', { numberOfKeys: 1, lua: DEFER_LATEST })
    this.#redis = redis as RedisClient & Scripted
  }

  async open (window: PushWindow, windowMs: number): Promise<boolean> {
    return (await this.#redis.set(windowKey(window), '1', 'PX', windowMs, 'NX')) === 'OK'
  }

  async defer (window: PushWindow, alert: DeferredAlert, windowMs: number): Promise<void> {
    await this.#redis.pushDeferLatest(deferredKey(window), alert.seq, `${alert.seq}|${encode(alert)}`, windowMs * 3)
  }

  async take (window: PushWindow): Promise<DeferredAlert | undefined> {
    const value = await this.#redis.getdel(deferredKey(window))
    return value === null ? undefined : JSON.parse(value.slice(value.indexOf('|') + 1)) as DeferredAlert
  }
}
