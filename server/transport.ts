// What the services send through the MQTT broker. The broker is built after
// the services (its hooks call them), so they get this late-bound door: the
// broker binds it once it is up, before it takes its first connection.
import type { PresenceState } from '../presence/presence-registry.ts'

export interface Transport {
  /** An ephemeral event (typing, a QoS 0 message) to the user's connected devices: at most once, never stored. */
  ephemeral (user: string, json: string): Promise<void>
  /** A user's presence state to its watchers; `retain`: also the state every later subscriber gets. */
  presence (user: string, state: PresenceState, retain: boolean): Promise<void>
}

export class LateTransport implements Transport {
  #bound: Transport | undefined

  /** Once: the broker is up. */
  bind (transport: Transport): void {
    if (this.#bound !== undefined) throw new Error('the transport is bound already')
    this.#bound = transport
  }

  async ephemeral (user: string, json: string): Promise<void> {
    await this.#door().ephemeral(user, json)
  }

  async presence (user: string, state: PresenceState, retain: boolean): Promise<void> {
    await this.#door().presence(user, state, retain)
  }

  #door (): Transport {
    // Only a connection makes a service send, and none exists before the broker: this is a wiring mistake.
    if (this.#bound === undefined) throw new Error('a service sent before the broker was up')
    return this.#bound
  }
}
