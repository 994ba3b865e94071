// Groups: one shared log per group, every event stored once with a gapless
// group seq (`gseq`). Each member still sees every group event in their own
// per-user log, with their own `seq`, as a small entry that refers to the
// group log (`@<group>|<gseq>`). Readers of a user's log resolve those
// entries to the full envelope, so live delivery, the reconnect drain,
// /v1/sync and unread counts work for groups exactly as for 1:1
// conversations (the group is the conversation `g:<groupId>` in the member's log).
//
// Two steps, two owners (issue #20): a write appends to the group log only
// (durable there: a message is PUBACKed then); the fan-out then writes the
// members' entries, idempotently per (member, group, gseq) and in gseq order,
// and reports each batch to the LogSink. On Redis the group log is its own
// outbox: what is not yet fanned out is swept by every process
// (history/redis-group-fanout.ts). LevelDB does both in one batch.
//
// The store checks nothing but membership and a version: who may do what is
// decided by messaging/group-service.ts, which reads a group, decides, and
// applies the change only if the group's version has not moved meanwhile.
import type { GroupEvent, GroupMessageEvent } from './group-events.ts'
import type { LogSink } from './log-sink.ts'

export type { Role } from './group-events.ts'
import type { Role } from './group-events.ts'

export interface Group {
  id: string
  name: string
  meta: Record<string, unknown> | undefined
  creator: string
  createdAt: number
  /** Bumped by every change of name, metadata or membership (optimistic concurrency). */
  version: number
  members: Map<string, Role>
}

export type { Recipients } from './log-sink.ts'

export interface GroupAppend {
  gseq: number
}

export interface GroupChange {
  name?: string
  meta?: Record<string, unknown> | null
  /** Members to add or whose role changes. */
  upsert?: Array<{ user: string, role: Role }>
  remove?: string[]
  /** Replace one stored message (a recall leaves a tombstone, an edit the new body, seen by every member at once). */
  replace?: { gseq: number, event: GroupMessageEvent }
  /** The event is an edit of the message at this gseq: its gseq is listed with the message (at most MAX_EDITS_PER_MESSAGE, else 'too_many_edits'). */
  editOf?: number
  /** A recall of the message at this gseq: the edit events listed with it lose their bodies. */
  scrubEditsOf?: number
}

export type GroupMessageResult =
  /** `senderEvent`: the sender's copy (`{"seq":N,…}`), once their own log has it. */
  | { status: 'stored', gseq: number, senderEvent: string | undefined }
  | { status: 'duplicate', senderEvent: string | undefined }
  | { status: 'not_a_member' }

/** Whether old group events may go: retention removes events up to this gseq only (the archive answers "what is archived"). */
export interface GroupRetentionHook {
  removableUpTo (group: string): Promise<number>
}

/** Default: anything past HISTORY_RETENTION_SECONDS may go. */
export const REMOVE_PAST_RETENTION: GroupRetentionHook = { removableUpTo: async () => Number.MAX_SAFE_INTEGER }

export interface GroupPage {
  /** Group events as `{...,"gseq":N,...}` (no member seq), oldest first. */
  events: string[]
  hasMore: boolean
}

/**
 * Thrown by createGroup and changeGroup, which then change nothing: these
 * users would join a group while already members of `maxGroupsPerUser`.
 */
export class GroupsFull extends Error {
  constructor (readonly users: string[]) {
    super(`already in the most groups allowed: ${users.join(', ')}`)
  }
}

