// Turns broker connection events into presence: records each authenticated
// connection, forgets it on disconnect (only if it is still the current one
// for its clientId), sweeps dead processes, and publishes every change as a
// retained `presence/<user>` message.
import { randomUUID } from 'node:crypto'
import type { Logger } from 'pino'
import type { PresenceChange, PresenceRegistry, PresenceState } from './presence-registry.ts'

/** One authenticated connection, as the transport holds it (an MQTT client): only its identity matters here. */
export interface Connection { readonly id: string }

export interface PresenceTrackerOptions {
  registry: PresenceRegistry
  publish: (user: string, state: PresenceState) => Promise<void>
  log: Logger
  sweepMs?: number
}

export class PresenceTracker {
  readonly registry: PresenceRegistry
  readonly #publish: (user: string, state: PresenceState) => Promise<void>
  readonly #log: Logger
  readonly #tokens = new WeakMap<Connection, { user: string, token: string }>()
  readonly #sweepMs: number
  #sweeper: NodeJS.Timeout | undefined
  #leaving = false

  constructor ({ registry, publish, log, sweepMs = 2_000 }: PresenceTrackerOptions) {
    this.registry = registry
    this.#publish = publish
    this.#log = log
    this.#sweepMs = sweepMs
  }

  start (): void {
    const sweep = (): void => {
      this.registry.sweep(Date.now()).then((changes) => this.#publishAll(changes))
        .catch((error: unknown) => this.#log.warn({ err: error }, 'presence sweep failed'))
    }
    sweep()
    this.#sweeper = setInterval(sweep, this.#sweepMs)
    this.#sweeper.unref()
  }

  /** Called when a connection is authenticated, before the broker registers it (and closes a session it takes over). */
  async connected (client: Connection, user: string): Promise<void> {
    const token = randomUUID()
    this.#tokens.set(client, { user, token })
    const change = await this.registry.connected(user, client.id, token, Date.now())
    if (change !== undefined) await this.#publish(user, change)
  }

  disconnected (client: Connection): void {
    const entry = this.#tokens.get(client)
    if (entry === undefined || this.#leaving) return
    this.#tokens.delete(client)
    this.registry.disconnected(entry.user, client.id, entry.token, Date.now())
      .then((change) => change === undefined ? undefined : this.#publish(entry.user, change))
      .catch((error: unknown) => this.#log.warn({ err: error, clientId: client.id }, 'could not record a disconnect'))
  }

  /** This process is stopping: its users' devices here are gone. Call while the broker can still publish. */
  async leave (): Promise<void> {
    this.#leaving = true
    clearInterval(this.#sweeper)
    await this.#publishAll(await this.registry.leave(Date.now()))
  }

  async #publishAll (changes: PresenceChange[]): Promise<void> {
    await Promise.all(changes.map(({ user, state }) => this.#publish(user, state)))
  }
}
