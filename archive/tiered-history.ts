// Two tiers, one history: the hot log (Redis or the embedded LevelDB log)
// keeps a short window (HOT_RETENTION_SECONDS); the archive keeps the rest
// (HISTORY_RETENTION_SECONDS). These wrappers read across both, so sync, the
// reconnect drain, conversation pages and group history see the same seqs
// and the same bytes whichever tier holds an event.
//
// The boundary is the hot log's floor, the lowest seq it still holds: below
// it only the archive has events (retention removes only what is archived),
// from it the hot log answers. The hot page is read first and the floor
// after, so an event trimmed in between comes from the archive, never twice
// and never missing. What is past HISTORY_RETENTION_SECONDS is not returned
// from the archive even before its trim removes it, as the hot log does.
import type { ConversationSummary, LogEntry, LogStore, Page } from '../history/history-store.ts'
import type { GroupPage, GroupStore } from '../history/group-store.ts'
import { visibleWindow } from '../history/group-store.ts'
import { parseGroupEvent } from '../history/group-events.ts'
import type { ArchiveStore } from './archive-store.ts'

const SEQ_PREFIX = /^\{"seq":(\d+),/

/**
 * A read that needs the archive while it is not open (PostgreSQL unreachable at start): a
 * storage outage (storage/storage-errors.ts), so REST answers 503 and a device's drain retries,
 * never a page that passes over events the archive holds.
 */
export class ArchiveNotOpenError extends Error {
  override readonly name = 'ArchiveNotOpenError'
  constructor () {
    super('the archive is not reachable yet')
  }
}

type ArchiveRef = () => ArchiveStore | undefined

function opened (ref: ArchiveRef): ArchiveStore {
  const archive = ref()
  if (archive === undefined) throw new ArchiveNotOpenError()
  return archive
}

function seqOf (event: string): number {
  return Number(SEQ_PREFIX.exec(event)?.[1] ?? 0)
}

function tsOf (event: string): number {
  try {
    const ts = (JSON.parse(event) as { ts?: unknown }).ts
    return typeof ts === 'number' ? ts : 0
  } catch {
    return 0
  }
}

/** The log store with reads that reach into the archive below the hot log's floor; writes go to the hot log. */
export function tieredLog (hot: LogStore, archiveRef: ArchiveRef, retentionMs: number): LogStore {
  const expired = (ts: number): boolean => retentionMs > 0 && ts < Date.now() - retentionMs

  async function events (user: string, since: number, limit: number): Promise<Page> {
    const page = await hot.events(user, since, limit)
    if (page.events.length > 0 && seqOf(page.events[0]!) === since + 1) return page
    const floor = await hot.floor(user)
    if (since + 1 >= floor) return page
    const archived = (await opened(archiveRef).readLog(user, since, limit)).filter((entry) => entry.seq < floor)
    const older = archived.filter((entry) => entry.event !== undefined && !expired(entry.ts)).map((entry) => entry.event!)
    if (archived.length >= limit) return { events: older, hasMore: true, scannedTo: archived.at(-1)!.seq }
    // The archive covered everything below the floor: the rest of the page is the hot log's.
    const newer = page.events.filter((event) => seqOf(event) >= floor)
    const room = limit - archived.length
    const taken = newer.slice(0, room)
    const scannedTo = taken.length < newer.length ? seqOf(taken.at(-1)!) : Math.max(page.scannedTo ?? since, floor - 1)
    return { events: [...older, ...taken], hasMore: page.hasMore || newer.length > room, scannedTo }
  }

  async function readLog (user: string, after: number, limit: number): Promise<LogEntry[]> {
    const entries = await hot.readLog(user, after, limit)
    if (entries.length > 0 && entries[0]!.seq === after + 1) return entries
    const floor = await hot.floor(user)
    if (after + 1 >= floor) return entries
    const archived = (await opened(archiveRef).readLog(user, after, limit)).filter((entry) => entry.seq < floor)
      .map((entry) => expired(entry.ts) ? { ...entry, event: undefined } : entry)
    return [...archived, ...entries.filter((entry) => entry.seq >= floor)].slice(0, limit)
  }

  async function conversation (user: string, peer: string, range: { before?: number, after?: number, limit: number }): Promise<Page> {
    const page = await hot.conversation(user, peer, range)
    const floor = await hot.floor(user)
    const newer = page.events.filter((event) => seqOf(event) >= floor)
    const live = (events: string[]): string[] => events.filter((event) => !expired(tsOf(event)))
    if (range.after !== undefined) {
      if (range.after + 1 >= floor) return page
      const older = (await opened(archiveRef).conversation(user, peer, { after: range.after, limit: range.limit })).events.filter((event) => seqOf(event) < floor)
      if (older.length >= range.limit) return { events: live(older), hasMore: true }
      const room = range.limit - older.length
      return { events: [...live(older), ...newer.slice(0, room)], hasMore: page.hasMore || newer.length > room }
    }
    // Newest first: the hot log's page, then older ones from the archive below the floor.
    const before = Math.min(range.before ?? Number.MAX_SAFE_INTEGER, floor, ...newer.map(seqOf))
    const room = range.limit - newer.length
    if (room <= 0) {
      if (page.hasMore) return { events: newer, hasMore: true }
      const probe = await opened(archiveRef).conversation(user, peer, { before, limit: 1 })
      return { events: newer, hasMore: live(probe.events).length > 0 }
    }
    const older = await opened(archiveRef).conversation(user, peer, { before, limit: room })
    const kept = live(older.events)
    return { events: [...kept, ...newer], hasMore: older.hasMore && kept.length === older.events.length }
  }

  /** A conversation whose last message left the hot log is still listed; its last message comes from the archive (gone past retention: not listed). */
  async function conversations (user: string, range: { before?: number, limit: number }): Promise<{ conversations: ConversationSummary[], hasMore: boolean }> {
    const listed = await hot.conversations(user, range)
    const filled = await Promise.all(listed.conversations.map(async (summary) => {
      if (summary.lastMessage !== undefined) return summary
      const [entry] = await opened(archiveRef).readLog(user, summary.lastSeq - 1, 1)
      if (entry?.seq !== summary.lastSeq || entry.event === undefined || expired(entry.ts)) return undefined
      return { ...summary, lastMessage: entry.event }
    }))
    return { conversations: filled.filter((summary): summary is ConversationSummary => summary !== undefined), hasMore: listed.hasMore }
  }

  return {
    appendMessage: (message, sink) => hot.appendMessage(message, sink),
    receipt: (kind, reader, peer, upTo, ts, sink) => hot.receipt(kind, reader, peer, upTo, ts, sink),
    recall: (sender, id, now, windowMs, sink) => hot.recall(sender, id, now, windowMs, sink),
    edit: (sender, id, body, now, windowMs, sink) => hot.edit(sender, id, body, now, windowMs, sink),
    appendNotices: (notices) => hot.appendNotices(notices),
    sweepRelay: (sink, options) => hot.sweepRelay(sink, options),
    relayed: () => hot.relayed(),
    trimLog: (user, now) => hot.trimLog(user, now),
    events,
    conversation,
    conversations,
    seqOfMessage: (user, peer, id) => hot.seqOfMessage(user, peer, id),
    unreadTotal: (user) => hot.unreadTotal(user),
    hasConversation: (user, peer) => hot.hasConversation(user, peer),
    head: (user) => hot.head(user),
    floor: (user) => hot.floor(user),
    readLog,
    close: () => hot.close()
  }
}

/** The group store with history pages that reach into the archive below the group log's retention. */
export function tieredGroups (hot: GroupStore, archiveRef: ArchiveRef, retentionMs: number): GroupStore {
  async function groupEvents (id: string, member: string, range: { before?: number, after?: number, limit: number }): Promise<GroupPage | 'not_a_member'> {
    const bounds = await hot.historyBounds(id, member)
    if (bounds === 'not_a_member') return bounds
    if (bounds.joined + 1 >= bounds.low) return await hot.groupEvents(id, member, range)
    const window = visibleWindow(bounds.joined, bounds.head, range)
    if (window.to < window.from) return { events: [], hasMore: window.hasMore }
    const archivedTo = Math.min(window.to, bounds.low - 1)
    const events: string[] = []
    if (window.from <= archivedTo) {
      const { tails } = await opened(archiveRef).groupEvents(id, { fromGseq: window.from, after: window.from - 1, limit: archivedTo - window.from + 1 })
      for (const tail of tails) {
        const event = `{${tail}`
        if (!(retentionMs > 0 && tsOf(event) < Date.now() - retentionMs)) events.push(event)
      }
    }
    if (window.to >= bounds.low) {
      const from = Math.max(window.from, bounds.low)
      const page = await hot.groupEvents(id, member, { after: from - 1, limit: window.to - from + 1 })
      if (page !== 'not_a_member') events.push(...page.events)
    }
    return { events, hasMore: window.hasMore }
  }

  /** One group event: the hot log's, or below what it keeps, the archive's (an admin may recall an old message). */
  async function groupEvent (group: string, gseq: number): Promise<string | undefined> {
    const tail = await hot.groupEvent(group, gseq)
    if (tail !== undefined) return tail
    const { tails } = await opened(archiveRef).groupEvents(group, { fromGseq: gseq, after: gseq - 1, limit: 1 })
    const found = tails[0]
    if (found === undefined || parseGroupEvent(found)?.gseq !== gseq) return undefined
    return retentionMs > 0 && tsOf(`{${found}`) < Date.now() - retentionMs ? undefined : found
  }

  return {
    getGroup: (id) => hot.getGroup(id),
    createGroup: (group, event, sink, maxGroupsPerUser) => hot.createGroup(group, event, sink, maxGroupsPerUser),
    changeGroup: (id, expectedVersion, change, event, sink, maxGroupsPerUser) => hot.changeGroup(id, expectedVersion, change, event, sink, maxGroupsPerUser),
    appendGroupMessage: (message, sink) => hot.appendGroupMessage(message, sink),
    sweepFanOut: (sink, options) => hot.sweepFanOut(sink, options),
    trimGroup: (group, now) => hot.trimGroup(group, now),
    groupEvents,
    historyBounds: (id, member) => hot.historyBounds(id, member),
    groupsOf: (user) => hot.groupsOf(user),
    setMute: (group, user, until) => hot.setMute(group, user, until),
    mutedUntil: (group, user) => hot.mutedUntil(group, user),
    groupEvent,
    markGroupRead: (group, user, gseq, ts) => hot.markGroupRead(group, user, gseq, ts),
    markGroupDelivered: (marks) => hot.markGroupDelivered(marks),
    groupMarks: (group) => hot.groupMarks(group)
  }
}
