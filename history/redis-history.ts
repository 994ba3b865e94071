// History in Redis: writes are the Lua scripts in redis-scripts.ts (atomic,
// so seq is gapless across server processes); reads are plain pipelined
// range queries over the same keys.
import type { Redis } from 'ioredis'
import type { AppendResult, ConversationSummary, DeviceCursor, HistoryStore, LogEntry, NewMessage, OpenedCursor, Page, ReceiptKind, ReceiptResult, RecallResult } from './history-store.ts'
import { parseMeta, seqFromIdRecords } from './history-store.ts'
import { parseGroupRef } from './group-store.ts'
import { withSeq } from './events.ts'
import type { Notice } from './history-store.ts'
import { NOTICES, APPEND, BLOCK, OPEN_CURSOR, READ_LOG, RECALL, RECEIPT, SAVE_CURSORS, TRIM } from './redis-scripts.ts'

/** Per-user log keys (history/redis-scripts.ts); the group scripts write into them too. */
export const PREFIX = 'inboxd:h:'
/** Group logs (history/redis-group-scripts.ts). */
export const GROUP_PREFIX = 'inboxd:g:'

type Reply = Array<string | number | null>

interface ScriptedRedis extends Redis {
  historyAppend (...args: Array<string | number>): Promise<Reply>
  historyReceipt (...args: Array<string | number>): Promise<Reply>
  historyRecall (...args: Array<string | number>): Promise<Reply>
  historyTrim (...args: Array<string | number>): Promise<number>
  historyReadLog (...args: Array<string | number>): Promise<string[]>
  historyOpenCursor (...args: Array<string | number>): Promise<Array<string | number>>
  historySaveCursors (...args: Array<string | number>): Promise<number>
  historyNotices (...args: Array<string | number>): Promise<string[]>
  historyBlock (...args: Array<string | number>): Promise<string>
}

const key = (user: string, name: string): string => `${PREFIX}${user}:${name}`
const orUndefined = (value: string | number | null | undefined): string | undefined => (typeof value === 'string' ? value : undefined)

/** Persistent sessions kept per user, and where the script reads who is connected. */
export interface RedisSessionBound {
  /** MAX_SESSIONS_PER_USER (0: no bound). */
  maxPerUser: number
  /** The user's hash of connected clientIds (presence/redis-presence.ts), read inside the script. */
  connectionsKey: (user: string) => string
}

export class RedisHistory implements HistoryStore {
  readonly #redis: ScriptedRedis
  readonly #keepMs: number
  readonly #sessions: RedisSessionBound

  /** `keepMs` 0 keeps history forever. Without `sessions`, cursors are not bounded. */
  constructor (redis: Redis, keepMs: number, sessions: RedisSessionBound = { maxPerUser: 0, connectionsKey: () => '' }) {
    redis.defineCommand('historyAppend', { numberOfKeys: 0, lua: APPEND })
    redis.defineCommand('historyReceipt', { numberOfKeys: 0, lua: RECEIPT })
    redis.defineCommand('historyRecall', { numberOfKeys: 0, lua: RECALL })
    redis.defineCommand('historyTrim', { numberOfKeys: 0, lua: TRIM })
    redis.defineCommand('historyReadLog', { numberOfKeys: 0, lua: READ_LOG })
    redis.defineCommand('historyOpenCursor', { numberOfKeys: 0, lua: OPEN_CURSOR })
    redis.defineCommand('historySaveCursors', { numberOfKeys: 0, lua: SAVE_CURSORS })
    redis.defineCommand('historyNotices', { numberOfKeys: 0, lua: NOTICES })
    redis.defineCommand('historyBlock', { numberOfKeys: 0, lua: BLOCK })
    this.#redis = redis as ScriptedRedis
    this.#keepMs = keepMs
    this.#sessions = sessions
  }

  async appendMessage (message: NewMessage): Promise<AppendResult> {
    const [status, first, recipientSeq, newConversation] = await this.#redis.historyAppend(
      PREFIX, message.from, message.to, message.id, message.ts, this.#keepMs, message.tail)
    if (status === 'conflict') return { status }
    if (status === 'duplicate') return { status, senderEvent: orUndefined(first) }
    const withheld = Number(recipientSeq) === 0
    return {
      status: 'stored',
      senderEvent: withSeq(Number(first), message.tail),
      recipientEvent: message.to === message.from || withheld ? undefined : withSeq(Number(recipientSeq), message.tail),
      recipientSeq: Number(recipientSeq),
      ...(withheld ? { withheld: true } : {}),
      ...(newConversation === 1 ? { newConversation: true } : {})
    }
  }

