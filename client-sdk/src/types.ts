// The wire contract as the SDK sees it (docs/protocol.md is the reference).

export interface MessageEvent {
  seq: number
  type: 'message'
  id: string
  from: string
  /** The recipient (1:1 messages). */
  to?: string
  /** The group and the message's number in the group's log (group messages). */
  group?: string
  gseq?: number
  ts: number
  /** A reply: the message it answers, as the sender named it (the server checks its shape, not that it exists). */
  replyTo?: ReplyTo
  /** The body as sent; decrypted when end-to-end encryption is on. Absent after a recall. */
  body?: unknown
  /** Edited by its sender: `body` is the latest. */
  edited?: true
  editedAt?: number
  recalled?: true
  recalledAt?: number
  /** Set when the body was end-to-end encrypted and could not be decrypted. */
  decryptError?: string
  /** Files the message references (`client.download(attachment)`); in an encrypted conversation, with their keys from the decrypted body. */
  attachments?: Attachment[]
}

/** An uploaded file, as `client.upload` returns it and messages carry it. */
export interface Attachment {
  id: string
  /** Bytes (of the plaintext when the SDK encrypted it). */
  size: number
  type: string
  thumbnail?: string
  /** End-to-end encrypted files: the file's own key and the SHA-256 of what the server stores (base64). */
  key?: string
  digest?: string
}

/** The message a reply answers: `{id, from}` (1:1 or group) or `{gseq}` (group). */
export interface ReplyTo {
  id?: string
  from?: string
  gseq?: number
}

export interface ReceiptEvent {
  seq: number
  type: 'receipt'
  kind: 'delivered' | 'read'
  by: string
  /** The conversation (1:1): `upTo` is a seq of yours. */
  peer?: string
  /** The conversation (group): `upTo` is a gseq. */
  group?: string
  upTo: number
  id?: string
  /**
   * Group only, to the sender of the messages read: who read them, each up to which gseq (coalesced: one
   * receipt for several readers). Such a receipt has no `by` or `upTo`.
   */
  readers?: Record<string, number>
  ts: number
}

export interface RecallEvent {
  seq: number
  type: 'recall'
  id: string
  from: string
  /** 1:1: the recipient, and the recalled message's seq in your log. */
  to?: string
  messageSeq?: number
  /** Group: the group, and the recalled message's gseq; `by` is who recalled it (the sender or an admin). */
  group?: string
  messageGseq?: number
  by?: string
  ts: number
}

/** An edit: the message now has `body` (decrypted when end-to-end encryption is on). */
export interface EditEvent {
  seq: number
  type: 'edit'
  id: string
  from: string
  /** 1:1: the recipient, and the edited message's seq in your log. */
  to?: string
  messageSeq?: number
  /** Group: the group, and the edited message's gseq. */
  group?: string
  messageGseq?: number
  body: unknown
  ts: number
  /** Set when the new body was end-to-end encrypted and could not be decrypted. */
  decryptError?: string
}

/** A membership or group change, in every member's log (docs/protocol.md, Groups). */
export interface GroupEvent {
  seq: number
  type: 'group_created' | 'member_added' | 'member_removed' | 'role_changed' | 'group_updated'
  group: string
  gseq: number
  by: string
  ts: number
  /** Depending on `type`: name, members, users, user, reason, roles, meta. */
  [field: string]: unknown
}

export type Role = 'owner' | 'admin' | 'member'

export interface Group {
  id: string
  name: string
  meta: Record<string, unknown> | null
  creator: string
  createdAt: number
  members: Array<{ user: string, role: Role }>
}

/** Everything in a user's log: numbered by the user's gapless seq. */
export type LogEvent = MessageEvent | ReceiptEvent | RecallEvent | EditEvent | GroupEvent

export interface TypingEvent {
  type: 'typing'
  from: string
  /** The person typed to, or the group typed in. */
  to?: string
  group?: string
  active: boolean
  ts: number
}

export interface PresenceState {
  status: 'online' | 'offline'
  ts: number
  lastSeen: number
}

export interface ServerErrorEvent {
  type: 'error'
  code: string
  message: string
  topic: string
  id?: string
  /** `rate_limited`: how long to wait before sending again. */
  retryAfterMs?: number
  ts: number
}

export interface ConversationSummary {
  /** The other person; absent for a group conversation, which has `group`. */
  peer?: string
  group?: string
  lastSeq: number
  lastMessage: MessageEvent | null
  unread: number
  readUpTo: number
  peerReadUpTo: number
  peerDeliveredUpTo: number
}

/**
 * `revoked`: the server refused this device's token as revoked (a logout on
 * another device, or an admin); `loggedOut`: this client's `logout()`. Both
 * are final: the client stops reconnecting; sign in again with a new client.
 */
export type ConnectionState = 'connecting' | 'online' | 'offline' | 'revoked' | 'loggedOut'

/** One hit of `client.search`: the message as history holds it, and a snippet with the matches' [start, end) offsets. */
export interface SearchResult {
  conversation: { peer: string } | { group: string }
  seq: number
  gseq?: number
  ts: number
  message: MessageEvent
  snippet: { text: string, marks: Array<[number, number]> }
}
