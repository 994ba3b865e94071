// The per-user log in Redis, on one Redis or a cluster: every write is one Lua script
// over one user's keys (redis-scripts.ts; atomic, so seq is gapless across
// server processes); what it means for another user's log goes through the
// writer's outbox and the relay (redis-relay.ts). Reads are plain range
// queries, each within one user's slot; a member's reference to a group event
// is resolved with a read of the group's key.
import { defineVariadicScript, type RedisClient } from '../storage/redis-client.ts'
import { bySlot, slotOf } from '../storage/redis-keys.ts'
import type { AppendResult, ConversationSummary, EditResult, HotLogStore, LogEntry, LogRetentionHook, NewMessage, Notice, Page, ReceiptKind, ReceiptResult, RecallResult } from './history-store.ts'
import { formatIdRecord, parseIdRecord, parseMeta, REMOVE_PAST_RETENTION_LOG } from './history-store.ts'
import { parseGroupRef } from './group-store.ts'
import { editedMessage, editEvent, MAX_EDITS_PER_MESSAGE, messageTail, receiptTail, recallEvent, sameBody, tailOf, tombstone, withSeq } from './events.ts'
import type { LogSink } from './log-sink.ts'
import { redisKeys, type GroupKeys } from './redis-group-keys.ts'
import { editItemText, RedisRelay, relayItem, type RelayItem } from './redis-relay.ts'
import type { ReplicaGate } from '../storage/replication.ts'
import type { RedisArchiveMarks } from './redis-archive-source.ts'
import { APPEND, EDIT, NOTICES, READ_LOG, RECALL, RECEIPT, TRIM } from './redis-scripts.ts'
import type { Cluster, Redis } from 'ioredis'

type Reply = Array<string | number | null>

interface ScriptedRedis {
  historyAppend (...args: Array<string | number>): Promise<Reply>
  historyReceipt (...args: Array<string | number>): Promise<Reply>
  historyRecall (...args: Array<string | number>): Promise<Reply>
  historyEdit (...args: Array<string | number>): Promise<Reply>
  historyTrim (...args: Array<string | number>): Promise<number>
  historyReadLog (...args: Array<string | number>): Promise<string[]>
  historyNotices (...args: Array<string | number>): Promise<number[]>
  historyDeleteUser (...args: Array<string | number>): Promise<number>
}

/**
 * KEYS: the user's seq, the relay pending index, the archive pending index (the relay's again
 * without an archive), then keys to delete. ARGV: the seq the keys were listed at ('' for none),
 * last ('1': the final batch), the user, the archive owner ('' without an archive).
 * Deletes only while the seq is still the one the keys were listed at (a write that moved the
 * log on meanwhile may have made keys the list lacks: the caller lists again); the final batch
 * deletes the seq and the user's pending entries with the rest, in the same step.
 */
const DELETE_USER = `
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return 0 end
for i = 4, #KEYS do redis.call('UNLINK', KEYS[i]) end
if ARGV[2] == '1' then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[3])
  if ARGV[4] ~= '' then redis.call('ZREM', KEYS[3], ARGV[4]) end
end
return 1
`

/** Keys deleted per script call. */
const DELETE_BATCH = 500
/** Keys a SCAN call looks at. */
const SCAN_COUNT = 1_000
/** Of the user's keys, the group store's (memberships, reservations): left to it. */
const MEMBERSHIP_KEYS = ['groups', 'gres']
/** Written without moving the seq (a cursor, a block, a delivered mark): deleted in the final batch even if the listing missed them. */
const UNSEQUENCED_KEYS = ['cur', 'blocks', 'dlv', 'read', 'rx', 'am', 'av']
/** Listings of a user's keys a deletion tries before it gives up (each retry means writes kept moving the log on). */
const DELETE_ATTEMPTS = 20

const orUndefined = (value: string | number | null | undefined): string | undefined => (typeof value === 'string' ? value : undefined)

/** Entries a trim call looks at. */
const TRIM_BATCH = 50
/** A user's log is trimmed after every this many appends of theirs (off the acknowledgement's path). */
const TRIM_EVERY = 16

