// History in embedded mode: one LevelDB (DATA_DIR/history), one process.
// Every write is a synchronous transaction over an in-memory overlay of
// writes not yet on disk (reads use getSync), so writes are serialised by
// the event loop itself. Transactions of the same tick are group-committed:
// one LevelDB batch, and each caller resolves once its batch is written
// (after which it survives kill -9; with `sync`, a power cut too). The key
// layout mirrors redis-scripts.ts with seqs zero-padded so that key order is
// seq order:
//   seq!u             counter            ev!u!<seq>         meta \n event JSON
//   c!u!peer!<seq>    1:1 conversation   in!u!peer!<seq>    incoming, unrecalled
//   convs!u!peer      last message seq   ids!u!id           senderSeq|recipientSeq|to|ts|flag
//   mark!u!<read|dlv|readby|dlvby>!peer  seq                cur!u!device       device cursor
//   blk!u!user        since (ms): u blocked user           curs!u             u's devices with a cursor, `,`-separated
//   blkn!u            how many users u blocks (written by every block change; absent
//                     for data from before it: counted once from the blk! keys)
// (`curs!` lets a transaction, which cannot scan, see all of a user's sessions to bound them.)
import { ClassicLevel } from 'classic-level'
import type { LogRetentionHook, Notice } from './history-store.ts'
import type { LogSink } from './log-sink.ts'
import type { AppendResult, BlockStore, ConversationSummary, CursorStore, DeviceCursor, HotLogStore, LogEntry, LogMeta, NewMessage, OpenedCursor, Page, ReceiptKind, ReceiptResult, RecallResult, EditResult } from './history-store.ts'
import { formatIdRecord, formatMeta, parseIdRecord, parseMeta, REMOVE_PAST_RETENTION_LOG, seqFromIdRecords } from './history-store.ts'
import { editedMessage, editEvent, editWithoutBody, MAX_EDITS_PER_MESSAGE, messageTail, receiptEvent, recallEvent, sameBody, tombstone, withSeq } from './events.ts'
import { countBeforeCounter, GroupCommit, type Transaction } from './level-group-commit.ts'
import { parseGroupRef } from './group-store.ts'
import { groupEventKey, LevelGroups } from './level-groups.ts'
import { BoundedMap } from './bounded-map.ts'
import { LevelArchiveSource, markArchivePending } from './level-archive-source.ts'

type Mark = 'read' | 'dlv' | 'readby' | 'dlvby'

const pad = (seq: number): string => String(seq).padStart(16, '0')
const evKey = (user: string, seq: number): string => `ev!${user}!${pad(seq)}`
const markKey = (user: string, mark: Mark, peer: string): string => `mark!${user}!${mark}!${peer}`
const cursorKey = (user: string, device: string): string => `cur!${user}!${device}`
/** Device ids never contain `,`. */
const sessionsKey = (user: string): string => `curs!${user}`
/** Set once every user's `curs!` index has been built from their `cur!` keys. */
const SESSIONS_INDEXED = 'meta!sessions-indexed'
/** Range options for every key under `prefix` strictly after / before a seq. */
const after = (prefix: string, seq: number, before?: number) => ({ gt: prefix + pad(seq), lt: before === undefined ? prefix + '~' : prefix + pad(before) })
const eventOf = (stored: string): string => stored.slice(stored.indexOf('\n') + 1)
/** The seqs of a message's edit events, in the sender's log (`s`) and the recipient's (`r`): a recall cuts their bodies. */
const editsKey = (sender: string, id: string): string => `ids!${sender}!${id}|e`
interface EditSeqs { s: number[], r: number[] }
const metaOf = (stored: string): LogMeta => parseMeta(stored.slice(0, stored.indexOf('\n')))

/** A user's keys under these prefixes (`<prefix><user>!…`) are their log's (the group store's `ug!` memberships are not). */
const USER_PREFIXES = ['ev', 'c', 'in', 'convs', 'ids', 'mark', 'cur', 'blk']
/** Listings of a user's keys a deletion tries before it gives up (each retry means writes kept moving the log on). */
const DELETE_ATTEMPTS = 20

/** Appends trim their users' logs in the background, at most this often per user. */
const TRIM_EVERY_MS = 1_000

function nextSeq (tx: Transaction, user: string): number {
  const seq = Number(tx.get(`seq!${user}`) ?? 0) + 1
  tx.put(`seq!${user}`, String(seq))
  markArchivePending(tx, `u:${user}`)
  return seq
}

