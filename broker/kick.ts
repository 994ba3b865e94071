// Logout and revocation cut live sessions: a kick goes to every server
// process (storage/cluster-signal.ts), and each closes the matching MQTT
// connections it holds: all of a user's, one device's, or those that
// authenticated with one token.
import type { Aedes, Client } from 'aedes'
import type { ClusterSignal } from '../storage/cluster-signal.ts'
import { tokenHash } from '../auth/revocations.ts'

export interface Kick {
  type: 'kick'
  user: string
  device?: string
  /** Only connections that authenticated with this token (its hash). */
  tokenHash?: string
}

/** Remembers which token each connection used, and closes connections when a kick arrives. */
export class Kicker {
  readonly #tokens = new WeakMap<Client, string>()

  constructor (aedes: Aedes, signal: ClusterSignal) {
    signal.listen((message) => {
      if (message.type !== 'kick' || typeof message.user !== 'string') return
      const kick = message as unknown as Kick
      const clients = (aedes as unknown as { clients: Record<string, Client> }).clients
      for (const [clientId, client] of Object.entries(clients)) {
        if (!clientId.startsWith(`${kick.user}:`)) continue
        if (kick.device !== undefined && clientId !== `${kick.user}:${kick.device}`) continue
        if (kick.tokenHash !== undefined && this.#tokens.get(client) !== kick.tokenHash) continue
        client.close()
      }
    })
  }

  authenticated (client: Client, token: string): void {
    this.#tokens.set(client, tokenHash(token))
  }
}
