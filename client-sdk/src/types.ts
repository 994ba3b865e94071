// The wire contract as the SDK sees it (docs/protocol.md is the reference).

export interface MessageEvent {
  seq: number
  type: 'message'
  id: string
  from: string
  to: string
  ts: number
  /** The body as sent; decrypted when end-to-end encryption is on. Absent after a recall. */
  body?: unknown
  recalled?: true
  recalledAt?: number
  /** Set when the body was end-to-end encrypted and could not be decrypted. */
  decryptError?: string
}

export interface ReceiptEvent {
  seq: number
  type: 'receipt'
  kind: 'delivered' | 'read'
  by: string
  peer: string
  upTo: number
  id: string
  ts: number
}

export interface RecallEvent {
  seq: number
  type: 'recall'
  id: string
  from: string
  to: string
  messageSeq: number
  ts: number
}

/** Everything in a user's log: numbered by the user's gapless seq. */
export type LogEvent = MessageEvent | ReceiptEvent | RecallEvent

export interface TypingEvent {
  type: 'typing'
  from: string
  to: string
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
  ts: number
}

export interface ConversationSummary {
  peer: string
  lastSeq: number
  lastMessage: MessageEvent | null
  unread: number
  readUpTo: number
  peerReadUpTo: number
  peerDeliveredUpTo: number
}

export type ConnectionState = 'connecting' | 'online' | 'offline'
