// Two clients with the same clientId replace each other on every reconnect,
// forever (a copied state file, a second tab with the same device id). A
// single takeover is normal (a phone reconnects before the server noticed its
// old socket die); a device taken over again and again within a minute is
// this loop, so it gets a warning: at most one per device per minute while it
// goes on, with how many takeovers it had. Per server process; the state is
// bounded: devices taken over within the last minute, and at most MAX_DEVICES.

import { BoundedMap } from '../history/bounded-map.ts'

/** Devices one watch keeps at most (docs/protocol.md, Limits). */
export const MAX_WATCHED_DEVICES = 10_000
/** Takeovers within WINDOW_MS that make a loop. */
export const LOOP_TAKEOVERS = 3
export const WINDOW_MS = 60_000

interface Streak {
  /** Takeovers since the streak began or the last warning. */
  count: number
  since: number
  last: number
  warnedAt: number
}

export interface TakeoverWarning {
  clientId: string
  takeovers: number
  seconds: number
}

export class TakeoverWatch {
  /** In the order of the last takeover, so the stale ones are first. */
  readonly #streaks: BoundedMap<string, Streak>

  constructor (maxDevices = MAX_WATCHED_DEVICES) {
    this.#streaks = new BoundedMap(maxDevices)
  }

  get size (): number { return this.#streaks.size }

  /** One takeover of `clientId` at `now` (ms, monotonic); a warning when it is due. */
  takenOver (clientId: string, now = performance.now()): TakeoverWarning | undefined {
    this.#forgetStale(now)
    const streak = this.#streaks.get(clientId) ?? { count: 0, since: now, last: now, warnedAt: -Infinity }
    streak.count++
    streak.last = now
    this.#streaks.set(clientId, streak)
    if (streak.count < LOOP_TAKEOVERS || now - streak.warnedAt < WINDOW_MS) return undefined
    const warning = { clientId, takeovers: streak.count, seconds: Math.round((now - streak.since) / 1000) }
    streak.count = 0
    streak.since = now
    streak.warnedAt = now
    return warning
  }

  /** A device not taken over for WINDOW_MS has no streak left. */
  #forgetStale (now: number): void {
    for (const [clientId, streak] of this.#streaks) {
      if (now - streak.last < WINDOW_MS) return
      this.#streaks.delete(clientId)
    }
  }
}