export interface RedisLogOptions {
  /** History retention (0 keeps history forever). */
  keepMs?: number
  retention?: LogRetentionHook
  /** Key names (shared with the group store); by default the cluster's scheme, per slot on a cluster. */
  keys?: GroupKeys
  /** Off only in tests: a write then leaves its relay to the sweeper, as a process dying right after it would. */
  fastPath?: boolean
  /** A background relay or trim failed (the sweeper retries the relay; the next trim the trim). */
  onError?: (error: unknown) => void
  /** REDIS_WAIT_REPLICAS: a write is acknowledged (and a relayed copy marked done) only once replicas hold it. */
  replicas?: Pick<ReplicaGate, 'after'>
  /** Set when an archive follows the logs: every write marks its owners pending first (history/redis-archive-source.ts). */
  archive?: Pick<RedisArchiveMarks, 'mark' | 'pendingKey'>
  /** With an archive: a conversation stays listed after its events leave this log (the archive has them). */
  keepConversations?: boolean
}

const NO_REPLICAS: Pick<ReplicaGate, 'after'> = { after: async () => {} }

export class RedisLog implements HotLogStore {
  readonly #redis: RedisClient & ScriptedRedis
  readonly #keepMs: number
  readonly #retention: LogRetentionHook
  readonly #keys: GroupKeys
  readonly #fastPath: boolean
  readonly #onError: (error: unknown) => void
  readonly #relay: RedisRelay
  readonly #perSlot: boolean
  readonly #replicas: Pick<ReplicaGate, 'after'>
  readonly #archive: Pick<RedisArchiveMarks, 'mark' | 'pendingKey'> | undefined
  readonly #keepConversations: boolean
  readonly #client: RedisClient

  constructor (redis: RedisClient, options: RedisLogOptions = {}) {
    const { keepMs = 0, retention = REMOVE_PAST_RETENTION_LOG, keys = redisKeys(redis.isCluster), fastPath = true, onError = () => {}, replicas = NO_REPLICAS, archive, keepConversations = false } = options
    redis.defineCommand('historyAppend', { numberOfKeys: 10, lua: APPEND })
    redis.defineCommand('historyReceipt', { numberOfKeys: 10, lua: RECEIPT })
    redis.defineCommand('historyRecall', { numberOfKeys: 8, lua: RECALL })
    redis.defineCommand('historyEdit', { numberOfKeys: 8, lua: EDIT })
    defineVariadicScript(redis, 'historyTrim', TRIM)
    redis.defineCommand('historyReadLog', { numberOfKeys: 2, lua: READ_LOG })
    defineVariadicScript(redis, 'historyNotices', NOTICES)
    defineVariadicScript(redis, 'historyDeleteUser', DELETE_USER)
    this.#client = redis
    this.#redis = redis as RedisClient & ScriptedRedis
    this.#keepMs = keepMs
    this.#retention = retention
    this.#keys = keys
    this.#fastPath = fastPath
    this.#onError = onError
    this.#perSlot = redis.isCluster
    this.#replicas = replicas
    this.#archive = archive
    this.#keepConversations = keepConversations
    this.#relay = new RedisRelay(redis, { user: keys.member, pending: keys.relayPending, pendingKeys: keys.relayPendingKeys }, { replicas, onError, archive })
  }

