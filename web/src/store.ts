// What the page knows: conversations (last message, unread, receipt marks),
// group names, presence, typing, and the messages being sent. It is fed by
// the SDK's events and REST answers, and tells the views what changed.
//
// A conversation has a key: the peer's user id (1:1), or `g:<groupId>`
// (user ids cannot contain ':', so the two never collide).
import type { ConversationSummary, EditEvent, Group, GroupEvent, MessageEvent, PresenceState, ReceiptEvent, RecallEvent, Role, TypingEvent } from '../../client-sdk/src/index.ts'

/** A conversation as listed; `readUpTo` is a seq of ours (1:1) or a gseq (group). */
export type Conversation = ConversationSummary & { key: string }

export const groupKey = (group: string): string => `g:${group}`
export const groupOfKey = (key: string): string | undefined => key.startsWith('g:') ? key.slice(2) : undefined

/** A group as the page knows it: its name, its members and their roles, and whether we are still in it. */
export interface GroupInfo {
  name: string
  members: string[]
  /** Known roles (from GET /v1/groups and role_changed events); a member added later is a `member`. */
  roles: Map<string, Role>
  left: boolean
  /** How far each other member has read (a gseq), as far as this page has learnt. */
  readUpTo: Map<string, number>
  /** The gseq at which members joined, where the page has seen it: a member never reads what came before. */
  joinedAt: Map<string, number>
}

const newGroupInfo = (): GroupInfo => ({ name: 'Group', members: [], roles: new Map(), left: false, readUpTo: new Map(), joinedAt: new Map() })

/** A message typed here that the server has not stored yet. */
export interface Pending {
  key: number
  /** The conversation's key. */
  conversation: string
  text: string
  failed?: string
}

export interface StoreEvents {
  conversations: () => void
  /** A message for a conversation, live or caught up (each seq once per client, but possibly again after a reconnect). */
  message: (message: MessageEvent) => void
  recall: (recall: RecallEvent) => void
  /** A message was edited: show the new body in its place. */
  edit: (edit: EditEvent) => void
  /** Receipt marks or unread count of one conversation moved. */
  marks: (key: string) => void
  presence: (user: string) => void
  /** Someone started or stopped typing in a conversation. */
  typing: (key: string) => void
  pending: (key: string) => void
  /** A membership or group change (also in the group's history). */
  groupEvent: (event: GroupEvent) => void
  /** A group's name or members changed. */
  group: (group: string) => void
  /** You blocked or unblocked someone. */
  blocks: (user: string) => void
  /** The page went offline or came back: presence it shows is unknown meanwhile. */
  online: (online: boolean) => void
}

const TYPING_SHOWN_MS = 6_000

/** The conversation a message (or recall) belongs to. */
export function keyOf (message: { from: string, to?: string, group?: string }, me: string): string {
  if (message.group !== undefined) return groupKey(message.group)
  return message.from === me ? message.to ?? '' : message.from
}

