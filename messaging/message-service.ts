// Accepting a message, independent of the transport it arrived on (MQTT or
// REST): stamp it with what the server can vouch for, append it to the
// sender's log (which assigns its seq and makes (sender, id) idempotent; the
// log is the message's only durable copy), then tell the delivery side.
// Durable sends resolve once the sender's log has it; the recipient's copy
// follows through the store's relay (reported to the same LogSink when it
// lands, usually milliseconds later). A recipient who blocked the sender
// gets nothing (the relay keeps it in the sender's log only).
import { stamp, type OutgoingMessage } from '../protocol/message.ts'
import type { AttachmentRef } from '../protocol/attachments.ts'
import { PublishRejected } from '../protocol/errors.ts'
import type { BlockStore, LogStore } from '../history/history-store.ts'
import type { LogSink } from '../history/log-sink.ts'
import { messageTail } from '../history/events.ts'

/** Ephemeral events (QoS 0: typing, a QoS 0 message): to the user's connected devices only, never logged. */
export type SendEphemeral = (user: string, json: string) => Promise<void>

export interface SendResult {
  /** False when the same (sender, id) had been stored before: nothing was sent again. */
  created: boolean
  /** The message as the sender's log holds it (with the sender's seq); absent for ephemeral sends. */
  event: string | undefined
}

export type EditOutcome =
  | { status: 'edited', message: string }
  | { status: 'not_found' | 'window_expired' | 'recalled' | 'too_many_edits' }

export type RecallOutcome =
  | { status: 'recalled', message: string }
  | { status: 'not_found' | 'window_expired' }

/** Checks a message's attachments and grants its conversation read access (attachments/attachment-service.ts). */
export type ReferenceAttachments = (from: string, to: { user: string } | { group: string }, requests: NonNullable<OutgoingMessage['attachments']>, messageId: string) => Promise<AttachmentRef[]>

/** Attachments named by a message, checked; a server without attachment storage refuses them. */
export async function checkedAttachments (reference: ReferenceAttachments | undefined, from: string, to: { user: string } | { group: string }, message: OutgoingMessage): Promise<AttachmentRef[] | undefined> {
  if (message.attachments === undefined) return undefined
  if (reference === undefined) throw new PublishRejected('invalid_attachment', 'this server takes no attachments (its operator has not configured storage for them)', message.id)
  return await reference(from, to, message.attachments, message.id)
}

export interface MessageServiceOptions {
  history: Pick<LogStore, 'appendMessage' | 'recall' | 'edit' | 'sweepRelay' | 'relayed'>
  /** Who blocked whom: ephemeral sends (typing) to a blocker are dropped. */
  blocks: Pick<BlockStore, 'isBlocked'>
  /** Where durable appends are reported (messaging/log-delivery.ts). */
  log: LogSink
  ephemeral: SendEphemeral
  recallWindowMs: number
  /** Undefined without attachment storage: messages with attachments are refused. */
  attachments?: ReferenceAttachments
  /** How long after sending a sender may edit; 0 by default (no edits). */
  editWindowMs?: number
  now?: () => number
  /** How often this process completes relays a dead process left (0: never). */
  sweepMs?: number
  onError?: (error: unknown) => void
}

export class MessageService {
  readonly #history: MessageServiceOptions['history']
  readonly #blocks: MessageServiceOptions['blocks']
  readonly #log: LogSink
  readonly #ephemeral: SendEphemeral
  readonly #recallWindowMs: number
  readonly #attachments: ReferenceAttachments | undefined
  readonly #editWindowMs: number
  readonly #now: () => number
  readonly #sweeper: NodeJS.Timeout | undefined

  constructor ({ history, blocks, log, ephemeral, recallWindowMs, editWindowMs = 0, attachments, now = Date.now, sweepMs = 1000, onError = () => {} }: MessageServiceOptions) {
    this.#attachments = attachments
    this.#history = history
    this.#blocks = blocks
    this.#log = log
    this.#ephemeral = ephemeral
    this.#recallWindowMs = recallWindowMs
    this.#editWindowMs = editWindowMs
    this.#now = now
    if (sweepMs > 0) {
      this.#sweeper = setInterval(() => { history.sweepRelay(log).catch(onError) }, sweepMs)
      this.#sweeper.unref()
    }
  }

  /** Throws PublishRejected('id_conflict') when the id was already used for another recipient. */
  async send (from: string, to: string, message: OutgoingMessage, durable: boolean): Promise<SendResult> {
    // Off the path of messages without attachments; granted before the append, so the peer can read what it receives.
    const attachments = await checkedAttachments(this.#attachments, from, { user: to }, message)
    const ts = this.#now()
    const envelope = stamp(message, from, to, ts, attachments)
    if (!durable) {
      // Ephemeral (QoS 0): forwarded to connected devices only, never logged (nor to a blocker).
      if (!await this.#blocks.isBlocked(to, from)) await this.#ephemeral(to, `{${messageTail(envelope)}`)
      return { created: true, event: undefined }
    }
    const result = await this.#history.appendMessage(envelope, this.#log)
    if (result.status === 'conflict') {
      throw new PublishRejected('id_conflict', `id "${message.id}" was already used for a message to another recipient`, message.id)
    }
    if (result.status === 'duplicate') return { created: false, event: result.senderEvent }
    this.#log.appended(from, result.senderEvent)
    return { created: true, event: result.senderEvent }
  }

  /** Typing indicators: ephemeral, never logged, queued or pushed; dropped for a recipient who blocked the sender. */
  async typing (from: string, to: string, active: boolean): Promise<void> {
    if (await this.#blocks.isBlocked(to, from)) return
    await this.#ephemeral(to, JSON.stringify({ type: 'typing', from, to, active, ts: this.#now() }))
  }

  async recall (sender: string, id: string): Promise<RecallOutcome> {
    const result = await this.#history.recall(sender, id, this.#now(), this.#recallWindowMs, this.#log)
    if (result.status !== 'recalled') return result
    if (result.senderEvent !== undefined) this.#log.appended(sender, result.senderEvent)
    return { status: 'recalled', message: result.message }
  }

  /** The sender replaces a message's body (a body already checked like a send's: protocol/message.ts). */
  async edit (sender: string, id: string, body: unknown): Promise<EditOutcome> {
    const result = await this.#history.edit(sender, id, body, this.#now(), this.#editWindowMs, this.#log)
    if (result.status !== 'edited') return result
    if (result.senderEvent !== undefined) this.#log.appended(sender, result.senderEvent)
    return { status: 'edited', message: result.message }
  }

  /** Stops the sweeper; resolves once the relays this process started have run. */
  async close (): Promise<void> {
    clearInterval(this.#sweeper)
    await this.#history.relayed()
  }
}