  #k (user: string, name: string): string {
    return this.#keys.member(user, name)
  }

  /** After a write (durable, replicated if asked): its outbox item to the relay (not awaited), and retention now and then. */
  #after (user: string, seq: number, relay: { item: RelayItem, done: number, sink: LogSink } | undefined): void {
    if (relay !== undefined && this.#fastPath) this.#relay.relay(relay.item, relay.done, relay.sink).catch(this.#onError)
    if (this.#keepMs > 0 && seq > 0 && seq % TRIM_EVERY === 0) this.trimLog(user, Date.now()).catch(this.#onError)
  }

  /** The writer's keys every write with an outbox item declares, after its own. */
  #outbox (user: string): string[] {
    return [this.#k(user, 'ob'), this.#k(user, 'obseq'), this.#keys.relayPending(user), this.#k(user, 'obdone')]
  }

  async appendMessage (message: NewMessage, sink: LogSink): Promise<AppendResult> {
    const { from, to, id, ts } = message
    const tail = messageTail(message)
    this.#archive?.mark([`u:${from}`])
    const [status, first, newConversation, item, done] = await this.#redis.historyAppend(
      ...['ids', 'ev', 'log', 'seq', `c:${to}`, 'convs'].map((name) => this.#k(from, name)), ...this.#outbox(from),
      from, to, id, ts, this.#keepMs, tail, Date.now())
    if (status === 'conflict') return { status }
    // A duplicate too: the first attempt may have gone unacknowledged before its replica had it.
    await this.#replicas.after(this.#k(from, 'seq'))
    if (status === 'duplicate') return { status, senderEvent: orUndefined(first) }
    const seq = Number(first)
    this.#after(from, seq, to === from ? undefined : {
      item: relayItem.message(from, Number(item), { to, senderSeq: seq, id, ts, tail, newConversation: newConversation === 1 }),
      done: Number(done),
      sink
    })
    return { status: 'stored', senderEvent: withSeq(seq, tail), ...(newConversation === 1 ? { newConversation: true } : {}) }
  }

  async hasConversation (user: string, peer: string): Promise<boolean> {
    return await this.#redis.zscore(this.#k(user, 'convs'), peer) !== null
  }

  async receipt (kind: ReceiptKind, reader: string, peer: string, upTo: number, ts: number, sink: LogSink): Promise<ReceiptResult> {
    // Which message the mark lands on: the latest incoming one at or below upTo (read first, then
    // written by a script that moves the mark only forward, so a concurrent receipt cannot go back).
    const [found] = await this.#redis.zrevrangebyscore(this.#k(reader, `in:${peer}`), upTo, '-inf', 'LIMIT', 0, 1)
    const entry = found === undefined ? undefined : (await this.#redis.zrangebyscore(this.#k(reader, 'log'), found, found, 'LIMIT', 0, 1))[0]
    const meta = entry === undefined ? undefined : parseMeta(entry)
    const keys = [...['read', 'dlv', `in:${peer}`, 'seq', 'ev', 'log'].map((name) => this.#k(reader, name)), ...this.#outbox(reader)]
    if (meta === undefined) {
      // Nothing to mark: report the current mark (a script with mark 0 changes nothing).
      const [, mark, unread] = await this.#redis.historyReceipt(...keys, reader, peer, kind, 0, '', 0, ts, '', Date.now())
      return { changed: false, upTo: Number(mark), unread: Number(unread), readerEvent: undefined }
    }
    const readerTail = kind === 'read' ? receiptTail('read', reader, peer, meta.seq, meta.id, ts) : ''
    if (kind === 'read') this.#archive?.mark([`u:${reader}`])
    const [changed, mark, unread, readerSeq, item, done] = await this.#redis.historyReceipt(...keys,
      reader, peer, kind, meta.seq, meta.id, meta.peerSeq, ts, readerTail, Date.now())
    if (changed !== 1) return { changed: false, upTo: Number(mark), unread: Number(unread), readerEvent: undefined }
    await this.#replicas.after(this.#k(reader, 'seq'))
    const seq = Number(readerSeq)
    this.#after(reader, seq, { item: relayItem.receipt(reader, Number(item), { to: peer, receipt: kind, upTo: meta.peerSeq, id: meta.id, ts }), done: Number(done), sink })
    return { changed: true, upTo: Number(mark), unread: Number(unread), readerEvent: seq > 0 ? withSeq(seq, readerTail) : undefined }
  }

  async recall (sender: string, id: string, now: number, windowMs: number, sink: LogSink): Promise<RecallResult> {
    for (;;) {
      const record = await this.#redis.hget(this.#k(sender, 'ids'), id)
      if (record === null) return { status: 'not_found' }
      const { senderSeq, recipientSeq, to, ts, recalled } = parseIdRecord(record)
      if (to.startsWith('g:')) return { status: 'not_found' } // a group message: not a 1:1 recall
      if (recalled) {
        const message = await this.#redis.hget(this.#k(sender, 'ev'), String(senderSeq))
        return message === null ? { status: 'not_found' } : { status: 'recalled', message, senderEvent: undefined, to }
      }
      if (now - ts > windowMs) return { status: 'window_expired' }
      const message = tombstone(senderSeq, id, sender, to, ts, now)
      const recallTail = tailOf(recallEvent(0, id, sender, to, senderSeq, now))
      this.#archive?.mark([`u:${sender}`])
      const reply = await this.#redis.historyRecall(...['ids', 'ev', 'log', 'seq'].map((name) => this.#k(sender, name)), ...this.#outbox(sender),
        sender, id, record, senderSeq, to, ts, now, tailOf(message), recallTail, formatIdRecord({ senderSeq, recipientSeq, to, ts, recalled: true }))
      if (reply[0] === 'changed') continue // recalled (or reused) meanwhile: decide again
      await this.#replicas.after(this.#k(sender, 'seq'))
      const seq = Number(reply[1])
      this.#after(sender, seq, to === sender ? undefined : { item: relayItem.recall(sender, Number(reply[2]), { to, id, messageTs: ts, ts: now }), done: Number(reply[3]), sink })
      return { status: 'recalled', message, senderEvent: withSeq(seq, recallTail), to }
    }
  }

  async edit (sender: string, id: string, body: unknown, now: number, windowMs: number, sink: LogSink): Promise<EditResult> {
    for (;;) {
      const record = await this.#redis.hget(this.#k(sender, 'ids'), id)
      if (record === null) return { status: 'not_found' }
      const { senderSeq, to, ts, recalled } = parseIdRecord(record)
      if (to.startsWith('g:')) return { status: 'not_found' } // a group message: not a 1:1 edit
      if (recalled) return { status: 'recalled' }
      if (now - ts > windowMs) return { status: 'window_expired' }
      const stored = await this.#redis.hget(this.#k(sender, 'ev'), String(senderSeq))
      if (stored === null) return { status: 'not_found' }
      if (sameBody(stored, body)) return { status: 'edited', message: stored, senderEvent: undefined, to }
      const message = editedMessage(stored, body, now)
      const editTail = tailOf(editEvent(0, id, sender, to, senderSeq, now, body))
      this.#archive?.mark([`u:${sender}`])
      const reply = await this.#redis.historyEdit(...['ids', 'ev', 'log', 'seq'].map((name) => this.#k(sender, name)), ...this.#outbox(sender),
        sender, id, record, tailOf(stored), senderSeq, to, now, tailOf(message), editTail, editItemText(to, tailOf(message)), MAX_EDITS_PER_MESSAGE)
      if (reply[0] === 'changed') continue // edited, recalled (or reused) meanwhile: decide again
      if (reply[0] === 'too_many') return { status: 'too_many_edits' }
      await this.#replicas.after(this.#k(sender, 'seq'))
      const seq = Number(reply[1])
      this.#after(sender, seq, to === sender ? undefined : { item: relayItem.edit(sender, Number(reply[2]), to, tailOf(message)), done: Number(reply[3]), sink })
      return { status: 'edited', message, senderEvent: withSeq(seq, editTail), to }
    }
  }

  sweepRelay (sink: LogSink, options?: { graceMs?: number, everySlot?: boolean }): Promise<number> {
    return this.#relay.sweep(sink, options)
  }

  relayed (): Promise<void> {
    return this.#relay.idle()
  }

  async trimLog (user: string, now: number): Promise<number> {
    if (this.#keepMs <= 0) return 0
    const cutoff = now - this.#keepMs
    const [oldest, obdone, obseq, removable] = await Promise.all([
      this.#redis.zrange(this.#k(user, 'log'), 0, TRIM_BATCH - 1),
      this.#redis.get(this.#k(user, 'obdone')),
      this.#redis.get(this.#k(user, 'obseq')),
      this.#retention.removableUpTo(user)
    ])
    // The relay reads a message's event from the sender's log: nothing goes while it has work.
    if (Number(obdone ?? 0) < Number(obseq ?? 0)) return 0
    const expired: string[] = []
    for (const entry of oldest) {
      const meta = parseMeta(entry)
      if (meta.ts >= cutoff || meta.seq > removable) break
      expired.push(entry)
    }
    if (expired.length === 0) return 0
    const peers = [...new Set(expired.map((entry) => parseMeta(entry).peer))]
    const keys = [...['log', 'ev', 'ids', 'rids', 'convs'].map((name) => this.#k(user, name)), ...peers.flatMap((peer) => [this.#k(user, `c:${peer}`), this.#k(user, `in:${peer}`)])]
    return this.#redis.historyTrim(keys.length, ...keys, this.#keepConversations ? '1' : '0', expired.length, ...expired, ...peers)
  }

  async #eventsAt (user: string, seqs: string[]): Promise<string[]> {
    if (seqs.length === 0) return []
    const values = await this.#redis.hmget(this.#k(user, 'ev'), ...seqs)
    return (await this.#resolve(seqs, values)).filter((value): value is string => value !== null)
  }

  /** Member-log entries that refer to a group event become the full envelope with the member's seq (one read of the group's key each). */
  async #resolve (seqs: Array<string | number>, values: Array<string | null>): Promise<Array<string | null>> {
    const refs = values.map((value) => value === null ? undefined : parseGroupRef(value))
    if (refs.every((ref) => ref === undefined)) return values
    const tails = await Promise.all(refs.map((ref) => ref === undefined ? null : this.#redis.hget(this.#keys.group(ref.group, 'ev'), String(ref.gseq))))
    return values.map((value, i) => {
      if (refs[i] === undefined) return value
      const tail = tails[i]
      return tail === null || tail === undefined ? null : `{"seq":${seqs[i]},${tail}`
    })
  }

  async events (user: string, since: number, limit: number): Promise<Page> {
    await this.trimLog(user, Date.now())
    const entries = await this.#redis.zrangebyscore(this.#k(user, 'log'), `(${since}`, '+inf', 'LIMIT', 0, limit + 1)
    const seqs = entries.slice(0, limit).map((entry) => String(parseMeta(entry).seq))
    return { events: await this.#eventsAt(user, seqs), hasMore: entries.length > limit, scannedTo: seqs.length === 0 ? since : Number(seqs.at(-1)) }
  }

  async conversation (user: string, peer: string, range: { before?: number, after?: number, limit: number }): Promise<Page> {
    await this.trimLog(user, Date.now())
    const index = this.#k(user, `c:${peer}`)
    const upper = range.before === undefined ? '+inf' : `(${range.before}`
    let seqs: string[]
    if (range.after !== undefined) {
      seqs = await this.#redis.zrangebyscore(index, `(${range.after}`, upper, 'LIMIT', 0, range.limit + 1)
    } else {
      seqs = (await this.#redis.zrevrangebyscore(index, upper, '-inf', 'LIMIT', 0, range.limit + 1))
    }
    const hasMore = seqs.length > range.limit
    seqs = seqs.slice(0, range.limit)
    if (range.after === undefined) seqs.reverse()
    return { events: await this.#eventsAt(user, seqs), hasMore }
  }

  async conversations (user: string, range: { before?: number, limit: number }): Promise<{ conversations: ConversationSummary[], hasMore: boolean }> {
    await this.trimLog(user, Date.now())
    const upper = range.before === undefined ? '+inf' : `(${range.before}`
    const flat = await this.#redis.zrevrangebyscore(this.#k(user, 'convs'), upper, '-inf', 'WITHSCORES', 'LIMIT', 0, range.limit + 1)
    const rows: Array<{ peer: string, lastSeq: number }> = []
    for (let i = 0; i < flat.length; i += 2) rows.push({ peer: flat[i]!, lastSeq: Number(flat[i + 1]) })
    const hasMore = rows.length > range.limit
    const page = rows.slice(0, range.limit)
    if (page.length === 0) return { conversations: [], hasMore }
    const peers = page.map(({ peer }) => peer)
    // One user's keys, one slot: plain multi-field reads.
    const [lastValues, reads, readBys, deliveredBys] = await Promise.all([
      this.#redis.hmget(this.#k(user, 'ev'), ...page.map(({ lastSeq }) => String(lastSeq))),
      this.#redis.hmget(this.#k(user, 'read'), ...peers),
      this.#redis.hmget(this.#k(user, 'readby'), ...peers),
      this.#redis.hmget(this.#k(user, 'dlvby'), ...peers)
    ])
    const lastMessages = await this.#resolve(page.map(({ lastSeq }) => lastSeq), lastValues)
    const unread = await Promise.all(peers.map((peer, i) => this.#redis.zcount(this.#k(user, `in:${peer}`), `(${Number(reads[i] ?? 0)}`, '+inf')))
    return {
      hasMore,
      conversations: page.map(({ peer, lastSeq }, i) => ({
        peer,
        lastSeq,
        lastMessage: lastMessages[i] ?? undefined,
        unread: unread[i]!,
        readUpTo: Number(reads[i] ?? 0),
        peerReadUpTo: Number(readBys[i] ?? 0),
        peerDeliveredUpTo: Number(deliveredBys[i] ?? 0)
      }))
    }
  }

  async seqOfMessage (user: string, peer: string, id: string): Promise<number | undefined> {
    // A message the peer sent to the caller (recorded where it landed), or one the caller sent.
    const [received, mine] = await Promise.all([this.#redis.hget(this.#k(user, 'rids'), `${peer}|${id}`), this.#redis.hget(this.#k(user, 'ids'), id)])
    // 0: withheld (a block), never in the caller's log; negative: recalled since.
    if (received !== null && Number(received) !== 0) return Math.abs(Number(received))
    const sent = mine === null ? undefined : parseIdRecord(mine)
    return sent?.to === peer ? sent.senderSeq : undefined
  }

  async unreadTotal (user: string): Promise<number> {
    const peers = await this.#redis.zrange(this.#k(user, 'convs'), 0, -1)
    if (peers.length === 0) return 0
    const reads = await this.#redis.hmget(this.#k(user, 'read'), ...peers)
    const counts = await Promise.all(peers.map((peer, i) => this.#redis.zcount(this.#k(user, `in:${peer}`), `(${Number(reads[i] ?? 0)}`, '+inf')))
    return counts.reduce((sum, count) => sum + count, 0)
  }

  async head (user: string): Promise<number> {
    return Number(await this.#redis.get(this.#k(user, 'seq')) ?? 0)
  }

  async floor (user: string): Promise<number> {
    const [first] = await this.#redis.zrange(this.#k(user, 'log'), 0, 0)
    return first === undefined ? await this.head(user) + 1 : parseMeta(first).seq
  }

  async readLog (user: string, after: number, limit: number): Promise<LogEntry[]> {
    const flat = await this.#redis.historyReadLog(this.#k(user, 'log'), this.#k(user, 'ev'), after, limit)
    const seqs: number[] = []
    const values: string[] = []
    const entries: LogEntry[] = []
    for (let i = 0; i < flat.length; i += 2) {
      const meta = flat[i]!
      const bar = meta.indexOf('|')
      const seq = Number(meta.slice(0, bar))
      seqs.push(seq)
      values.push(flat[i + 1]!)
      entries.push({ seq, ts: Number(meta.slice(bar + 1, meta.indexOf('|', bar + 1))), event: undefined })
    }
    // A group event is stored once, in the group log; gone (group retention): the reader passes over the seq.
    const events = await this.#resolve(seqs, values)
    entries.forEach((entry, i) => { entry.event = events[i] ?? undefined })
    return entries
  }

  /** One script per slot on a cluster (one for the batch on a single Redis). */
  #batches<T> (items: T[], userOf: (item: T) => string): T[][] {
    if (items.length === 0) return []
    return this.#perSlot ? bySlot(items, (item) => this.#k(userOf(item), 'seq')) : [items]
  }

  async appendNotices (notices: Notice[]): Promise<Array<{ user: string, event: string }>> {
    const events = new Map<Notice, string>()
    await Promise.all(this.#batches(notices, ({ user }) => user).map(async (batch) => {
      const keys = batch.flatMap(({ user }) => ['seq', 'ev', 'log'].map((name) => this.#k(user, name)))
      this.#archive?.mark(batch.map(({ user }) => `u:${user}`))
      const seqs = await this.#redis.historyNotices(keys.length, ...keys, ...batch.flatMap(({ peer, ts, tail }) => [peer, ts, tail]))
      batch.forEach((notice, i) => events.set(notice, withSeq(Number(seqs[i]), notice.tail)))
    }))
    return notices.map((notice) => ({ user: notice.user, event: events.get(notice)! }))
  }

  async deleteUser (user: string): Promise<void> {
    const seqKey = this.#k(user, 'seq')
    const relayPending = this.#keys.relayPending(user)
    const archiveOwner = this.#archive === undefined ? '' : `u:${user}`
    const archivePending = this.#archive === undefined ? relayPending : this.#archive.pendingKey(archiveOwner)
    const skipped = new Set([seqKey, ...MEMBERSHIP_KEYS.map((name) => this.#k(user, name))])
    const peers = new Set<string>()
    for (let attempt = 0; attempt < DELETE_ATTEMPTS; attempt++) {
      // The seq first: a write after it moves it, and the script then refuses the list.
      const head = await this.#redis.get(seqKey) ?? ''
      for (const peer of await this.#redis.zrange(this.#k(user, 'convs'), 0, -1)) if (!peer.startsWith('g:') && peer !== user) peers.add(peer)
      const listed = (await this.#userKeys(user)).filter((key) => !skipped.has(key))
      const unsequenced = UNSEQUENCED_KEYS.map((name) => this.#k(user, name))
      const batches: string[][] = []
      for (let i = 0; i < listed.length; i += DELETE_BATCH) batches.push(listed.slice(i, i + DELETE_BATCH))
      batches.push(unsequenced)
      let deleted = true
      for (const [i, batch] of batches.entries()) {
        const last = i === batches.length - 1
        const keys = [seqKey, relayPending, archivePending, ...batch]
        if (await this.#redis.historyDeleteUser(keys.length, ...keys, head, last ? '1' : '0', user, archiveOwner) !== 1) {
          deleted = false
          break
        }
      }
      if (deleted) {
        // The peers' relay marks of the user's outbox: a new outbox numbers its items from 1 again.
        await Promise.all([...peers].map((peer) => this.#redis.hdel(this.#k(peer, 'rx'), user)))
        await this.#replicas.after(seqKey)
        return
      }
    }
    throw new Error(`could not delete ${user}'s log: writes kept moving it on`)
  }

  /** Every key of the user's (one slot): SCAN with MATCH on the primary holding it (a cluster: every primary if that is unknown). */
  async #userKeys (user: string): Promise<string[]> {
    const pattern = this.#k(user, '*')
    const found = new Set<string>()
    for (const node of this.#nodesOf(this.#k(user, 'seq'))) {
      let cursor = '0'
      do {
        const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', SCAN_COUNT)
        for (const key of keys) found.add(key)
        cursor = next
      } while (cursor !== '0')
    }
    return [...found]
  }

  #nodesOf (key: string): Redis[] {
    if (!this.#perSlot) return [this.#client as Redis]
    const cluster = this.#client as Cluster
    const masters = cluster.nodes('master')
    const holder = cluster.slots[slotOf(key)]?.[0]
    const node = holder === undefined ? undefined : masters.find(({ options }) => `${options.host}:${options.port}` === holder)
    return node === undefined ? masters : [node]
  }

  async close (): Promise<void> {
    await this.#relay.idle()
  }
}
