// Accepting a message, independent of the transport it arrived on (MQTT or
// REST): stamp it with what the server can vouch for, append it to the
// history log (which assigns each side its seq and makes (sender, id)
// idempotent; the log is the message's only durable copy), then tell the
// delivery side that both users' logs have a new event. Durable sends
// resolve once the append is stored. A recipient who blocked the sender
// gets nothing (the append keeps it in the sender's log only).
import { stamp } from '../protocol/message.ts'
import { PublishRejected } from '../protocol/errors.ts'
import type { HistoryStore } from '../history/history-store.ts'

export interface Delivery {
  /** Durable: `json` is already in `user`'s log; tells the devices' streams. Ephemeral: sends to connected devices only. */
  toUser (user: string, json: string, durable: boolean): Promise<void>
  /** Durable: one group event, already in each recipient's log at their seq (`{"seq":N,` + tail). */
  toMembers (recipients: Array<[user: string, seq: number]>, tail: string): Promise<void>
}

export interface SendResult {
  /** False when the same (sender, id) had been stored before: nothing was sent again. */
  created: boolean
  /** The message as the sender's log holds it (with the sender's seq); absent for ephemeral sends. */
  event: string | undefined
}

export type RecallOutcome =
  | { status: 'recalled', message: string }
  | { status: 'not_found' | 'window_expired' }

/** A message just stored for `to` (`seq` is in the recipient's log); `group` for a group message. */
export interface StoredMessage { from: string, to: string, id: string, seq: number, group?: { id: string, name: string } }

export interface MessageServiceOptions {
  history: HistoryStore
  delivery: Delivery
  /** Told of every newly stored message, after delivery was queued (push hooks in here). Must not throw. */
  onStored?: (message: StoredMessage) => void
  /** Two users' first message (presence may become visible between them). Must not throw. */
  onNewConversation?: (from: string, to: string) => void
  recallWindowMs: number
  now?: () => number
}

export class MessageService {
  readonly #history: HistoryStore
  readonly #delivery: Delivery
  readonly #recallWindowMs: number
  readonly #now: () => number
  readonly #onStored: (message: StoredMessage) => void
  readonly #onNewConversation: (from: string, to: string) => void

  constructor ({ history, delivery, recallWindowMs, onStored = () => {}, onNewConversation = () => {}, now = Date.now }: MessageServiceOptions) {
    this.#onStored = onStored
    this.#onNewConversation = onNewConversation
    this.#history = history
    this.#delivery = delivery
    this.#recallWindowMs = recallWindowMs
    this.#now = now
  }

  /** Throws PublishRejected('id_conflict') when the id was already used for another recipient. */
  async send (from: string, to: string, message: { id: string, body: unknown }, durable: boolean): Promise<SendResult> {
    const ts = this.#now()
    const envelope = JSON.stringify(stamp(message, from, to, ts))
    if (!durable) {
      // Ephemeral (QoS 0): forwarded to connected devices only, never logged (nor to a blocker).
      if (!await this.#history.isBlocked(to, from)) await this.#delivery.toUser(to, envelope, false)
      return { created: true, event: undefined }
    }
    const result = await this.#history.appendMessage({ from, to, id: message.id, ts, tail: envelope.slice(1) })
    if (result.status === 'conflict') {
      throw new PublishRejected('id_conflict', `id "${message.id}" was already used for a message to another recipient`, message.id)
    }
    if (result.status === 'duplicate') return { created: false, event: result.senderEvent }
    await Promise.all([
      this.#delivery.toUser(from, result.senderEvent, true),
      result.recipientEvent === undefined ? undefined : this.#delivery.toUser(to, result.recipientEvent, true)
    ])
    // Withheld (the recipient blocked the sender): in the sender's log only, so no push either.
    if (from !== to && result.withheld !== true) {
      this.#onStored({ from, to, id: message.id, seq: result.recipientSeq })
      if (result.newConversation === true) this.#onNewConversation(from, to)
    }
    return { created: true, event: result.senderEvent }
  }

  /** Typing indicators: ephemeral, never logged, queued or pushed; dropped for a recipient who blocked the sender. */
  async typing (from: string, to: string, active: boolean): Promise<void> {
    if (await this.#history.isBlocked(to, from)) return
    await this.#delivery.toUser(to, JSON.stringify({ type: 'typing', from, to, active, ts: this.#now() }), false)
  }

  async recall (sender: string, id: string): Promise<RecallOutcome> {
    const result = await this.#history.recall(sender, id, this.#now(), this.#recallWindowMs)
    if (result.status !== 'recalled') return result
    await Promise.all([
      result.senderEvent === undefined ? undefined : this.#delivery.toUser(sender, result.senderEvent, true),
      result.recipientEvent === undefined ? undefined : this.#delivery.toUser(result.to, result.recipientEvent, true)
    ])
    return { status: 'recalled', message: result.message }
  }
}