/** Where a message stands in its conversation: gseq in a group, our seq in a 1:1 conversation. */
export const positionOf = (message: { seq: number, gseq?: number, group?: string }): number =>
  message.group !== undefined ? message.gseq ?? 0 : message.seq

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
  readonly groups = new Map<string, GroupInfo>()
  /** Users you blocked (their 1:1 messages and typing do not reach you). */
  readonly blocked = new Set<string>()
  /** False while the page is not connected: others' presence is then unknown, not what it last was. */
  online = true
  /** Per conversation key: who is typing there, until when. */
  readonly #typingUntil = new Map<string, Map<string, number>>()
  /** Server time of each `<key> <user>`'s latest typing event. */
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
    return [...this.conversations.values()].sort((a, b) => (b.lastMessage?.ts ?? 0) - (a.lastMessage?.ts ?? 0) || a.key.localeCompare(b.key))
  }

  /** A conversation's title: the peer, or the group's name. */
  title (key: string): string {
    const group = groupOfKey(key)
    return group === undefined ? key : this.groups.get(group)?.name ?? 'Group'
  }

  conversation (key: string): Conversation {
    let conversation = this.conversations.get(key)
    if (conversation === undefined) {
      const group = groupOfKey(key)
      conversation = { key, ...(group === undefined ? { peer: key } : { group }), lastSeq: 0, lastMessage: null, unread: 0, readUpTo: 0, peerReadUpTo: 0, peerDeliveredUpTo: 0 }
      this.conversations.set(key, conversation)
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
      const key = summary.group !== undefined ? groupKey(summary.group) : summary.peer
      if (key === undefined) continue
      const local = this.conversations.get(key)
      const conversation: Conversation = { ...summary, key }
      // A read mark we made while the summary was on its way is newer than it.
      if (local !== undefined && local.readUpTo > conversation.readUpTo) {
        conversation.readUpTo = local.readUpTo
        if (local.readUpTo >= this.#lastPosition(conversation)) conversation.unread = 0
      }
      this.conversations.set(key, conversation)
    }
    const buffered = this.#buffered ?? []
    this.#buffered = undefined
    for (const apply of buffered) apply()
    this.#emit('conversations')
    for (const key of this.conversations.keys()) this.#emit('marks', key)
  }

  /** The groups we are in, with names (GET /v1/groups). */
  groupsLoaded (groups: Group[]): void {
    for (const group of groups) {
      const info = this.groups.get(group.id) ?? newGroupInfo()
      info.name = group.name
      info.members = group.members.map((member) => member.user)
      info.roles = new Map(group.members.map((member) => [member.user, member.role]))
      info.left = !info.members.includes(this.me)
      this.groups.set(group.id, info)
      this.#emit('group', group.id)
    }
    this.#emit('conversations')
  }

  setBlocked (user: string, blocked: boolean): void {
    if (blocked) this.blocked.add(user)
    else this.blocked.delete(user)
    this.#emit('blocks', user)
  }

  #lastPosition (conversation: Conversation): number {
    const last = conversation.lastMessage
    return last === null ? 0 : conversation.group !== undefined ? last.gseq ?? 0 : conversation.lastSeq
  }

  #whenLoaded (apply: () => void): void {
    if (this.#buffered !== undefined) this.#buffered.push(apply)
    else apply()
  }

  onMessage (message: MessageEvent): void {
    const key = keyOf(message, this.me)
    if (message.from === this.me) this.#settlePending(key, message)
    // A message ends its sender's typing, unless they started typing again after it
    // (typing is not stored, so it can overtake the message it follows).
    else if ((this.#typingAt.get(`${key} ${message.from}`) ?? 0) <= message.ts) this.#stopTyping(key, message.from)
    this.#emit('message', message)
    this.#whenLoaded(() => {
      const conversation = this.conversation(key)
      // Already counted in the server's summary (or seen before a reconnect).
      if (message.seq <= conversation.lastSeq) return
      conversation.lastSeq = message.seq
      conversation.lastMessage = message
      if (message.from !== this.me && positionOf(message) > conversation.readUpTo) conversation.unread++
      this.#emit('conversations')
    })
  }

  onGroupEvent (event: GroupEvent): void {
    const info = this.groups.get(event.group) ?? newGroupInfo()
    const users = (list: unknown): string[] => Array.isArray(list) ? list.filter((user): user is string => typeof user === 'string') : []
    if (typeof event.name === 'string') info.name = event.name
    if (event.type === 'group_created') {
      info.members = users(event.members)
      if (typeof event.by === 'string') info.roles.set(event.by, 'owner')
    }
    this.#noteJoins(info, event)
    if (event.type === 'member_added') {
      info.members = [...new Set([...info.members, ...users(event.users)])]
      if (users(event.users).includes(this.me)) info.left = false
    }
    if (event.type === 'member_removed') {
      info.members = info.members.filter((user) => user !== event.user)
      info.roles.delete(String(event.user))
      info.readUpTo.delete(String(event.user))
      if (event.user === this.me) info.left = true
    }
    if (event.type === 'role_changed' && event.roles !== null && typeof event.roles === 'object') {
      for (const [user, role] of Object.entries(event.roles as Record<string, unknown>)) {
        if (role === 'owner' || role === 'admin' || role === 'member') info.roles.set(user, role)
      }
    }
    this.groups.set(event.group, info)
    this.#emit('groupEvent', event)
    this.#emit('group', event.group)
    this.#whenLoaded(() => {
      // A new group shows in the list at once (before any message).
      const key = groupKey(event.group)
      if (!this.conversations.has(key)) this.conversation(key)
      else this.#emit('conversations')
    })
  }

  onReceipt (receipt: ReceiptEvent): void {
    const key = receipt.group !== undefined ? groupKey(receipt.group) : receipt.peer
    if (key === undefined) return
    this.#whenLoaded(() => {
      const conversation = this.conversation(key)
      if (receipt.by === this.me) {
        // Read on another of my devices.
        if (receipt.kind === 'read' && receipt.upTo > conversation.readUpTo) {
          conversation.readUpTo = receipt.upTo
          if (receipt.upTo >= this.#lastPosition(conversation)) conversation.unread = 0
          this.#emit('conversations')
        }
        return
      }
      // Groups: who has read our messages (one coalesced receipt naming each reader's gseq).
      if (conversation.group !== undefined) {
        if (receipt.readers !== undefined) this.groupRead(conversation.group, receipt.readers)
        return
      }
      if (receipt.upTo > conversation.peerDeliveredUpTo) conversation.peerDeliveredUpTo = receipt.upTo
      if (receipt.kind === 'read' && receipt.upTo > conversation.peerReadUpTo) conversation.peerReadUpTo = receipt.upTo
      this.#emit('marks', key)
    })
  }

  onRecall (recall: RecallEvent): void {
    this.#emit('recall', recall)
    this.#whenLoaded(() => {
      const conversation = this.conversations.get(keyOf(recall, this.me))
      const last = conversation?.lastMessage
      if (last?.id === recall.id && last.from === recall.from) {
        conversation!.lastMessage = { ...last, body: undefined, recalled: true }
        this.#emit('conversations')
      }
    })
  }

  onEdit (edit: EditEvent): void {
    this.#emit('edit', edit)
    this.#whenLoaded(() => {
      const conversation = this.conversations.get(keyOf(edit, this.me))
      const last = conversation?.lastMessage
      if (last?.id === edit.id && last.from === edit.from && last.recalled !== true) {
        conversation!.lastMessage = { ...last, body: edit.body, edited: true, editedAt: edit.ts }
        this.#emit('conversations')
      }
    })
  }

  /** The answer to our own markRead. */
  readMarked (key: string, result: { readUpTo: number, unread: number }): void {
    const conversation = this.conversation(key)
    conversation.readUpTo = Math.max(conversation.readUpTo, result.readUpTo)
    conversation.unread = result.unread
    this.#emit('conversations')
  }

  /** Membership events from a history page: when members joined (for read ticks). */
  groupHistory (group: string, events: Array<Record<string, unknown>>): void {
    const info = this.#groupInfo(group)
    for (const event of events) this.#noteJoins(info, event)
    this.#emit('marks', groupKey(group))
  }

  #noteJoins (info: GroupInfo, event: Record<string, unknown>): void {
    const gseq = Number(event.gseq)
    if (!Number.isInteger(gseq)) return
    const joined = event.type === 'member_added' ? event.users : event.type === 'group_created' ? event.members : undefined
    if (!Array.isArray(joined)) return
    for (const user of joined) if (typeof user === 'string' && gseq > (info.joinedAt.get(user) ?? 0)) info.joinedAt.set(user, gseq)
  }

  #groupInfo (group: string): GroupInfo {
    let info = this.groups.get(group)
    if (info === undefined) this.groups.set(group, info = newGroupInfo())
    return info
  }

  /** Members' read marks in a group (a gseq each): from receipts, or from GET .../receipts of one of ours. */
  groupRead (group: string, readers: Record<string, number>): void {
    // The groups may not be loaded yet (a reload with the group open): keep the marks for when they are.
    const info = this.#groupInfo(group)
    let moved = false
    for (const [user, upTo] of Object.entries(readers)) {
      if (user === this.me || upTo <= (info.readUpTo.get(user) ?? 0)) continue
      info.readUpTo.set(user, upTo)
      moved = true
    }
    if (moved) this.#emit('marks', groupKey(group))
  }

  /** Who of the other members (those who were members at `gseq`) has read up to it, and how many they are. */
  groupReaders (group: string, gseq: number): { readers: string[], others: number } {
    const info = this.groups.get(group)
    if (info === undefined) return { readers: [], others: 0 }
    const others = info.members.filter((user) => user !== this.me && (info.joinedAt.get(user) ?? 0) <= gseq)
    return { readers: others.filter((user) => (info.readUpTo.get(user) ?? 0) >= gseq), others: others.length }
  }

  setOnline (online: boolean): void {
    if (this.online === online) return
    this.online = online
    this.#emit('online', online)
  }

  onPresence (user: string, state: PresenceState): void {
    this.presence.set(user, state)
    if (state.status === 'offline') for (const key of this.#typingUntil.keys()) this.#stopTyping(key, user)
    this.#emit('presence', user)
  }

  onTyping (typing: TypingEvent): void {
    if (typing.from === this.me) return
    const key = typing.group !== undefined ? groupKey(typing.group) : typing.from
    if (!typing.active) return this.#stopTyping(key, typing.from)
    const timer = `${key} ${typing.from}`
    this.#typingAt.set(timer, typing.ts)
    let typers = this.#typingUntil.get(key)
    if (typers === undefined) this.#typingUntil.set(key, typers = new Map())
    typers.set(typing.from, Date.now() + TYPING_SHOWN_MS)
    clearTimeout(this.#typingTimers.get(timer))
    this.#typingTimers.set(timer, setTimeout(() => this.#stopTyping(key, typing.from), TYPING_SHOWN_MS))
    this.#emit('typing', key)
  }

  /** Who is typing in a conversation now (for a 1:1 conversation: the peer, or nobody). */
  typingIn (key: string): string[] {
    const now = Date.now()
    return [...this.#typingUntil.get(key) ?? []].filter(([, until]) => until > now).map(([user]) => user)
  }

  isTyping (key: string): boolean {
    return this.typingIn(key).length > 0
  }

  #stopTyping (key: string, user: string): void {
    if (this.#typingUntil.get(key)?.delete(user) !== true) return
    clearTimeout(this.#typingTimers.get(`${key} ${user}`))
    this.#emit('typing', key)
  }

  // ---- messages being sent ---------------------------------------------------

  addPending (conversation: string, text: string): Pending {
    const pending: Pending = { key: ++this.#pendingKey, conversation, text }
    this.pending.set(conversation, [...this.pending.get(conversation) ?? [], pending])
    this.#emit('pending', conversation)
    return pending
  }

  removePending (pending: Pending): void {
    const list = this.pending.get(pending.conversation) ?? []
    if (!list.includes(pending)) return
    this.pending.set(pending.conversation, list.filter((item) => item !== pending))
    this.#emit('pending', pending.conversation)
  }

  failPending (pending: Pending, reason: string): void {
    pending.failed = reason
    this.#emit('pending', pending.conversation)
  }

  /**
   * Our own message came back stored: it replaces the oldest pending one with
   * the same text. (The send() promise settles it too, but after a client
   * replacement only this event does: the outbox is resent by the new client.)
   */
  #settlePending (key: string, message: MessageEvent): void {
    const text = bodyText(message)
    const match = (this.pending.get(key) ?? []).find((item) => item.failed === undefined && item.text === text)
    if (match !== undefined) this.removePending(match)
  }
}
