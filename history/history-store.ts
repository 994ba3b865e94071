// The durable message log: the truth every device can catch up from, however
// its broker session fared. Each user has a gapless, monotonic `seq` over
// every event they send or receive (messages, receipts, recalls); the same
// message therefore has one seq in the sender's log and another in the
// recipient's. Events are kept as the exact JSON delivered on the inbox, so
// history, sync and live delivery are byte-for-byte the same envelope.
//
// One owner per write: a call writes the caller's log (the sender's, the
// reader's) and returns once that is durable; what it means for the other
// user's log (the recipient's copy, the peer's receipt, the recall event)
// reaches it through an idempotent, retried step and is reported to the
// LogSink when it lands: on Redis by the relay (redis-relay.ts), usually
// milliseconds after the call returned; in LevelDB in the same batch.
//
// Three stores, one interface each (LogStore, CursorStore, BlockStore), and
// two implementations that behave identically: on Redis one class per store
// (redis-log.ts: atomic Lua scripts on one user's slot, shared by every
// server process, on one Redis or a cluster; redis-cursors.ts; redis-blocks.ts),
// and embedded, one LevelDB serving all three (level-history.ts: one process,
// writes serialised in-process, an append reading blocks in its transaction).
import type { LogSink } from './log-sink.ts'
import type { MessageEnvelope } from '../protocol/message.ts'

/** A message as the server stamped it (protocol/message.ts); its bytes are made by history/events.ts. */
export type NewMessage = MessageEnvelope

export type AppendResult =
  /**
   * Durable in the sender's log. The recipient's copy is reported to the sink when it lands
   * (`appended` and `arrived`), unless the recipient blocked the sender by then: a withheld
   * message stays in the sender's log only. `newConversation`: the sender's log had no
   * conversation with the recipient before.
   */
  | { status: 'stored', senderEvent: string, newConversation?: true }
  /** The same (sender, id) was stored before: nothing new was written. */
  | { status: 'duplicate', senderEvent: string | undefined }
  /** The same (sender, id) was used before for a different recipient. */
  | { status: 'conflict' }

export type ReceiptKind = 'delivered' | 'read'

export interface ReceiptResult {
  /** False when the mark did not move forward (nothing was written). */
  changed: boolean
  /** The reader's mark after the call, in the reader's seq space. */
  upTo: number
  /** Unread messages left in the conversation (read receipts; delivered receipts need not count them). */
  unread: number | undefined
  /** For the reader's own devices (read receipts only). The peer's receipt event is reported to the sink when it lands. */
  readerEvent: string | undefined
}

export type RecallResult =
  /** `senderEvent`: the recall event in the sender's log (absent if it was recalled before); the recipient's is reported to the sink when it lands. */
  | { status: 'recalled', message: string, senderEvent: string | undefined, to: string }
  | { status: 'not_found' }
  | { status: 'window_expired' }

export type EditResult =
  /** `senderEvent`: the edit event in the sender's log (absent when the body was already this: a retry); the recipient's is reported to the sink when it lands. */
  | { status: 'edited', message: string, senderEvent: string | undefined, to: string }
  | { status: 'not_found' | 'window_expired' | 'recalled' | 'too_many_edits' }

export interface Page {
  events: string[]
  hasMore: boolean
  /**
   * For a log page (`events`): the highest seq it covered. Seqs up to it that
   * are not in `events` no longer exist (a group event removed by retention).
   */
  scannedTo?: number
}

export interface ConversationSummary {
  peer: string
  /** Seq (in the caller's log) of the last message in the conversation. */
  lastSeq: number
  lastMessage: string | undefined
  unread: number
  /** The caller's own read mark, in the caller's seq space. */
  readUpTo: number
  /** How far the peer has read / received the caller's messages, in the caller's seq space. */
  peerReadUpTo: number
  peerDeliveredUpTo: number
}

/** One event of a user's log, as delivered: its seq, server time and exact JSON. */
export interface LogEntry {
  seq: number
  ts: number
  /** Undefined when the entry's group event was removed by retention: the seq is passed over. */
  event: string | undefined
}

