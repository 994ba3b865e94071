// Sending: every message goes into the durable outbox first, is published at
// QoS 1 while connected (republished in order after each reconnect), and its
// promise resolves with the stamped copy from the server (the inbox echo of
// one's own message, or, if that does not come, the same id over REST, which
// the server answers with the stored original; asked only once every earlier
// send is acknowledged and no refusal is pending, as REST could otherwise
// store it ahead of them). Error events reject it,
// except `rate_limited`: then nothing more is published until every publish
// in flight is acknowledged and `retryAfterMs` has passed, and the refused
// ones are published again, in order (the server refuses a connection's
// later publishes too until it answers the refusal, so none overtakes it).
import type { MqttClient } from 'mqtt'
import type { Outbox, OutboxItem } from './outbox.ts'
import { ApiError, type RestClient } from './rest.ts'
import type { LogEvent, MessageEvent, ServerErrorEvent } from './types.ts'

/** A send the server refused; `code` is the error event's code (docs/protocol.md). */
export class SendError extends Error {
  constructor (readonly code: string, message: string, readonly id: string) {
    super(message)
  }
}

interface PendingSend {
  resolve: (message: MessageEvent) => void
  reject: (error: Error) => void
  confirmTimer?: ReturnType<typeof setTimeout>
  /** The last publish on this connection: acknowledged as stored, or refused for the rate (to be published again). */
  outcome?: 'stored' | 'throttled'
}

/** The longest a `rate_limited` refusal makes the sender wait (whatever retryAfterMs says). */
const MAX_THROTTLE_MS = 60_000

export interface SenderOptions {
  outbox: Outbox
  rest: RestClient
  mqtt: () => MqttClient | undefined
  /** A stamped copy fetched over REST goes through the inbox like any event. */
  accept: (event: LogEvent) => void
  decrypt: (message: MessageEvent) => MessageEvent
  onError: (error: Error) => void
  confirmWaitMs?: number
}

export class Sender {
  readonly #options: SenderOptions
  readonly #pending = new Map<string, PendingSend>()
  /** Own messages recently seen, by id: resolves a retried send whose copy came earlier. */
  readonly #recentOwn = new Map<string, MessageEvent>()
  /** False from a (re)connect until the outbox has been republished, so new sends queue behind it in order. */
  #flushed = false
  /** Stopped: nothing more is sent or written to the outbox (a next client may share the storage). */
  #stopped = false
  /** Publishes awaiting their PUBACK on the current connection (`#connection` counts connections). */
  #inFlight = 0
  #connection = 0
  /** Refused for the rate: nothing is published before `until` and before the publishes in flight are acknowledged. */
  #throttle: { until: number, timer?: ReturnType<typeof setTimeout> } | undefined

  constructor (options: SenderOptions) {
    this.#options = options
  }

