// What the archiver (archive/archiver.ts) reads from the hot tier: which logs
// have events it has not archived yet, those events as stored, and a mark per
// log of how far the archive holds it. Every write of a log event marks its
// owner pending before (Redis: a command sent ahead of the write's script on
// the same connection) or with (LevelDB: the same batch) the write, so a
// process dying between the two leaves at worst a pending owner with nothing
// new, never an event nobody will archive. The archive mark is what the
// retention hooks answer with: the hot tier never drops what is not archived.
//
// Owners are named `u:<user>` (a user's log) and `g:<group>` (a group's log).
import type { LogMeta } from './history-store.ts'

/** One entry of a user's log as stored: its metadata, and the event JSON or a group reference (`@<group>|<gseq>`). */
export interface RawLogEntry {
  meta: LogMeta
  value: string
}

/** One event of a group's log: its JSON without the leading `{`. */
export interface RawGroupEntry {
  gseq: number
  tail: string
}

export interface PendingOwner {
  owner: string
  /** Since when (ms) its oldest event not archived has waited, as far as the index knows. */
  since: number
}

export interface ArchiveSource {
  /** How many partitions the pending owners fall into (one archiver works on a partition at a time). */
  readonly partitions: number
  /** Takes or renews a partition's lease for `holder` (false while another holds it); absent: one process, no lease. */
  claim?: (partition: number, holder: string, ttlMs: number) => Promise<boolean>
  /** Up to `limit` owners of partition `partition` with events not archived, longest waiting first. */
  pending (partition: number, limit: number): Promise<PendingOwner[]>
  /** A user's stored entries with seq > `after`, oldest first. */
  readUser (user: string, after: number, limit: number): Promise<RawLogEntry[]>
  /** A group's stored events with gseq > `after`, oldest first. */
  readGroup (group: string, after: number, limit: number): Promise<RawGroupEntry[]>
  /** The current bytes of one user-log event (a recalled message is its tombstone by now), if the hot tier still has it. */
  userEvent (user: string, seq: number): Promise<string | undefined>
  /** The current tail of one group event, if the hot tier still has it. */
  groupEvent (group: string, gseq: number): Promise<string | undefined>
  /**
   * The archive holds the owner's log up to `upTo`: moves the mark forward, and takes the owner
   * out of the pending index if its log ends there and no write was marked since `position` gave
   * `version` (else it stays, waiting since `nextSince`, when the first event past `upTo` was written).
   */
  archived (owner: string, upTo: number, version: string, nextSince: number | undefined): Promise<void>
  /** How far the archive holds the owner's log (0: nothing), and a version that every mark of a write changes. */
  position (owner: string): Promise<{ upTo: number, version: string }>
  /** How far the archive holds the owner's log (0: nothing): what retention may remove. */
  archivedUpTo (owner: string): Promise<number>
  /** Owners pending and the oldest wait, across partitions (the lag metric). */
  oldestPending (): Promise<number | undefined>
}

export const userOwner = (user: string): string => `u:${user}`
export const groupOwner = (group: string): string => `g:${group}`