function sessionsOf (tx: Transaction, user: string): string[] {
  const list = tx.get(sessionsKey(user))
  return list === undefined || list === '' ? [] : list.split(',')
}

function setSessions (tx: Transaction, user: string, devices: string[]): void {
  if (devices.length === 0) tx.del(sessionsKey(user))
  else tx.put(sessionsKey(user), devices.join(','))
}

/** Persistent sessions kept per user, and who is connected right now (never evicted). */
export interface LevelSessionBound {
  /** MAX_SESSIONS_PER_USER (0: no bound). */
  maxPerUser: number
  /** Synchronous, so that the check and the eviction are one transaction (embedded mode has one process). */
  isConnected: (user: string, clientId: string) => boolean
}

function mark (tx: Transaction, user: string, name: Mark, peer: string): number {
  return Number(tx.get(markKey(user, name, peer)) ?? 0)
}

function putEvent (tx: Transaction, user: string, meta: LogMeta, event: string): void {
  tx.put(evKey(user, meta.seq), `${formatMeta(meta)}\n${event}`)
}

export class LevelHistory implements HotLogStore, CursorStore, BlockStore {
  readonly #db: ClassicLevel<string, string>
  readonly #keepMs: number
  readonly #commit: GroupCommit
  /** When each user's log was last trimmed; a user evicted from it is only trimmed a little early. */
  readonly #lastTrim = new BoundedMap<string, number>(10_000)
  readonly #sessions: LevelSessionBound
  readonly #retention: LogRetentionHook

  readonly #keepConversations: boolean

  private constructor (db: ClassicLevel<string, string>, keepMs: number, sessions: LevelSessionBound, sync: boolean, retention: LogRetentionHook, keepConversations: boolean) {
    this.#keepConversations = keepConversations
    this.#db = db
    this.#keepMs = keepMs
    this.#commit = new GroupCommit(db, { sync })
    this.#sessions = sessions
    this.#retention = retention
  }

  /** The group store on the same database and group commit (a group event and its member entries land in one batch). */
  groups (): LevelGroups {
    return new LevelGroups(this.#db, this.#commit, this.#keepMs)
  }

  /** What the archiver reads (archive/archiver.ts): pending logs, their entries, the archive marks. */
  archiveSource (): LevelArchiveSource {
    return new LevelArchiveSource(this.#db, this.#commit)
  }

  /** Stored log values (`meta \n event`) as delivered events: group references become the full envelope. */
  async #resolve (stored: string[]): Promise<string[]> {
    const refs = stored.map((value) => parseGroupRef(eventOf(value)))
    if (refs.every((ref) => ref === undefined)) return stored.map(eventOf)
    const wanted = refs.flatMap((ref) => ref === undefined ? [] : [groupEventKey(ref.group, ref.gseq)])
    const tails = await this.#db.getMany(wanted)
    let next = 0
    return stored.flatMap((value, i) => {
      if (refs[i] === undefined) return [eventOf(value)]
      const tail = tails[next++]
      return tail === undefined ? [] : [`{"seq":${metaOf(value).seq},${tail}`]
    })
  }

  /** Without `sessions`, cursors are not bounded. `sync`: fsync every batch before its writers resolve (DURABILITY=disk). */
  static async open (path: string, keepMs: number, sessions: LevelSessionBound = { maxPerUser: 0, isConnected: () => false }, options: { sync?: boolean, retention?: LogRetentionHook, keepConversations?: boolean } = {}): Promise<LevelHistory> {
    // A larger memtable: fewer flushes and level-0 compactions stalling group commits.
    const db = new ClassicLevel<string, string>(path, { valueEncoding: 'utf8', writeBufferSize: 32 * 1024 * 1024 })
    await db.open()
    await indexSessions(db)
    return new LevelHistory(db, keepMs, sessions, options.sync ?? false, options.retention ?? REMOVE_PAST_RETENTION_LOG, options.keepConversations ?? false)
  }

  async #keys (range: Record<string, string>, limit: number, reverse = false): Promise<string[]> {
    return this.#db.keys({ ...range, limit, reverse }).all()
  }

