// Logout and revocation cut live sessions: a kick goes to every server
// process (storage/cluster-signal.ts), and each closes the matching MQTT
// connections it holds: all of a user's, one device's, or those that
// authenticated with one token.
import type { Aedes, Client } from 'aedes'
import type { ClusterSignal } from '../storage/cluster-signal.ts'
import { tokenHash } from '../auth/revocations.ts'
import { closeWith } from './close-reasons.ts'

export interface Kick {
  type: 'kick'
  user: string
  device?: string
  /** Only connections that authenticated with this token (its hash). */
  tokenHash?: string
}

const KICKED = 'logged out or revoked (a kick)'

/** How long a kick is remembered for connections still between authentication and CONNACK. */
const RECENT_MS = 10_000

/** Remembers which token each connection used, and closes connections when a kick arrives. */
export class Kicker {
  readonly #tokens = new WeakMap<Client, string>()
  readonly #authenticatedAt = new WeakMap<Client, number>()
  /** Kicks of the last RECENT_MS: a connection that passed authentication just before a kick is not yet in the broker's client list when it arrives. */
  #recent: Array<{ kick: Kick, at: number }> = []

  constructor (aedes: Aedes, signal: ClusterSignal) {
    signal.listen((message) => {
      if (message.type !== 'kick' || typeof message.user !== 'string') return
      const kick = message as unknown as Kick
      const now = Date.now()
      this.#recent = this.#recent.filter((entry) => now - entry.at < RECENT_MS)
      this.#recent.push({ kick, at: now })
      const clients = (aedes as unknown as { clients: Record<string, Client> }).clients
      for (const client of Object.values(clients)) if (this.#matches(kick, client)) closeWith(client, KICKED)
    })
    aedes.on('clientReady', (client) => {
      const since = this.#authenticatedAt.get(client) ?? 0
      if (this.#recent.some((entry) => entry.at >= since && this.#matches(entry.kick, client))) closeWith(client, KICKED)
    })
  }

  #matches (kick: Kick, client: Client): boolean {
    if (!client.id.startsWith(`${kick.user}:`)) return false
    if (kick.device !== undefined && client.id !== `${kick.user}:${kick.device}`) return false
    return kick.tokenHash === undefined || this.#tokens.get(client) === kick.tokenHash
  }

  authenticated (client: Client, token: string): void {
    this.#tokens.set(client, tokenHash(token))
    this.#authenticatedAt.set(client, Date.now())
  }
}