export interface GroupStore {
  getGroup (id: string): Promise<Group | undefined>
  /**
   * Creates the group with its members (`group_created`, gseq 1) and fans it
   * out to every member's log before it resolves (membership is read-your-writes).
   * Throws GroupsFull if a member is already in `maxGroupsPerUser` groups (0: no limit).
   */
  createGroup (group: Omit<Group, 'version' | 'members'> & { members: Array<{ user: string, role: Role }> }, event: GroupEvent, sink: LogSink, maxGroupsPerUser?: number): Promise<GroupAppend>
  /**
   * Applies `change` and appends `event` to the group log; fans it out to
   * every member after the change and to the members it removes, before it
   * resolves. Returns 'stale' if the group's version is no longer `expectedVersion`.
   * Throws GroupsFull if a user it adds is already in `maxGroupsPerUser` groups (0: no limit).
   */
  changeGroup (id: string, expectedVersion: number, change: GroupChange, event: GroupEvent, sink: LogSink, maxGroupsPerUser?: number): Promise<GroupAppend | 'stale' | 'too_many_edits'>
  /**
   * A member's message: stored once (idempotent per (sender, id)), durable
   * once this resolves; the sender's own copy is written before it resolves,
   * the other members' copies follow (reported to `sink`).
   */
  appendGroupMessage (message: GroupMessageEvent, sink: LogSink): Promise<GroupMessageResult>
  /**
   * Completes fan-outs left pending (a process died between the append and
   * its fan-out) for longer than `graceMs`. On a cluster one call looks at
   * 1/16 of the slots in turn (`everySlot`: all). Returns the groups completed.
   */
  sweepFanOut (sink: LogSink, options?: { graceMs?: number, everySlot?: boolean }): Promise<number>
  /** Retention of one group log, apart from the writes: removes old events the hook lets go (bounded work). Returns how many went. */
  trimGroup (group: string, now?: number): Promise<number>
  /** The group's events visible to `member` (those after they joined): after `after`, or the newest before `before`. */
  groupEvents (id: string, member: string, range: { before?: number, after?: number, limit: number }): Promise<GroupPage | 'not_a_member'>
  /**
   * What `groupEvents` pages over for `member`: events with gseq > `joined` up to `head`, of
   * which retention removed those below `low` (the archive may have them).
   */
  historyBounds (id: string, member: string): Promise<{ joined: number, low: number, head: number } | 'not_a_member'>
  /** The groups `user` is a member of. */
  groupsOf (user: string): Promise<string[]>
  /** Mutes the group's alerts for `user` until a time (ms; 0: until unmuted), or unmutes (undefined). */
  setMute (group: string, user: string, until: number | undefined): Promise<void>
  mutedUntil (group: string, user: string): Promise<number | undefined>
  /** One stored group event (JSON without its `{`), whoever asks: the caller checks membership. */
  groupEvent (group: string, gseq: number): Promise<string | undefined>
  /** A member's read mark in gseq (forward only; read implies delivered), with a `receipt` event for their own log. */
  markGroupRead (group: string, user: string, gseq: number, ts: number): Promise<GroupReadResult | 'not_a_member'>
  /** Members' devices acknowledged group events up to these gseqs (forward only). */
  markGroupDelivered (marks: Array<{ group: string, user: string, gseq: number }>): Promise<void>
  /** Every user's read and delivered marks in the group, in gseq. */
  groupMarks (group: string): Promise<{ read: Map<string, number>, delivered: Map<string, number> }>
}

export interface GroupReadResult {
  changed: boolean
  /** The mark before this call. */
  previous: number
  upTo: number
  unread: number
  /** For the reader's own log (their other devices), when the mark moved. */
  readerEvent: string | undefined
}

/** The member-log entry that stands for a group event. */
export function groupRef (group: string, gseq: number): string {
  return `@${group}|${gseq}`
}

export function parseGroupRef (value: string): { group: string, gseq: number } | undefined {
  if (!value.startsWith('@')) return undefined
  const bar = value.indexOf('|')
  return { group: value.slice(1, bar), gseq: Number(value.slice(bar + 1)) }
}

/** The conversation name of a group in a member's log (never a valid user id: it has a colon). */
export function groupPeer (group: string): string {
  return `g:${group}`
}

/** Group logs are trimmed by history retention too: a trim call after every 16th message, at most 50 events a call. */
export const GROUP_TRIM_EVERY = 16
export const GROUP_TRIM_MAX = 50

/** The envelope's `ts` of a stored group event (decoded: events stored before ts came first may carry a `ts` in their metadata). */
export function groupEventTs (tail: string): number | undefined {
  try {
    const ts = (JSON.parse(`{${tail}`) as { ts?: unknown }).ts
    return typeof ts === 'number' ? ts : undefined
  } catch {
    return undefined
  }
}

/** The gseqs a page covers: group seqs are contiguous, so a page is arithmetic. */
export function visibleWindow (joined: number, head: number, range: { before?: number, after?: number, limit: number }): { from: number, to: number, hasMore: boolean } {
  if (range.after !== undefined) {
    const from = Math.max(range.after, joined) + 1
    const to = Math.min(head, from + range.limit - 1)
    return { from, to, hasMore: to < head }
  }
  const to = Math.min(head, (range.before ?? Infinity) - 1)
  const from = Math.max(joined + 1, to - range.limit + 1)
  return { from, to, hasMore: from > joined + 1 }
}
