// What the page knows: conversations (last message, unread, receipt marks),
// presence, typing, and the messages being sent. It is fed by the SDK's
// events and REST answers, and tells the views what changed.
import type { ConversationSummary, MessageEvent, PresenceState, ReceiptEvent, RecallEvent, TypingEvent } from '../../client-sdk/src/index.ts'

/** A 1:1 conversation (the page does not show groups yet). */
export type Conversation = ConversationSummary & { peer: string }

/** A message typed here that the server has not stored yet. */
export interface Pending {
  key: number
  peer: string
  text: string
  failed?: string
}

export interface StoreEvents {
  conversations: () => void
  /** A message for a conversation, live or caught up (each seq once per client, but possibly again after a reconnect). */
  message: (message: MessageEvent) => void
  recall: (recall: RecallEvent) => void
  /** Receipt marks or unread count of one conversation moved. */
  marks: (peer: string) => void
  presence: (user: string) => void
  typing: (user: string) => void
  pending: (peer: string) => void
}

const TYPING_SHOWN_MS = 6_000

/** The other person of a 1:1 message (group messages have no `to` and are not shown here). */
export function peerOf (message: { from: string, to?: string }, me: string): string {
  return message.from === me ? message.to ?? '' : message.from
}

/** A message body as text: the SDK and the terminal chat send strings; anything else is shown as JSON. */
export function bodyText (message: MessageEvent): string {
  if (message.recalled === true) return 'Message recalled'
  if (message.decryptError !== undefined) return 'Encrypted message (this page cannot decrypt it)'
  const body = message.body
  if (typeof body === 'string') return body
  if (body !== null && typeof body === 'object' && typeof (body as { text?: unknown }).text === 'string') return (body as { text: string }).text
  return JSON.stringify(body)
}

export class ChatStore {
  readonly conversations = new Map<string, Conversation>()
  readonly presence = new Map<string, PresenceState>()
  readonly #typingUntil = new Map<string, number>()
  /** Server time of each user's latest typing event. */
  readonly #typingAt = new Map<string, number>()
  readonly #typingTimers = new Map<string, ReturnType<typeof setTimeout>>()
  readonly pending = new Map<string, Pending[]>()
  readonly #listeners = new Map<keyof StoreEvents, Set<(...args: any[]) => void>>()
  #pendingKey = 0
  /** Events that arrive while conversations are (re)loading are replayed on top of the loaded summaries. */
  #buffered: Array<() => void> | undefined = []

  constructor (readonly me: string) {}

  on<K extends keyof StoreEvents> (event: K, listener: StoreEvents[K]): () => void {
    let set = this.#listeners.get(event)
    if (set === undefined) this.#listeners.set(event, set = new Set())
    set.add(listener)
    return () => { set.delete(listener) }
  }

  #emit<K extends keyof StoreEvents> (event: K, ...args: Parameters<StoreEvents[K]>): void {
    for (const listener of this.#listeners.get(event) ?? []) listener(...args)
  }

  get totalUnread (): number {
    let total = 0
    for (const conversation of this.conversations.values()) total += conversation.unread
    return total
  }

  /** Conversations, most recent first; new empty ones (opened but no message yet) last. */
  sortedConversations (): Conversation[] {
    return [...this.conversations.values()].sort((a, b) => (b.lastMessage?.ts ?? 0) - (a.lastMessage?.ts ?? 0) || a.peer.localeCompare(b.peer))
  }

  conversation (peer: string): Conversation {
    let conversation = this.conversations.get(peer)
    if (conversation === undefined) {
      conversation = { peer, lastSeq: 0, lastMessage: null, unread: 0, readUpTo: 0, peerReadUpTo: 0, peerDeliveredUpTo: 0 }
      this.conversations.set(peer, conversation)
      this.#emit('conversations')
    }
    return conversation
  }

  beginLoad (): void {
    this.#buffered ??= []
  }

  /** The server's summaries; events that came meanwhile are applied again on top (those already counted are skipped by seq). */
  loaded (summaries: ConversationSummary[]): void {
    for (const summary of summaries) {
      // Groups are listed by the server too; this page shows 1:1 conversations only.
      if (summary.peer === undefined) continue
      const local = this.conversations.get(summary.peer)
      const conversation: Conversation = { ...summary, peer: summary.peer }
      // A read mark we made while the summary was on its way is newer than it.
      if (local !== undefined && local.readUpTo > conversation.readUpTo) {
        conversation.readUpTo = local.readUpTo
        if (local.readUpTo >= conversation.lastSeq) conversation.unread = 0
      }
      this.conversations.set(summary.peer, conversation)
    }
    const buffered = this.#buffered ?? []
    this.#buffered = undefined
    for (const apply of buffered) apply()
    this.#emit('conversations')
    for (const peer of this.conversations.keys()) this.#emit('marks', peer)
  }

