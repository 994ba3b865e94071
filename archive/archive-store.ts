// The long-term tier of history (issue #21): every event of every user log and
// group log, kept after the hot log (Redis, or the embedded LevelDB log) has
// let it go, and the search index over the messages' text.
//
// The archiver (archive/archiver.ts) copies events here off the PUBACK path,
// in batches, idempotently: a row that is already there is left as it is, so
// a retried or overlapping batch is harmless. Readers ask the hot log first
// and this store for what the hot log no longer holds (archive/tiered-history.ts):
// same seqs, same bytes.
//
// Two implementations behind this one interface, one conformance suite
// (test/archive-store.conformance.test.ts): PostgreSQL (archive/pg-archive.ts,
// `DATABASE_URL`) and LevelDB (archive/level-archive.ts, embedded mode).
import type { LogEntry } from '../history/history-store.ts'

/** Words made from a message's text by search/tokenize.ts; a query matches a message holding all of its tokens. */
export interface SearchDoc {
  /** The searchable text (snippets are cut from it). */
  text: string
  /** Distinct, normalised tokens. */
  tokens: string[]
}

/** The kinds of a user-log entry: message, receipt, recall, group event (membership and the like), notice. */
export type ArchivedKind = 'm' | 'r' | 'x' | 'e' | 'n'

/** One event of a user's log. */
export interface ArchivedUserEvent {
  owner: string
  seq: number
  ts: number
  /** The conversation it belongs to: the peer's id, or `g:<group>`. */
  conversation: string
  kind: ArchivedKind
  /** The message id, for messages (and a group message's reference). */
  id?: string
  /**
   * The exact JSON delivered (`{"seq":N,…}`), or, for an entry that stands for
   * a group event, that event's place in the group log (read back as
   * `{"seq":N,` + the group event's tail, as the hot log resolves it).
   */
  event: string | { group: string, gseq: number }
  /** Absent for what is not searchable: anything but a message, an encrypted body, a group reference (its group row holds the doc). */
  search?: SearchDoc
}

/** One event of a group's log. */
export interface ArchivedGroupEvent {
  group: string
  gseq: number
  ts: number
  kind: 'm' | 'e'
  from: string
  id?: string
  /** The group event as the group store keeps it: its JSON without the leading `{` (history/group-events.ts). */
  tail: string
  search?: SearchDoc
}

export interface SearchQuery {
  /** All must be in a message for it to match (from search/tokenize.ts `queryTokens`). At least one. */
  tokens: string[]
  /** Only this conversation (a peer's id, or `g:<group>`). */
  conversation?: string
  /** Only hits with an owner seq below this (the cursor of newest-first paging). */
  beforeSeq?: number
  limit: number
}

export interface SearchHit {
  /** The searcher's seq of the message (in their own log). */
  seq: number
  ts: number
  conversation: string
  /** For a group message. */
  group?: string
  gseq?: number
  /** The message as it is now, with the searcher's seq (`{"seq":N,…}`). */
  event: string
  /** The doc's text, for the snippet. */
  text: string
}

export interface ArchiveStore {
  /** Stores the rows not stored yet (same owner and seq: left as it is). Durable when it resolves. */
  putUserEvents (rows: ArchivedUserEvent[]): Promise<void>
  /** Stores the rows not stored yet (same group and gseq: left as it is). Durable when it resolves. */
  putGroupEvents (rows: ArchivedGroupEvent[]): Promise<void>

  /**
   * A recall or an edit reaches the archive: the message at (owner, seq) becomes `event`
   * (its tombstone, or the edited message) and its search doc becomes `search` at once
   * (none: it leaves the index). Nothing if absent.
   */
  replaceUserEvent (owner: string, seq: number, event: string, search?: SearchDoc): Promise<void>
  /** The same for a group message (its tail becomes the tombstone's or the edited message's tail). */
  replaceGroupEvent (group: string, gseq: number, tail: string, search?: SearchDoc): Promise<void>

  /** The user's archived entries with seq > `after`, oldest first; group references resolved (`event` undefined if that group event is gone). */
  readLog (owner: string, after: number, limit: number): Promise<LogEntry[]>
  /** Messages (kind `m`) of one conversation, oldest first: after `after`, or else the newest before `before`; group references resolved. */
  conversation (owner: string, conversation: string, range: { before?: number, after?: number, limit: number }): Promise<{ events: string[], hasMore: boolean }>
  /** Group events as tails (JSON without `{`), oldest first: gseq in [fromGseq, …), after `after`, or else the newest before `before`. */
  groupEvents (group: string, range: { fromGseq: number, before?: number, after?: number, limit: number }): Promise<{ tails: string[], hasMore: boolean }>
  /** The highest seq archived for the owner (0: none). */
  archivedSeq (owner: string): Promise<number>
  /** The highest gseq archived for the group (0: none). */
  archivedGseq (group: string): Promise<number>

  /**
   * The owner's messages matching every token, newest first: their 1:1 messages
   * (both directions), and group messages their own log holds a reference to (so
   * only while they were a member). Never a recalled message.
   */
  search (owner: string, query: SearchQuery): Promise<{ hits: SearchHit[], hasMore: boolean }>

  /** Removes everything of a user's log (account deletion). Group logs are not theirs alone and stay. */
  deleteUser (owner: string): Promise<void>
  /** Removes a group's log. */
  deleteGroup (group: string): Promise<void>
  /** Retention: removes up to `limit` rows older than `beforeTs` (user and group rows); returns how many went. */
  trim (beforeTs: number, limit: number): Promise<number>

  close (): Promise<void>
}
