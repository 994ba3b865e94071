// How many presence topics one connection holds (MAX_PRESENCE_WATCHES). The
// only other topics a device may hold are its own inbox and errors topic, so
// this bounds every subscription a connection can make. Presence
// subscriptions are never stored in the session (guard-persistence.ts): they
// end with the connection, and so does this count.
//
// Aedes authorizes every topic of a SUBSCRIBE at once, before any is added,
// so a slot is taken at authorization, not when the subscription appears. It
// also handles the packets of one read concurrently: an UNSUBSCRIBE may be
// handled while a SUBSCRIBE of the same topic is still being authorized (and
// the subscription is then added after it). So a topic whose SUBSCRIBE is
// under way keeps its slot until that SUBSCRIBE is complete, and is then
// counted only if the connection really holds it.
import type { Aedes, Client } from 'aedes'
import { errorEvent, PublishRejected, type ErrorEvent } from '../protocol/errors.ts'
import { parseClientId } from '../protocol/identity.ts'
import { presenceUser } from '../protocol/topics.ts'

interface Watching {
  /** Presence topics held, or taken by a SUBSCRIBE under way: at most `max`. */
  held: Set<string>
  /** Topic → SUBSCRIBEs of it under way. */
  pending: Map<string, number>
  /** Topics refused in this turn of the event loop (one error event for them). */
  refused: string[]
}

export interface PresenceWatchesOptions {
  max: number
  /** Told when a connection starts or stops holding a user's presence (presence-visibility.ts caches for those). */
  watchers: { watch (viewer: string, subject: string): void, unwatch (viewer: string, subject: string): void }
  /** The error event for a SUBSCRIBE's refused topics (SUBACK 0x80), for the device's errors topic. */
  report: (client: Client, event: ErrorEvent) => void
}

export class PresenceWatches {
  readonly #byClient = new WeakMap<Client, Watching>()
  readonly #options: PresenceWatchesOptions

  constructor (options: PresenceWatchesOptions) {
    this.#options = options
  }

  /** Follows the connections of `aedes`: completed SUBSCRIBEs, UNSUBSCRIBEs and closes. */
  listen (aedes: Aedes): void {
    aedes.on('subscribe', (subscriptions, client) => {
      const held = (client as unknown as { subscriptions: Record<string, unknown> }).subscriptions
      this.subscribed(client, subscriptions.map((sub) => sub.topic), (topic) => held[topic] !== undefined)
    })
    aedes.on('unsubscribe', (topics, client) => this.unsubscribed(client, topics))
    aedes.on('clientDisconnect', (client) => this.closed(client))
  }

  /** At authorization: false when the connection already holds `max` other presence topics. */
  take (client: Client, topic: string): boolean {
    // A packet handled after the close: nothing would release the slot.
    if (client.closed) return false
    let watching = this.#byClient.get(client)
    if (watching === undefined) this.#byClient.set(client, watching = { held: new Set(), pending: new Map(), refused: [] })
    if (!watching.held.has(topic)) {
      if (watching.held.size >= this.#options.max) {
        this.#refuse(client, watching, topic)
        return false
      }
      watching.held.add(topic)
      this.#tell('watch', client, topic)
    }
    watching.pending.set(topic, (watching.pending.get(topic) ?? 0) + 1)
    return true
  }

  /** A SUBSCRIBE is complete: each topic it took is counted if the connection holds it. */
  subscribed (client: Client, topics: string[], holds: (topic: string) => boolean): void {
    const watching = this.#byClient.get(client)
    if (watching === undefined) return
    for (const topic of topics) {
      const pending = watching.pending.get(topic)
      if (pending === undefined) continue
      if (pending > 1) {
        watching.pending.set(topic, pending - 1)
        continue
      }
      watching.pending.delete(topic)
      if (!holds(topic)) this.#release(client, watching, topic)
    }
  }

  /** UNSUBSCRIBE: frees the slots (a topic whose SUBSCRIBE is under way is decided when it completes). */
  unsubscribed (client: Client, topics: string[]): void {
    const watching = this.#byClient.get(client)
    if (watching === undefined) return
    for (const topic of topics) if (!watching.pending.has(topic)) this.#release(client, watching, topic)
  }

  /** The connection closed: its presence subscriptions are gone. */
  closed (client: Client): void {
    const watching = this.#byClient.get(client)
    if (watching === undefined) return
    this.#byClient.delete(client)
    for (const topic of watching.held) this.#tell('unwatch', client, topic)
  }

  #release (client: Client, watching: Watching, topic: string): void {
    if (watching.held.delete(topic)) this.#tell('unwatch', client, topic)
  }

  #tell (change: 'watch' | 'unwatch', client: Client, topic: string): void {
    const viewer = parseClientId(client.id)?.userId
    const subject = presenceUser(topic)
    if (viewer !== undefined && subject !== undefined) this.#options.watchers[change](viewer, subject)
  }

  // Aedes authorizes the topics of one SUBSCRIBE in one synchronous loop, so
  // its refusals are collected until the loop is over and reported together.
  #refuse (client: Client, watching: Watching, topic: string): void {
    if (watching.refused.push(topic) > 1) return
    queueMicrotask(() => {
      const topics = watching.refused
      watching.refused = []
      const { max } = this.#options
      const refusal = new PublishRejected('too_many_subscriptions', `at most ${max} presence topics per connection: ${topics.length} refused (SUBACK 0x80); unsubscribe some first`)
      this.#options.report(client, errorEvent(refusal, topics[0]!, Date.now()))
    })
  }
}