  #whenLoaded (apply: () => void): void {
    if (this.#buffered !== undefined) this.#buffered.push(apply)
    else apply()
  }

  onMessage (message: MessageEvent): void {
    if (message.group !== undefined) return
    const peer = peerOf(message, this.me)
    if (message.from === this.me) this.#settlePending(peer, message)
    // A message ends its sender's typing, unless they started typing again after it
    // (typing is not stored, so it can overtake the message it follows).
    else if ((this.#typingAt.get(peer) ?? 0) <= message.ts) this.#stopTyping(peer)
    this.#emit('message', message)
    this.#whenLoaded(() => {
      const conversation = this.conversation(peer)
      // Already counted in the server's summary (or seen before a reconnect).
      if (message.seq <= conversation.lastSeq) return
      conversation.lastSeq = message.seq
      conversation.lastMessage = message
      if (message.from !== this.me && message.seq > conversation.readUpTo) conversation.unread++
      this.#emit('conversations')
    })
  }

  onReceipt (receipt: ReceiptEvent): void {
    this.#whenLoaded(() => {
      const conversation = this.conversation(receipt.peer)
      if (receipt.by === this.me) {
        // Read on another of my devices.
        if (receipt.kind === 'read' && receipt.upTo > conversation.readUpTo) {
          conversation.readUpTo = receipt.upTo
          if (receipt.upTo >= conversation.lastSeq) conversation.unread = 0
          this.#emit('conversations')
        }
        return
      }
      if (receipt.upTo > conversation.peerDeliveredUpTo) conversation.peerDeliveredUpTo = receipt.upTo
      if (receipt.kind === 'read' && receipt.upTo > conversation.peerReadUpTo) conversation.peerReadUpTo = receipt.upTo
      this.#emit('marks', receipt.peer)
    })
  }

  onRecall (recall: RecallEvent): void {
    this.#emit('recall', recall)
    this.#whenLoaded(() => {
      const conversation = this.conversations.get(peerOf(recall, this.me))
      const last = conversation?.lastMessage
      if (last?.id === recall.id && last.from === recall.from) {
        conversation!.lastMessage = { ...last, body: undefined, recalled: true }
        this.#emit('conversations')
      }
    })
  }

  /** The answer to our own markRead. */
  readMarked (peer: string, result: { readUpTo: number, unread: number }): void {
    const conversation = this.conversation(peer)
    conversation.readUpTo = Math.max(conversation.readUpTo, result.readUpTo)
    conversation.unread = result.unread
    this.#emit('conversations')
  }

  onPresence (user: string, state: PresenceState): void {
    this.presence.set(user, state)
    if (state.status === 'offline') this.#stopTyping(user)
    this.#emit('presence', user)
  }

  onTyping (typing: TypingEvent): void {
    if (typing.from === this.me) return
    if (!typing.active) return this.#stopTyping(typing.from)
    this.#typingAt.set(typing.from, typing.ts)
    this.#typingUntil.set(typing.from, Date.now() + TYPING_SHOWN_MS)
    clearTimeout(this.#typingTimers.get(typing.from))
    this.#typingTimers.set(typing.from, setTimeout(() => this.#stopTyping(typing.from), TYPING_SHOWN_MS))
    this.#emit('typing', typing.from)
  }

  isTyping (user: string): boolean {
    return (this.#typingUntil.get(user) ?? 0) > Date.now()
  }

  #stopTyping (user: string): void {
    if (!this.#typingUntil.delete(user)) return
    clearTimeout(this.#typingTimers.get(user))
    this.#emit('typing', user)
  }

  // ---- messages being sent ---------------------------------------------------

  addPending (peer: string, text: string): Pending {
    const pending: Pending = { key: ++this.#pendingKey, peer, text }
    this.pending.set(peer, [...this.pending.get(peer) ?? [], pending])
    this.#emit('pending', peer)
    return pending
  }

  removePending (pending: Pending): void {
    const list = this.pending.get(pending.peer) ?? []
    if (!list.includes(pending)) return
    this.pending.set(pending.peer, list.filter((item) => item !== pending))
    this.#emit('pending', pending.peer)
  }

  failPending (pending: Pending, reason: string): void {
    pending.failed = reason
    this.#emit('pending', pending.peer)
  }

  /**
   * Our own message came back stored: it replaces the oldest pending one with
   * the same text. (The send() promise settles it too, but after a client
   * replacement only this event does: the outbox is resent by the new client.)
   */
  #settlePending (peer: string, message: MessageEvent): void {
    const text = bodyText(message)
    const match = (this.pending.get(peer) ?? []).find((item) => item.failed === undefined && item.text === text)
    if (match !== undefined) this.removePending(match)
  }
}