  /** Drops the user's oldest events past retention that the hook lets go (at most 50 per call). */
  async trimLog (user: string, now: number): Promise<number> {
    if (this.#keepMs <= 0) return 0
    const cutoff = now - this.#keepMs
    const [oldest, removable] = await Promise.all([this.#db.values({ gt: `ev!${user}!`, lt: `ev!${user}!~`, limit: 50 }).all(), this.#retention.removableUpTo(user)])
    // In seq order, up to the first one still kept (as in Redis).
    const metas = oldest.map(metaOf)
    const kept = metas.findIndex((meta) => meta.ts >= cutoff || meta.seq > removable)
    const expired = kept < 0 ? metas : metas.slice(0, kept)
    if (expired.length === 0) return 0
    return this.#commit.run((tx) => {
      let removed = 0
      for (const meta of expired) {
        if (tx.get(evKey(user, meta.seq)) === undefined) continue
        removed++
        tx.del(evKey(user, meta.seq))
        if (meta.kind === 'm') {
          // A group's incoming index is keyed by gseq (level-groups.ts). Groups no longer write a
          // conversation index entry, but data from before that may still have one.
          tx.del(`c!${user}!${meta.peer}!${pad(meta.seq)}`)
          tx.del(`in!${user}!${meta.peer}!${pad(meta.peer.startsWith('g:') ? meta.peerSeq : meta.seq)}`)
          const record = meta.dir === 'in' ? undefined : tx.get(`ids!${user}!${meta.id}`)
          if (record !== undefined && parseIdRecord(record).senderSeq === meta.seq) {
            tx.del(`ids!${user}!${meta.id}`)
            tx.del(editsKey(user, meta.id))
          }
        }
        // Trimmed in seq order: once the conversation's last event (of any kind) goes, all of it has.
        const last = tx.get(`convs!${user}!${meta.peer}`)
        if (!this.#keepConversations && last !== undefined && Number(last) <= meta.seq) tx.del(`convs!${user}!${meta.peer}`)
      }
      return removed
    })
  }

  /** Both users' logs are written in one batch: nothing is ever left to relay. */
  async sweepRelay (): Promise<number> {
    return 0
  }

  async relayed (): Promise<void> {}

  /** Retention off the write path: a background trim, rate-limited per user. */
  #trimSoon (user: string, now: number): void {
    if (this.#keepMs <= 0 || now - (this.#lastTrim.get(user) ?? 0) < TRIM_EVERY_MS) return
    this.#lastTrim.set(user, now)
    this.trimLog(user, now).catch(() => {}) // a failed trim is retried by the next one
  }

  async appendMessage (message: NewMessage, sink: LogSink): Promise<AppendResult> {
    const { from, to, id, ts } = message
    const tail = messageTail(message)
    type Stored = { status: 'stored', senderEvent: string, recipientEvent: string | undefined, recipientSeq: number, withheld: boolean, newConversation?: true }
    const result = await this.#commit.run((tx): Exclude<AppendResult, { status: 'stored' }> | Stored => {
      const existing = tx.get(`ids!${from}!${id}`)
      const previous = existing === undefined ? undefined : parseIdRecord(existing)
      // An id record past retention is forgotten, whether or not a trim has removed it yet.
      if (previous !== undefined && !(this.#keepMs > 0 && previous.ts < ts - this.#keepMs)) {
        if (previous.to !== to) return { status: 'conflict' }
        const stored = tx.get(evKey(from, previous.senderSeq))
        return { status: 'duplicate', senderEvent: stored === undefined ? undefined : eventOf(stored) }
      }
      // A recipient who blocked the sender gets nothing: the message is in the sender's log only.
      const withheld = to !== from && tx.get(`blk!${to}!${from}`) !== undefined
      const newConversation = tx.get(`convs!${from}!${to}`) === undefined
      const senderSeq = nextSeq(tx, from)
      const recipientSeq = withheld ? 0 : to === from ? senderSeq : nextSeq(tx, to)
      const store = (user: string, peer: string, seq: number, peerSeq: number, dir: LogMeta['dir']): string => {
        const event = withSeq(seq, tail)
        putEvent(tx, user, { seq, ts, peer, kind: 'm', dir, id, peerSeq }, event)
        tx.put(`c!${user}!${peer}!${pad(seq)}`, '')
        if (dir === 'in') tx.put(`in!${user}!${peer}!${pad(seq)}`, '')
        tx.put(`convs!${user}!${peer}`, String(seq))
        return event
      }
      const senderEvent = store(from, to, senderSeq, recipientSeq, to === from ? 'self' : 'out')
      const recipientEvent = to === from || withheld ? undefined : store(to, from, recipientSeq, senderSeq, 'in')
      tx.put(`ids!${from}!${id}`, formatIdRecord({ senderSeq, recipientSeq, to, ts, recalled: false }))
      return { status: 'stored', senderEvent, recipientEvent, recipientSeq, withheld, ...(newConversation ? { newConversation: true } : {}) }
    })
    if (result.status !== 'stored') return result
    this.#trimSoon(from, ts)
    // In the recipient's log in the same batch: reported as the relay reports it on Redis.
    if (result.recipientEvent !== undefined) {
      sink.appended(to, result.recipientEvent)
      sink.arrived({ from, to, id, seq: result.recipientSeq, ...(result.newConversation === true ? { newConversation: true } : {}) })
      this.#trimSoon(to, ts)
    }
    return { status: 'stored', senderEvent: result.senderEvent, ...(result.newConversation === true ? { newConversation: true } : {}) }
  }

  /** How many users `blocker` blocks, for data from before the `blkn!` counter (undefined once it exists). */
  #blockCount (blocker: string): Promise<number | undefined> {
    return countBeforeCounter(this.#db, this.#commit, `blkn!${blocker}`, `blk!${blocker}!`)
  }

  async setBlocked (blocker: string, user: string, since: number, limit = 0): Promise<number | 'limit'> {
    const counted = await this.#blockCount(blocker)
    return this.#commit.run((tx) => {
      const existing = tx.get(`blk!${blocker}!${user}`)
      if (existing !== undefined) return Number(existing)
      const count = Number(tx.get(`blkn!${blocker}`) ?? counted ?? 0)
      if (limit > 0 && count >= limit) return 'limit' as const
      tx.put(`blk!${blocker}!${user}`, String(since))
      tx.put(`blkn!${blocker}`, String(count + 1))
      return since
    })
  }

  async setUnblocked (blocker: string, user: string): Promise<boolean> {
    const counted = await this.#blockCount(blocker)
    return this.#commit.run((tx) => {
      if (tx.get(`blk!${blocker}!${user}`) === undefined) return false
      tx.del(`blk!${blocker}!${user}`)
      tx.put(`blkn!${blocker}`, String(Math.max(0, Number(tx.get(`blkn!${blocker}`) ?? counted ?? 1) - 1)))
      return true
    })
  }

  async blocked (blocker: string): Promise<Array<{ user: string, since: number }>> {
    const prefix = `blk!${blocker}!`
    const all: Array<{ user: string, since: number }> = []
    for await (const [key, value] of this.#db.iterator({ gt: prefix, lt: prefix + '~' })) all.push({ user: key.slice(prefix.length), since: Number(value) })
    return all.sort((a, b) => b.since - a.since)
  }

  async isBlocked (blocker: string, user: string): Promise<boolean> {
    return await this.#db.get(`blk!${blocker}!${user}`) !== undefined
  }

  async hasConversation (user: string, peer: string): Promise<boolean> {
    return await this.#db.get(`convs!${user}!${peer}`) !== undefined
  }

  async receipt (kind: ReceiptKind, reader: string, peer: string, upTo: number, ts: number, sink: LogSink): Promise<ReceiptResult> {
    const incoming = `in!${reader}!${peer}!`
    // The mark lands on the latest incoming message at or below upTo.
    const [found] = await this.#keys(after(incoming, 0, Math.min(upTo, Number.MAX_SAFE_INTEGER - 1) + 1), 1, true)
    const candidate = found === undefined ? 0 : Number(found.slice(incoming.length))
    const outcome = await this.#commit.run((tx) => {
      const markName: Mark = kind === 'read' ? 'read' : 'dlv'
      const current = mark(tx, reader, markName, peer)
      const stored = candidate === 0 ? undefined : tx.get(evKey(reader, candidate))
      if (candidate <= current || stored === undefined) return { changed: false, upTo: current, peerEvent: undefined, readerEvent: undefined }
      tx.put(markKey(reader, markName, peer), String(candidate))
      // Read implies delivered.
      if (kind === 'read' && candidate > mark(tx, reader, 'dlv', peer)) tx.put(markKey(reader, 'dlv', peer), String(candidate))
      const { id, peerSeq } = metaOf(stored)
      const ps = nextSeq(tx, peer)
      const peerEvent = receiptEvent(ps, kind, reader, reader, peerSeq, id, ts)
      putEvent(tx, peer, { seq: ps, ts, peer: reader, kind: 'r', dir: 'in', id, peerSeq: 0 }, peerEvent)
      if (kind === 'read') tx.put(markKey(peer, 'readby', reader), String(peerSeq))
      if (peerSeq > mark(tx, peer, 'dlvby', reader)) tx.put(markKey(peer, 'dlvby', reader), String(peerSeq))
      let readerEvent: string | undefined
      if (kind === 'read') {
        const rs = nextSeq(tx, reader)
        readerEvent = receiptEvent(rs, 'read', reader, peer, candidate, id, ts)
        putEvent(tx, reader, { seq: rs, ts, peer, kind: 'r', dir: 'out', id, peerSeq: 0 }, readerEvent)
      }
      return { changed: true, upTo: candidate, peerEvent, readerEvent }
    })
    if (outcome.peerEvent !== undefined) sink.appended(peer, outcome.peerEvent)
    // Counting unread is a key scan here: done only for read receipts, whose caller shows it.
    return { changed: outcome.changed, upTo: outcome.upTo, readerEvent: outcome.readerEvent, unread: kind === 'read' ? await this.#unread(reader, peer) : undefined }
  }

  async recall (sender: string, id: string, now: number, windowMs: number, sink: LogSink): Promise<RecallResult> {
    type Recalled = { status: 'recalled', message: string, senderEvent: string | undefined, recipientEvent: string | undefined, to: string }
    const result = await this.#commit.run((tx): Exclude<RecallResult, { status: 'recalled' }> | Recalled => {
      const record = tx.get(`ids!${sender}!${id}`)
      if (record === undefined) return { status: 'not_found' }
      const { senderSeq, recipientSeq, to, ts, recalled } = parseIdRecord(record)
      if (to.startsWith('g:')) return { status: 'not_found' } // a group message: not a 1:1 recall
      if (recalled) {
        const stored = tx.get(evKey(sender, senderSeq))
        if (stored === undefined) return { status: 'not_found' }
        return { status: 'recalled', message: eventOf(stored), senderEvent: undefined, recipientEvent: undefined, to }
      }
      if (now - ts > windowMs) return { status: 'window_expired' }
      const replaceWithTombstone = (user: string, seq: number): string => {
        const stored = tx.get(evKey(user, seq))
        const body = tombstone(seq, id, sender, to, ts, now)
        if (stored !== undefined) tx.put(evKey(user, seq), `${stored.slice(0, stored.indexOf('\n'))}\n${body}`)
        return body
      }
      const addRecallEvent = (user: string, peer: string, messageSeq: number, dir: LogMeta['dir']): string => {
        const seq = nextSeq(tx, user)
        const event = recallEvent(seq, id, sender, to, messageSeq, now)
        putEvent(tx, user, { seq, ts: now, peer, kind: 'x', dir, id, peerSeq: 0 }, event)
        return event
      }
      const message = replaceWithTombstone(sender, senderSeq)
      tx.put(`ids!${sender}!${id}`, formatIdRecord({ senderSeq, recipientSeq, to, ts, recalled: true }))
      // The edit events lose their bodies too.
      const edits = JSON.parse(tx.get(editsKey(sender, id)) ?? '{"s":[],"r":[]}') as EditSeqs
      for (const [user, seqs] of [[sender, edits.s], [to, edits.r]] as const) {
        for (const seq of seqs) {
          const stored = tx.get(evKey(user, seq))
          if (stored !== undefined) tx.put(evKey(user, seq), `${stored.slice(0, stored.indexOf('\n'))}\n${editWithoutBody(eventOf(stored))}`)
        }
      }
      tx.del(editsKey(sender, id))
      const senderEvent = addRecallEvent(sender, to, senderSeq, 'out')
      let recipientEvent: string | undefined
      // recipientSeq 0: the recipient had blocked the sender and never got it.
      if (to !== sender && recipientSeq !== 0) {
        replaceWithTombstone(to, recipientSeq)
        tx.del(`in!${to}!${sender}!${pad(recipientSeq)}`)
        recipientEvent = addRecallEvent(to, sender, recipientSeq, 'in')
      }
      return { status: 'recalled', message, senderEvent, recipientEvent, to }
    })
    if (result.status !== 'recalled') return result
    if (result.recipientEvent !== undefined) sink.appended(result.to, result.recipientEvent)
    return { status: 'recalled', message: result.message, senderEvent: result.senderEvent, to: result.to }
  }

  async edit (sender: string, id: string, body: unknown, now: number, windowMs: number, sink: LogSink): Promise<EditResult> {
    type Edited = { status: 'edited', message: string, senderEvent: string | undefined, recipientEvent: string | undefined, to: string }
    const result = await this.#commit.run((tx): Exclude<EditResult, { status: 'edited' }> | Edited => {
      const record = tx.get(`ids!${sender}!${id}`)
      if (record === undefined) return { status: 'not_found' }
      const { senderSeq, recipientSeq, to, ts, recalled } = parseIdRecord(record)
      if (to.startsWith('g:')) return { status: 'not_found' } // a group message: not a 1:1 edit
      if (recalled) return { status: 'recalled' }
      if (now - ts > windowMs) return { status: 'window_expired' }
      const stored = tx.get(evKey(sender, senderSeq))
      if (stored === undefined) return { status: 'not_found' }
      if (sameBody(eventOf(stored), body)) return { status: 'edited', message: eventOf(stored), senderEvent: undefined, recipientEvent: undefined, to }
      const edits = JSON.parse(tx.get(editsKey(sender, id)) ?? '{"s":[],"r":[]}') as EditSeqs
      if (edits.s.length >= MAX_EDITS_PER_MESSAGE) return { status: 'too_many_edits' }
      const replace = (user: string, seq: number, current: string): string => {
        const edited = editedMessage(eventOf(current), body, now)
        tx.put(evKey(user, seq), `${current.slice(0, current.indexOf('\n'))}\n${edited}`)
        return edited
      }
      const addEditEvent = (user: string, peer: string, messageSeq: number, dir: LogMeta['dir']): string => {
        const seq = nextSeq(tx, user)
        const event = editEvent(seq, id, sender, to, messageSeq, now, body)
        putEvent(tx, user, { seq, ts: now, peer, kind: 'x', dir, id, peerSeq: 0 }, event)
        return event
      }
      const message = replace(sender, senderSeq, stored)
      const senderEvent = addEditEvent(sender, to, senderSeq, 'out')
      edits.s.push(JSON.parse(senderEvent).seq as number)
      let recipientEvent: string | undefined
      // recipientSeq 0: the recipient had blocked the sender and never got it.
      if (to !== sender && recipientSeq !== 0) {
        const theirs = tx.get(evKey(to, recipientSeq))
        if (theirs !== undefined) replace(to, recipientSeq, theirs)
        recipientEvent = addEditEvent(to, sender, recipientSeq, 'in')
        edits.r.push(JSON.parse(recipientEvent).seq as number)
      }
      tx.put(editsKey(sender, id), JSON.stringify(edits))
      return { status: 'edited', message, senderEvent, recipientEvent, to }
    })
    if (result.status !== 'edited') return result
    if (result.recipientEvent !== undefined) sink.appended(result.to, result.recipientEvent)
    return { status: 'edited', message: result.message, senderEvent: result.senderEvent, to: result.to }
  }

  async #eventsAt (user: string, seqs: number[]): Promise<string[]> {
    if (seqs.length === 0) return []
    const values = await this.#db.getMany(seqs.map((seq) => evKey(user, seq)))
    return this.#resolve(values.filter((value): value is string => value !== undefined))
  }

  async events (user: string, since: number, limit: number): Promise<Page> {
    await this.trimLog(user, Date.now())
    const rows = await this.#db.values({ ...after(`ev!${user}!`, since), limit: limit + 1 }).all()
    const page = rows.slice(0, limit)
    return { events: await this.#resolve(page), hasMore: rows.length > limit, scannedTo: page.length === 0 ? since : metaOf(page.at(-1)!).seq }
  }

  async conversation (user: string, peer: string, range: { before?: number, after?: number, limit: number }): Promise<Page> {
    await this.trimLog(user, Date.now())
    const prefix = `c!${user}!${peer}!`
    const keys = await this.#keys(after(prefix, range.after ?? 0, range.before), range.limit + 1, range.after === undefined)
    const hasMore = keys.length > range.limit
    const seqs = keys.slice(0, range.limit).map((key) => Number(key.slice(prefix.length)))
    if (range.after === undefined) seqs.reverse()
    return { events: await this.#eventsAt(user, seqs), hasMore }
  }

  async #unread (user: string, peer: string): Promise<number> {
    const readMark = Number(await this.#db.get(markKey(user, 'read', peer)) ?? 0)
    return (await this.#keys(after(`in!${user}!${peer}!`, readMark), 1_000_000)).length
  }

  async conversations (user: string, range: { before?: number, limit: number }): Promise<{ conversations: ConversationSummary[], hasMore: boolean }> {
    await this.trimLog(user, Date.now())
    const prefix = `convs!${user}!`
    const all: Array<{ peer: string, lastSeq: number }> = []
    for await (const [key, value] of this.#db.iterator({ gt: prefix, lt: prefix + '~' })) {
      const lastSeq = Number(value)
      if (range.before === undefined || lastSeq < range.before) all.push({ peer: key.slice(prefix.length), lastSeq })
    }
    all.sort((a, b) => b.lastSeq - a.lastSeq)
    const page = all.slice(0, range.limit)
    const markOf = async (name: Mark, peer: string): Promise<number> => Number(await this.#db.get(markKey(user, name, peer)) ?? 0)
    const conversations = await Promise.all(page.map(async ({ peer, lastSeq }) => ({
      peer,
      lastSeq,
      lastMessage: (await this.#eventsAt(user, [lastSeq]))[0],
      unread: await this.#unread(user, peer),
      readUpTo: await markOf('read', peer),
      peerReadUpTo: await markOf('readby', peer),
      peerDeliveredUpTo: await markOf('dlvby', peer)
    })))
    return { conversations, hasMore: all.length > range.limit }
  }

  async seqOfMessage (user: string, peer: string, id: string): Promise<number | undefined> {
    const [theirs, mine] = await this.#db.getMany([`ids!${peer}!${id}`, `ids!${user}!${id}`])
    return seqFromIdRecords(user, peer, theirs, mine)
  }

  async unreadTotal (user: string): Promise<number> {
    const prefix = `convs!${user}!`
    const peers = (await this.#keys({ gt: prefix, lt: prefix + '~' }, 100_000)).map((key) => key.slice(prefix.length))
    const counts = await Promise.all(peers.map((peer) => this.#unread(user, peer)))
    return counts.reduce((sum, count) => sum + count, 0)
  }

  async head (user: string): Promise<number> {
    return Number(this.#commit.read(`seq!${user}`) ?? 0)
  }

  async floor (user: string): Promise<number> {
    const [first] = await this.#db.keys({ gt: `ev!${user}!`, lt: `ev!${user}!~`, limit: 1 }).all()
    return first === undefined ? await this.head(user) + 1 : Number(first.slice(`ev!${user}!`.length))
  }

  async readLog (user: string, since: number, limit: number): Promise<LogEntry[]> {
    const rows = await this.#db.values({ ...after(`ev!${user}!`, since), limit }).all()
    const hasRefs = rows.some((stored) => stored.charCodeAt(stored.indexOf('\n') + 1) === 64 /* @ */)
    const events = hasRefs ? await this.#resolveEach(rows) : rows.map(eventOf)
    const entries: LogEntry[] = []
    rows.forEach((stored, i) => {
      const [seq, ts] = stored.slice(0, stored.indexOf('\n')).split('|', 2)
      entries.push({ seq: Number(seq), ts: Number(ts), event: events[i] })
    })
    return entries
  }

  /** Like #resolve, one result per row (undefined where a group event is gone). */
  async #resolveEach (rows: string[]): Promise<Array<string | undefined>> {
    const refs = rows.map((value) => parseGroupRef(eventOf(value)))
    const tails = await this.#db.getMany(refs.flatMap((ref) => ref === undefined ? [] : [groupEventKey(ref.group, ref.gseq)]))
    let next = 0
    return rows.map((value, i) => {
      if (refs[i] === undefined) return eventOf(value)
      const tail = tails[next++]
      return tail === undefined ? undefined : `{"seq":${metaOf(value).seq},${tail}`
    })
  }

  async cursor (user: string, device: string): Promise<number | undefined> {
    const value = this.#commit.read(cursorKey(user, device))
    return value === undefined ? undefined : Number(value)
  }

  openCursor (user: string, device: string): Promise<OpenedCursor> {
    return this.#commit.run((tx) => {
      const current = tx.get(cursorKey(user, device))
      if (current !== undefined) return { seq: Number(current), created: false, evicted: [] }
      const head = Number(tx.get(`seq!${user}`) ?? 0)
      const sessions = sessionsOf(tx, user)
      const evicted = this.#evict(tx, user, sessions)
      tx.put(cursorKey(user, device), String(head))
      setSessions(tx, user, [...sessions.filter((kept) => !evicted.includes(kept)), device])
      return { seq: head, created: true, evicted }
    })
  }

  /** The sessions to drop so that one more fits: furthest behind first (then by device id), never a connected one. */
  #evict (tx: Transaction, user: string, sessions: string[]): string[] {
    const { maxPerUser, isConnected } = this.#sessions
    const excess = maxPerUser > 0 ? sessions.length + 1 - maxPerUser : 0
    if (excess <= 0) return []
    const victims = sessions
      .filter((device) => !isConnected(user, `${user}:${device}`))
      .map((device) => ({ device, seq: Number(tx.get(cursorKey(user, device)) ?? -1) }))
      .sort((a, b) => a.seq - b.seq || (a.device < b.device ? -1 : a.device > b.device ? 1 : 0))
      .slice(0, excess)
      .map(({ device }) => device)
    for (const device of victims) tx.del(cursorKey(user, device))
    return victims
  }

  saveCursors (cursors: DeviceCursor[]): Promise<void> {
    return this.#commit.run((tx) => {
      for (const { user, device, seq } of cursors) {
        const current = tx.get(cursorKey(user, device))
        // A cursor dropped or evicted meanwhile is not brought back by a late save.
        if (current !== undefined && seq > Number(current)) tx.put(cursorKey(user, device), String(seq))
      }
    })
  }

  appendNotices (notices: Notice[]): Promise<Array<{ user: string, event: string }>> {
    return this.#commit.run((tx) => notices.map(({ user, peer, ts, tail }) => {
      const seq = nextSeq(tx, user)
      const event = withSeq(seq, tail)
      putEvent(tx, user, { seq, ts, peer, kind: 'r', dir: 'in', id: '', peerSeq: 0 }, event)
      return { user, event }
    }))
  }

  async deleteUser (user: string): Promise<void> {
    // What moves when a key of the user's appears: the seq (every log write), the
    // sessions index (a new cursor), the block count (a new block).
    const version = (read: (key: string) => string | undefined): string => [`seq!${user}`, sessionsKey(user), `blkn!${user}`].map((key) => read(key) ?? '').join('|')
    for (let attempt = 0; attempt < DELETE_ATTEMPTS; attempt++) {
      const seen = version((key) => this.#commit.read(key))
      // Listed from disk: what is written before the listing is on disk once the commit drained.
      await this.#commit.drain()
      const listed: string[] = []
      for (const prefix of USER_PREFIXES.map((name) => `${name}!${user}!`)) listed.push(...await this.#db.keys({ gt: prefix, lt: prefix + '~' }).all())
      const deleted = await this.#commit.run((tx) => {
        // A write since the version was read may have made keys the listing lacks: list again.
        if (version((key) => tx.get(key)) !== seen) return false
        for (const key of listed) tx.del(key)
        for (const device of sessionsOf(tx, user)) tx.del(cursorKey(user, device))
        for (const key of [`seq!${user}`, sessionsKey(user), `blkn!${user}`, `ap!u:${user}`, `am!u:${user}`]) tx.del(key)
        return true
      })
      if (deleted) {
        this.#lastTrim.delete(user)
        return
      }
    }
    throw new Error(`could not delete ${user}'s log: writes kept moving it on`)
  }

  dropCursor (user: string, device: string): Promise<void> {
    return this.#commit.run((tx) => {
      if (tx.get(cursorKey(user, device)) === undefined) return
      tx.del(cursorKey(user, device))
      setSessions(tx, user, sessionsOf(tx, user).filter((kept) => kept !== device))
    })
  }

  async close (): Promise<void> {
    await this.#commit.drain()
    await this.#db.close()
  }
}

/**
 * Data written before the `curs!` index existed: build it once from the `cur!` keys
 * (`cur!<user>!<device>`; neither contains `!`), before any transaction runs.
 */
async function indexSessions (db: ClassicLevel<string, string>): Promise<void> {
  if (await db.get(SESSIONS_INDEXED) !== undefined) return
  const byUser = new Map<string, string[]>()
  for await (const key of db.keys({ gt: 'cur!', lt: 'cur!~' })) {
    const [, user, device] = key.split('!')
    if (user === undefined || device === undefined) continue
    let devices = byUser.get(user)
    if (devices === undefined) byUser.set(user, devices = [])
    devices.push(device)
  }
  const ops = [...byUser].map(([user, devices]) => ({ type: 'put' as const, key: sessionsKey(user), value: devices.join(',') }))
  await db.batch([...ops, { type: 'put', key: SESSIONS_INDEXED, value: '1' }])
}