/** The per-user log: messages, receipts, recalls and notices, read as pages, conversations and the delivery queue. */
export interface LogStore {
  appendMessage (message: NewMessage, sink: LogSink): Promise<AppendResult>
  receipt (kind: ReceiptKind, reader: string, peer: string, upTo: number, ts: number, sink: LogSink): Promise<ReceiptResult>
  recall (sender: string, id: string, now: number, windowMs: number, sink: LogSink): Promise<RecallResult>
  /**
   * Replaces the body of the sender's message `id` in both logs (same id and seqs; `edited`,
   * `editedAt`) and appends an `edit` event to each: within `windowMs` of the send, never a
   * recalled message, at most MAX_EDITS_PER_MESSAGE times. Editing to the body it already has
   * writes nothing (a retry is harmless). A later recall removes the body from the message and
   * from its edit events in both logs.
   */
  edit (sender: string, id: string, body: unknown, now: number, windowMs: number, sink: LogSink): Promise<EditResult>
  /** Appends server notices (e.g. group read receipts) to users' logs: `{"seq":N,` + tail each; returns the events. */
  appendNotices (notices: Notice[]): Promise<Array<{ user: string, event: string }>>
  /**
   * Completes the relays a dead process left (the other user's copies of writes older than
   * `graceMs`), reporting them to `sink`; returns how many users' relays it ran. Every process
   * runs it now and then; a repeat is harmless.
   */
  sweepRelay (sink: LogSink, options?: { graceMs?: number, everySlot?: boolean }): Promise<number>
  /** Resolves once the relays this process started so far have run (tests, a clean stop). */
  relayed (): Promise<void>
  /**
   * Retention of one user's log, apart from the writes: removes its oldest events past
   * retention that the hook lets go, never one the relay still needs (bounded work per call).
   * Returns how many went.
   */
  trimLog (user: string, now: number): Promise<number>
  /** The user's events with seq > since, oldest first. */
  events (user: string, since: number, limit: number): Promise<Page>
  /** Messages of one conversation, oldest first: after `after`, or else the newest before `before`. */
  conversation (user: string, peer: string, range: { before?: number, after?: number, limit: number }): Promise<Page>
  conversations (user: string, range: { before?: number, limit: number }): Promise<{ conversations: ConversationSummary[], hasMore: boolean }>
  /** The caller's seq of a message in the conversation with `peer`, found by its id (either side's). */
  seqOfMessage (user: string, peer: string, id: string): Promise<number | undefined>
  unreadTotal (user: string): Promise<number>
  /** Whether `user`'s log holds a 1:1 conversation with `peer`. */
  hasConversation (user: string, peer: string): Promise<boolean>

  // The log as the delivery queue: live delivery and the reconnect drain read it from a cursor + 1.

  /** The user's latest seq (0 for a user with no events). */
  head (user: string): Promise<number>
  /** The lowest seq the log still holds (head + 1 when it holds none): retention removed what is below it (the archive may have it). */
  floor (user: string): Promise<number>
  /** Up to `limit` log entries with seq > `after`, oldest first (retention may have removed older ones). */
  readLog (user: string, after: number, limit: number): Promise<LogEntry[]>

  close (): Promise<void>
}

/**
 * The hot tier's log store (Redis or the embedded LevelDB): the log, plus what
 * only the tier that holds the data can do. (The tiered view, archive/tiered-history.ts,
 * is a LogStore; an account deletion reaches each tier itself: messaging/account-deletion.ts.)
 */
export interface HotLogStore extends LogStore {
  /**
   * Account deletion: removes everything of the user's own log from this tier (events,
   * conversation and unread indexes, id records, read marks, device cursors, blocks, the
   * outbox, the archive mark and the user's entries in the pending indexes), so a later
   * event for the user starts a new log at seq 1. Not the user's group memberships (the
   * group store's: leave the groups first), nor peers' copies of their messages (the peers'
   * history). Atomic against writes that move the log on: a write landing meanwhile is
   * deleted with the rest, never left half.
   */
  deleteUser (user: string): Promise<void>
}

/** Device cursors: a persistent session is the highest seq of its user's log the device has acknowledged. */
export interface CursorStore {
  /** The device's cursor, or undefined when it holds no persistent inbox session. */
  cursor (user: string, device: string): Promise<number | undefined>
  /**
   * The device's cursor; created at the user's current head when there is none, so it receives
   * what comes next. Creating one beyond the store's session bound (MAX_SESSIONS_PER_USER) evicts,
   * in the same atomic step, the user's sessions furthest behind (lowest cursor) among devices not
   * connected to any process; never a connected one, so while all are connected the bound is exceeded.
   */
  openCursor (user: string, device: string): Promise<OpenedCursor>
  /** Moves existing cursors forward (never back): one write per slot for the whole batch. A cursor that is gone (dropped, evicted) stays gone. */
  saveCursors (cursors: DeviceCursor[]): Promise<void>
  /** Forgets the device's cursor (its session was discarded). */
  dropCursor (user: string, device: string): Promise<void>
}

