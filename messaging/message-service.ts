// Accepting a message, independent of the transport it arrived on: stamp it
// with what the server can vouch for, then hand it to delivery. Durable
// messages are only acknowledged once delivery has stored them.
import { stamp, type MessageEnvelope } from '../broker/message.ts'

export interface Delivery {
  /** Resolves once the envelope is queued for every device of `recipient` (durable) or sent (ephemeral). */
  toUser (recipient: string, envelope: unknown, durable: boolean): Promise<void>
}

export interface MessageServiceOptions {
  delivery: Delivery
  now?: () => number
}

export class MessageService {
  readonly #delivery: Delivery
  readonly #now: () => number

  constructor ({ delivery, now = Date.now }: MessageServiceOptions) {
    this.#delivery = delivery
    this.#now = now
  }

  async send (from: string, to: string, message: { id: string, body: unknown }, durable: boolean): Promise<MessageEnvelope> {
    const envelope = stamp(message, from, to, this.#now())
    await this.#delivery.toUser(to, envelope, durable)
    return envelope
  }
}
