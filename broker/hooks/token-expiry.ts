// A connection lives no longer than the token that opened it: at `exp` the
// server closes it, and the client must reconnect with a fresh token.
import type { Client } from 'aedes'
import type { TokenClaims } from '../../protocol/identity.ts'
import { closeWith } from '../close-reasons.ts'

const MAX_TIMER_MS = 2 ** 31 - 1

export class TokenExpiry {
  readonly #timers = new Map<Client, NodeJS.Timeout>()

  track (client: Client, claims: TokenClaims): void {
    this.forget(client)
    if (claims.exp === undefined) return
    const ms = claims.exp * 1000 - Date.now()
    if (ms > MAX_TIMER_MS) return
    const timer = setTimeout(() => { this.#timers.delete(client); closeWith(client, 'the token expired') }, Math.max(ms, 0))
    timer.unref()
    this.#timers.set(client, timer)
  }

  forget (client: Client): void {
    const timer = this.#timers.get(client)
    if (timer !== undefined) clearTimeout(timer)
    this.#timers.delete(client)
  }
}