  /** After a restart: the outbox's unconfirmed sends are tracked again. */
  async load (): Promise<void> {
    await this.#options.outbox.load()
    for (const item of this.#options.outbox.items()) this.#track(item.id)
  }

  /** Connection lost or not yet republished: new sends wait in the outbox. */
  hold (): void {
    this.#flushed = false
    // A new connection republishes the whole outbox; the old one's PUBACKs no longer count.
    this.#connection++
    this.#inFlight = 0
    clearTimeout(this.#throttle?.timer)
    this.#throttle = undefined
  }

  /** Republishes the outbox, in order, on a new connection. */
  flush (): void {
    if (this.#stopped) return
    this.#flushed = true
    for (const item of this.#options.outbox.items()) this.#publish(item)
  }

  async send (item: OutboxItem): Promise<MessageEvent> {
    const confirmed = this.#track(item.id)
    await this.#options.outbox.add(item)
    this.#publish(item)
    return confirmed
  }

  #track (id: string): Promise<MessageEvent> {
    return new Promise<MessageEvent>((resolve, reject) => this.#pending.set(id, { resolve, reject }))
  }

  #publish (item: OutboxItem): void {
    const client = this.#options.mqtt()
    if (client === undefined || !client.connected || !this.#flushed || this.#throttle !== undefined) return
    const topic = item.group === undefined ? `user/${item.to}/inbox` : `group/${item.group}`
    const pending = this.#pending.get(item.id)
    if (pending !== undefined) pending.outcome = undefined
    const connection = this.#connection
    this.#inFlight++
    client.publishAsync(topic, JSON.stringify(payloadOf(item)), { qos: 1 }).then(
      () => {
        this.#acknowledged(item)
        if (connection === this.#connection) this.#settled()
      },
      () => {
        // The connection dropped: republished on the next connect.
        if (connection === this.#connection) this.#settled()
      })
  }

  #settled (): void {
    this.#inFlight--
    this.#resumeWhenAllowed()
  }

  /** A `rate_limited` refusal: hold every publish for `retryAfterMs` (and until those in flight are answered). */
  #throttleFor (retryAfterMs: number | undefined): void {
    const until = Date.now() + Math.min(Math.max(retryAfterMs ?? 1_000, 1), MAX_THROTTLE_MS)
    if (this.#throttle === undefined) this.#throttle = { until }
    else this.#throttle.until = Math.max(this.#throttle.until, until)
    this.#resumeWhenAllowed()
  }

  /** Once nothing is in flight and the wait is over: publish, in order, what is not stored yet. */
  #resumeWhenAllowed (): void {
    const throttle = this.#throttle
    if (throttle === undefined || this.#inFlight > 0 || this.#stopped) return
    clearTimeout(throttle.timer)
    const wait = throttle.until - Date.now()
    if (wait > 0) {
      throttle.timer = setTimeout(() => this.#resumeWhenAllowed(), wait)
      return
    }
    this.#throttle = undefined
    for (const item of this.#options.outbox.items()) {
      if (this.#pending.get(item.id)?.outcome !== 'stored') this.#publish(item)
    }
  }

  /** PUBACK: stored. The stamped copy normally follows on the inbox; if not, ask the server for it. */
  #acknowledged (item: OutboxItem): void {
    const pending = this.#pending.get(item.id)
    if (pending === undefined || this.#stopped) return
    // Its refusal came first (the server sends the error event before the PUBACK): published again later.
    if (pending.outcome === 'throttled') return
    pending.outcome = 'stored'
    const seen = this.#recentOwn.get(item.id)
    if (seen !== undefined) return this.stored(seen)
    this.#confirmLater(item, pending)
  }

  #confirmLater (item: OutboxItem, pending: PendingSend): void {
    clearTimeout(pending.confirmTimer)
    pending.confirmTimer = setTimeout(() => {
      if (!this.#pending.has(item.id) || this.#stopped) return
      // A PUBACK is not proof of storage when its refusal is late or was lost
      // with the connection, and REST does not wait behind this connection's
      // refused publishes: asking now could store it before an earlier one.
      if (this.#mayOvertake(item.id)) return this.#confirmLater(item, pending)
      const target = item.group === undefined ? { to: item.to } : { group: item.group }
      this.#options.rest.request<{ message: MessageEvent }>('POST', '/v1/messages', { ...target, ...payloadOf(item) }).then(
        ({ message }) => {
          if (this.#stopped) return
          this.#options.accept(message)
          // Already emitted in an earlier run (seq below lastSeq): resolve anyway.
          this.stored(this.#options.decrypt(message))
        },
        (error: Error) => {
          if (this.#stopped) return
          // Over the publish rate (REST shares it with MQTT): ask again later.
          if (error instanceof ApiError && error.status === 429) return this.#confirmLater(item, pending)
          this.#options.onError(error)
        })
    }, this.#options.confirmWaitMs ?? 3_000)
  }

  /** Whether a REST confirm of `id` could be stored before an earlier send: throttled, or an earlier one not acknowledged as stored. */
  #mayOvertake (id: string): boolean {
    if (this.#throttle !== undefined) return true
    for (const earlier of this.#options.outbox.items()) {
      if (earlier.id === id) return false
      const pending = this.#pending.get(earlier.id)
      if (pending !== undefined && pending.outcome !== 'stored') return true
    }
    return false
  }

  /** One of our own messages, as stored by the server: resolves its send. */
  stored (message: MessageEvent): void {
    if (this.#stopped) return
    this.#recentOwn.set(message.id, message)
    if (this.#recentOwn.size > 1_000) this.#recentOwn.delete(this.#recentOwn.keys().next().value!)
    const pending = this.#pending.get(message.id)
    if (pending === undefined) return
    clearTimeout(pending.confirmTimer)
    this.#pending.delete(message.id)
    void this.#options.outbox.remove(message.id)
    pending.resolve(message)
  }

  /** An error event on this device's errors topic: rejects the send it names. */
  refused (event: ServerErrorEvent): void {
    if (this.#stopped) return
    const pending = event.id === undefined ? undefined : this.#pending.get(event.id)
    if (pending === undefined || event.id === undefined) {
      this.#options.onError(new SendError(event.code, event.message, event.id ?? ''))
      return
    }
    if (event.code === 'rate_limited') {
      // Not refused for good: it stays in the outbox and is published again.
      // (Its PUBACK may have come first: no REST confirm for it, it is published again.)
      pending.outcome = 'throttled'
      clearTimeout(pending.confirmTimer)
      this.#throttleFor(event.retryAfterMs)
      return
    }
    clearTimeout(pending.confirmTimer)
    this.#pending.delete(event.id)
    void this.#options.outbox.remove(event.id)
    pending.reject(new SendError(event.code, event.message, event.id))
  }

  stop (): void {
    this.#stopped = true
    clearTimeout(this.#throttle?.timer)
    for (const pending of this.#pending.values()) clearTimeout(pending.confirmTimer)
  }
}

/** What is published (and, to confirm, posted) for an outbox item. */
/** The message as published: `replyTo` before the body, as the server stores it. */
function payloadOf (item: OutboxItem): { id: string, replyTo?: OutboxItem['replyTo'], body: unknown, attachments?: OutboxItem['attachments'] } {
  return {
    id: item.id,
    ...(item.replyTo === undefined ? {} : { replyTo: item.replyTo }),
    body: item.body,
    ...(item.attachments === undefined ? {} : { attachments: item.attachments })
  }
}