  async setBlocked (blocker: string, user: string, since: number, limit = 0): Promise<number | 'limit'> {
    const reply = await this.#redis.historyBlock(PREFIX, blocker, user, since, limit)
    return reply === 'limit' ? reply : Number(reply)
  }

  async setUnblocked (blocker: string, user: string): Promise<boolean> {
    return await this.#redis.hdel(key(blocker, 'blocks'), user) === 1
  }

  async blocked (blocker: string): Promise<Array<{ user: string, since: number }>> {
    const all = await this.#redis.hgetall(key(blocker, 'blocks'))
    return Object.entries(all).map(([user, since]) => ({ user, since: Number(since) })).sort((a, b) => b.since - a.since)
  }

  async isBlocked (blocker: string, user: string): Promise<boolean> {
    return await this.#redis.hexists(key(blocker, 'blocks'), user) === 1
  }

  async hasConversation (user: string, peer: string): Promise<boolean> {
    return await this.#redis.zscore(key(user, 'convs'), peer) !== null
  }

  async receipt (kind: ReceiptKind, reader: string, peer: string, upTo: number, ts: number): Promise<ReceiptResult> {
    const [changed, mark, unread, peerEvent, readerEvent] = await this.#redis.historyReceipt(
      PREFIX, kind, reader, peer, upTo, ts, this.#keepMs)
    return {
      changed: changed === 1,
      upTo: Number(mark),
      unread: Number(unread),
      peerEvent: orUndefined(peerEvent),
      readerEvent: orUndefined(readerEvent)
    }
  }

  async recall (sender: string, id: string, now: number, windowMs: number): Promise<RecallResult> {
    const [status, message, senderEvent, recipientEvent, to] = await this.#redis.historyRecall(
      PREFIX, sender, id, now, windowMs, this.#keepMs)
    if (status === 'not_found' || status === 'window_expired' || typeof message !== 'string') {
      return { status: status === 'window_expired' ? 'window_expired' : 'not_found' }
    }
    return { status: 'recalled', message, senderEvent: orUndefined(senderEvent), recipientEvent: orUndefined(recipientEvent), to: to as string }
  }

  async #trim (user: string): Promise<void> {
    if (this.#keepMs > 0) await this.#redis.historyTrim(PREFIX, user, Date.now(), this.#keepMs)
  }

  async #eventsAt (user: string, seqs: string[]): Promise<string[]> {
    if (seqs.length === 0) return []
    const values = await this.#redis.hmget(key(user, 'ev'), ...seqs)
    return (await this.#resolve(seqs, values)).filter((value): value is string => value !== null)
  }