/**
 * Blocking (messaging/block-service.ts). Kept in the blocker's own keys, where the
 * log store reads it when a blocked sender's message would land (it is withheld).
 */
export interface BlockStore {
  /**
   * `blocker` blocks `user`; returns since when (the first time, if already blocked),
   * or 'limit' when `user` is not blocked yet and `blocker` already blocks `limit` users (0: no limit).
   */
  setBlocked (blocker: string, user: string, since: number, limit?: number): Promise<number | 'limit'>
  /** False when `user` was not blocked. */
  setUnblocked (blocker: string, user: string): Promise<boolean>
  /** Whom `blocker` blocked, most recent first. */
  blocked (blocker: string): Promise<Array<{ user: string, since: number }>>
  isBlocked (blocker: string, user: string): Promise<boolean>
}

/** The three stores of one storage mode, opened together (they share the users' keys). */
export interface HistoryStores {
  log: HotLogStore
  cursors: CursorStore
  blocks: BlockStore
}

/** Whether old events of a user's log may go: retention removes events up to this seq only (the archive answers "what is archived"). */
export interface LogRetentionHook {
  removableUpTo (user: string): Promise<number>
}

export const REMOVE_PAST_RETENTION_LOG: LogRetentionHook = { removableUpTo: async () => Number.MAX_SAFE_INTEGER }

export interface Notice {
  user: string
  /** The conversation it is about, as in the log's index (`g:<groupId>` for a group). */
  peer: string
  /** The event's JSON after `{"seq":N,`. */
  tail: string
  ts: number
}

export interface OpenedCursor {
  seq: number
  /** False when the device already had this cursor. */
  created: boolean
  /** Devices of the user whose sessions were evicted to make room (their cursors are gone). */
  evicted: string[]
}

export interface DeviceCursor {
  user: string
  device: string
  seq: number
}

/** Trimmed log entries: `seq|ts|peer|kind|dir|id|peerSeq`. Ids never contain `|`. */
export interface LogMeta {
  seq: number
  ts: number
  peer: string
  /** message, receipt, recall or edit (a change to an earlier message), group membership event */
  kind: 'm' | 'r' | 'x' | 'e'
  dir: 'in' | 'out' | 'self'
  id: string
  peerSeq: number
}

export function formatMeta (meta: LogMeta): string {
  return `${meta.seq}|${meta.ts}|${meta.peer}|${meta.kind}|${meta.dir}|${meta.id}|${meta.peerSeq}`
}

export function parseMeta (text: string): LogMeta {
  const [seq, ts, peer, kind, dir, id, peerSeq] = text.split('|')
  return { seq: Number(seq), ts: Number(ts), peer: peer!, kind: kind as LogMeta['kind'], dir: dir as LogMeta['dir'], id: id!, peerSeq: Number(peerSeq) }
}

/** Per sender and message id (idempotency, recall): `senderSeq|recipientSeq|to|ts|flag`, flag `r` once recalled. */
export interface IdRecord {
  senderSeq: number
  recipientSeq: number
  to: string
  ts: number
  recalled: boolean
}

export function formatIdRecord (record: IdRecord): string {
  return `${record.senderSeq}|${record.recipientSeq}|${record.to}|${record.ts}|${record.recalled ? 'r' : ''}`
}

export function parseIdRecord (text: string): IdRecord {
  const [senderSeq, recipientSeq, to, ts, flag] = text.split('|')
  return { senderSeq: Number(senderSeq), recipientSeq: Number(recipientSeq), to: to!, ts: Number(ts), recalled: flag === 'r' }
}

/**
 * The caller's seq of a message in the conversation with `peer`, given the
 * id records stored under that id by the peer (`theirs`) and by the caller
 * (`mine`): a message the peer sent to the caller, or one the caller sent.
 */
export function seqFromIdRecords (user: string, peer: string, theirs: string | undefined, mine: string | undefined): number | undefined {
  const received = theirs === undefined ? undefined : parseIdRecord(theirs)
  if (received?.to === user) return received.recipientSeq
  const sent = mine === undefined ? undefined : parseIdRecord(mine)
  if (sent?.to === peer) return sent.senderSeq
  return undefined
}