  /** Member-log entries that refer to a group event become the full envelope with the member's seq. */
  async #resolve (seqs: Array<string | number>, values: Array<string | null>): Promise<Array<string | null>> {
    const refs = values.map((value) => value === null ? undefined : parseGroupRef(value))
    if (refs.every((ref) => ref === undefined)) return values
    const tails = this.#redis.pipeline()
    for (const ref of refs) if (ref !== undefined) tails.hget(`${GROUP_PREFIX}${ref.group}:ev`, String(ref.gseq))
    const fetched = (await tails.exec())!.map(([, value]) => value as string | null)
    let next = 0
    return values.map((value, i) => {
      if (refs[i] === undefined) return value
      const tail = fetched[next++]
      return tail === null || tail === undefined ? null : `{"seq":${seqs[i]},${tail}`
    })
  }

  async events (user: string, since: number, limit: number): Promise<Page> {
    await this.#trim(user)
    const entries = await this.#redis.zrangebyscore(key(user, 'log'), `(${since}`, '+inf', 'LIMIT', 0, limit + 1)
    const seqs = entries.slice(0, limit).map((entry) => String(parseMeta(entry).seq))
    return { events: await this.#eventsAt(user, seqs), hasMore: entries.length > limit, scannedTo: seqs.length === 0 ? since : Number(seqs.at(-1)) }
  }

  async conversation (user: string, peer: string, range: { before?: number, after?: number, limit: number }): Promise<Page> {
    await this.#trim(user)
    const index = key(user, `c:${peer}`)
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
    await this.#trim(user)
    const upper = range.before === undefined ? '+inf' : `(${range.before}`
    const flat = await this.#redis.zrevrangebyscore(key(user, 'convs'), upper, '-inf', 'WITHSCORES', 'LIMIT', 0, range.limit + 1)
    const rows: Array<{ peer: string, lastSeq: number }> = []
    for (let i = 0; i < flat.length; i += 2) rows.push({ peer: flat[i]!, lastSeq: Number(flat[i + 1]) })
    const hasMore = rows.length > range.limit
    const page = rows.slice(0, range.limit)
    if (page.length === 0) return { conversations: [], hasMore }
    const marks = this.#redis.pipeline()
    for (const { peer, lastSeq } of page) {
      marks.hget(key(user, 'ev'), String(lastSeq))
      marks.hget(key(user, 'read'), peer)
      marks.hget(key(user, 'readby'), peer)
      marks.hget(key(user, 'dlvby'), peer)
    }
    const replies = (await marks.exec())!.map(([, value]) => value as string | null)
    const lastMessages = await this.#resolve(page.map(({ lastSeq }) => lastSeq), page.map((_, i) => replies[i * 4] ?? null))
    const counts = this.#redis.pipeline()
    page.forEach(({ peer }, i) => counts.zcount(key(user, `in:${peer}`), `(${Number(replies[i * 4 + 1] ?? 0)}`, '+inf'))
    const unread = (await counts.exec())!.map(([, value]) => Number(value))
    return {
      hasMore,
      conversations: page.map(({ peer, lastSeq }, i) => ({
        peer,
        lastSeq,
        lastMessage: lastMessages[i] ?? undefined,
        unread: unread[i]!,
        readUpTo: Number(replies[i * 4 + 1] ?? 0),
        peerReadUpTo: Number(replies[i * 4 + 2] ?? 0),
        peerDeliveredUpTo: Number(replies[i * 4 + 3] ?? 0)
      }))
    }
  }

  async seqOfMessage (user: string, peer: string, id: string): Promise<number | undefined> {
    const [theirs, mine] = await Promise.all([
      this.#redis.hget(key(peer, 'ids'), id),
      this.#redis.hget(key(user, 'ids'), id)
    ])
    return seqFromIdRecords(user, peer, theirs ?? undefined, mine ?? undefined)
  }

  async unreadTotal (user: string): Promise<number> {
    const peers = await this.#redis.zrange(key(user, 'convs'), 0, -1)
    if (peers.length === 0) return 0
    const reads = await this.#redis.hmget(key(user, 'read'), ...peers)
    const counts = this.#redis.pipeline()
    peers.forEach((peer, i) => counts.zcount(key(user, `in:${peer}`), `(${Number(reads[i] ?? 0)}`, '+inf'))
    return (await counts.exec())!.reduce((sum, [, value]) => sum + Number(value), 0)
  }

  async head (user: string): Promise<number> {
    return Number(await this.#redis.get(key(user, 'seq')) ?? 0)
  }

  async readLog (user: string, after: number, limit: number): Promise<LogEntry[]> {
    const flat = await this.#redis.historyReadLog(PREFIX, user, after, limit, GROUP_PREFIX)
    const entries: LogEntry[] = []
    for (let i = 0; i < flat.length; i += 2) {
      const meta = flat[i]!
      const bar = meta.indexOf('|')
      const event = flat[i + 1]!
      entries.push({ seq: Number(meta.slice(0, bar)), ts: Number(meta.slice(bar + 1, meta.indexOf('|', bar + 1))), event: event === '' ? undefined : event })
    }
    return entries
  }

  async cursor (user: string, device: string): Promise<number | undefined> {
    const value = await this.#redis.hget(key(user, 'cur'), device)
    return value === null ? undefined : Number(value)
  }

  async openCursor (user: string, device: string): Promise<OpenedCursor> {
    const { maxPerUser, connectionsKey } = this.#sessions
    const [seq, created, ...evicted] = await this.#redis.historyOpenCursor(PREFIX, user, device, maxPerUser, maxPerUser > 0 ? connectionsKey(user) : '')
    return { seq: Number(seq), created: Number(created) === 1, evicted: evicted.map(String) }
  }

  async saveCursors (cursors: DeviceCursor[]): Promise<void> {
    if (cursors.length === 0) return
    await this.#redis.historySaveCursors(PREFIX, ...cursors.flatMap(({ user, device, seq }) => [user, device, seq]))
  }

  async appendNotices (notices: Notice[]): Promise<Array<{ user: string, event: string }>> {
    if (notices.length === 0) return []
    const events = await this.#redis.historyNotices(PREFIX, ...notices.flatMap(({ user, peer, ts, tail }) => [user, peer, ts, tail]))
    return notices.map(({ user }, i) => ({ user, event: events[i]! }))
  }

  async dropCursor (user: string, device: string): Promise<void> {
    await this.#redis.hdel(key(user, 'cur'), device)
  }

  async close (): Promise<void> {}
}
