// History in embedded mode: one LevelDB (DATA_DIR/history), one process.
// Writes are serialised in-process and each lands as one atomic batch, which
// gives the same guarantees as the Redis scripts; the key layout mirrors
// redis-scripts.ts with seqs zero-padded so that key order is seq order:
//   seq!u             counter            ev!u!<seq>         meta \n event JSON
//   c!u!peer!<seq>    conversation       in!u!peer!<seq>    incoming, unrecalled
//   convs!u!peer      last message seq   ids!u!id           senderSeq|recipientSeq|to|ts|flag
//   mark!u!<read|dlv|readby|dlvby>!peer  seq
import { ClassicLevel } from 'classic-level'
import type { AppendResult, ConversationSummary, HistoryStore, LogMeta, NewMessage, Page, ReceiptKind, ReceiptResult, RecallResult } from './history-store.ts'
import { formatIdRecord, formatMeta, parseIdRecord, parseMeta, seqFromIdRecords } from './history-store.ts'
import { receiptEvent, recallEvent, tombstone, withSeq } from './events.ts'

type Op = { type: 'put', key: string, value: string } | { type: 'del', key: string }
type Mark = 'read' | 'dlv' | 'readby' | 'dlvby'

const pad = (seq: number): string => String(seq).padStart(16, '0')
const evKey = (user: string, seq: number): string => `ev!${user}!${pad(seq)}`
const markKey = (user: string, mark: Mark, peer: string): string => `mark!${user}!${mark}!${peer}`
/** Range options for every key under `prefix` strictly after / before a seq. */
const after = (prefix: string, seq: number, before?: number) => ({ gt: prefix + pad(seq), lt: before === undefined ? prefix + '~' : prefix + pad(before) })

/** One write: reads see earlier writes of the same transaction, then all ops land in one batch. */
class Transaction {
  readonly ops: Op[] = []
  readonly #pending = new Map<string, string | undefined>()
  constructor (private readonly db: ClassicLevel<string, string>) {}

  async get (key: string): Promise<string | undefined> {
    if (this.#pending.has(key)) return this.#pending.get(key)
    return (await this.db.get(key)) ?? undefined
  }

  put (key: string, value: string): void { this.ops.push({ type: 'put', key, value }); this.#pending.set(key, value) }
  del (key: string): void { this.ops.push({ type: 'del', key }); this.#pending.set(key, undefined) }

  async next (user: string): Promise<number> {
    const seq = Number(await this.get(`seq!${user}`) ?? 0) + 1
    this.put(`seq!${user}`, String(seq))
    return seq
  }

  async mark (user: string, mark: Mark, peer: string): Promise<number> {
    return Number(await this.get(markKey(user, mark, peer)) ?? 0)
  }

  putEvent (user: string, meta: LogMeta, event: string): void {
    this.put(evKey(user, meta.seq), `${formatMeta(meta)}\n${event}`)
  }
}

export class LevelHistory implements HistoryStore {
  readonly #db: ClassicLevel<string, string>
  readonly #keepMs: number
  #queue: Promise<unknown> = Promise.resolve()

  private constructor (db: ClassicLevel<string, string>, keepMs: number) {
    this.#db = db
    this.#keepMs = keepMs
  }

  static async open (path: string, keepMs: number): Promise<LevelHistory> {
    const db = new ClassicLevel<string, string>(path, { valueEncoding: 'utf8' })
    await db.open()
    return new LevelHistory(db, keepMs)
  }

  /** Runs one write transaction after every earlier one. */
  #write<T> (work: (tx: Transaction) => Promise<T>): Promise<T> {
    const run = this.#queue.then(async () => {
      const tx = new Transaction(this.#db)
      const result = await work(tx)
      if (tx.ops.length > 0) await this.#db.batch(tx.ops)
      return result
    })
    this.#queue = run.catch(() => {})
    return run
  }

  async #keys (range: Record<string, string>, limit: number, reverse = false): Promise<string[]> {
    return this.#db.keys({ ...range, limit, reverse }).all()
  }

  /** Drops the user's oldest events past retention (bounded work per call). */
  async #trim (tx: Transaction, user: string, now: number): Promise<void> {
    if (this.#keepMs <= 0) return
    const cutoff = now - this.#keepMs
    const oldest = await this.#db.iterator({ gt: `ev!${user}!`, lt: `ev!${user}!~`, limit: 50 }).all()
    for (const [key, value] of oldest) {
      const meta = parseMeta(value.slice(0, value.indexOf('\n')))
      if (meta.ts >= cutoff) return
      tx.del(key)
      if (meta.kind !== 'm') continue
      tx.del(`c!${user}!${meta.peer}!${pad(meta.seq)}`)
      tx.del(`in!${user}!${meta.peer}!${pad(meta.seq)}`)
      if (meta.dir !== 'in') tx.del(`ids!${user}!${meta.id}`)
      const remaining = await this.#keys(after(`c!${user}!${meta.peer}!`, meta.seq), 1)
      if (remaining.length === 0) tx.del(`convs!${user}!${meta.peer}`)
    }
  }

  appendMessage (message: NewMessage): Promise<AppendResult> {
    const { from, to, id, ts, tail } = message
    return this.#write(async (tx) => {
      const existing = await tx.get(`ids!${from}!${id}`)
      if (existing !== undefined) {
        const previous = parseIdRecord(existing)
        if (previous.to !== to) return { status: 'conflict' as const }
        const stored = await tx.get(evKey(from, previous.senderSeq))
        return { status: 'duplicate' as const, senderEvent: stored?.slice(stored.indexOf('\n') + 1) }
      }
      await this.#trim(tx, from, ts)
      if (to !== from) await this.#trim(tx, to, ts)
      const senderSeq = await tx.next(from)
      const recipientSeq = to === from ? senderSeq : await tx.next(to)
      const store = (user: string, peer: string, seq: number, peerSeq: number, dir: LogMeta['dir']): string => {
        const event = withSeq(seq, tail)
        tx.putEvent(user, { seq, ts, peer, kind: 'm', dir, id, peerSeq }, event)
        tx.put(`c!${user}!${peer}!${pad(seq)}`, '')
        if (dir === 'in') tx.put(`in!${user}!${peer}!${pad(seq)}`, '')
        tx.put(`convs!${user}!${peer}`, String(seq))
        return event
      }
      const senderEvent = store(from, to, senderSeq, recipientSeq, to === from ? 'self' : 'out')
      const recipientEvent = to === from ? undefined : store(to, from, recipientSeq, senderSeq, 'in')
      tx.put(`ids!${from}!${id}`, formatIdRecord({ senderSeq, recipientSeq, to, ts, recalled: false }))
      return { status: 'stored' as const, senderEvent, recipientEvent, recipientSeq }
    })
  }

  receipt (kind: ReceiptKind, reader: string, peer: string, upTo: number, ts: number): Promise<ReceiptResult> {
    return this.#write(async (tx) => {
      const mark: Mark = kind === 'read' ? 'read' : 'dlv'
      let readMark = await tx.mark(reader, 'read', peer)
      const current = await tx.mark(reader, mark, peer)
      const incoming = `in!${reader}!${peer}!`
      const unread = (): Promise<number> => this.#countAfter(incoming, readMark)
      // The mark lands on the latest incoming message at or below upTo.
      const [found] = await this.#keys(after(incoming, 0, Math.min(upTo, Number.MAX_SAFE_INTEGER - 1) + 1), 1, true)
      const seq = found === undefined ? 0 : Number(found.slice(incoming.length))
      if (seq <= current) return { changed: false, upTo: current, unread: await unread(), peerEvent: undefined, readerEvent: undefined }
      tx.put(markKey(reader, mark, peer), String(seq))
      if (kind === 'read') {
        readMark = seq
        if (seq > await tx.mark(reader, 'dlv', peer)) tx.put(markKey(reader, 'dlv', peer), String(seq))
      }
      const stored = (await tx.get(evKey(reader, seq)))!
      const { id, peerSeq } = parseMeta(stored.slice(0, stored.indexOf('\n')))
      await this.#trim(tx, peer, ts)
      const ps = await tx.next(peer)
      const peerEvent = receiptEvent(ps, kind, reader, reader, peerSeq, id, ts)
      tx.putEvent(peer, { seq: ps, ts, peer: reader, kind: 'r', dir: 'in', id, peerSeq: 0 }, peerEvent)
      if (kind === 'read') tx.put(markKey(peer, 'readby', reader), String(peerSeq))
      if (peerSeq > await tx.mark(peer, 'dlvby', reader)) tx.put(markKey(peer, 'dlvby', reader), String(peerSeq))
      let readerEvent: string | undefined
      if (kind === 'read') {
        await this.#trim(tx, reader, ts)
        const rs = await tx.next(reader)
        readerEvent = receiptEvent(rs, 'read', reader, peer, seq, id, ts)
        tx.putEvent(reader, { seq: rs, ts, peer, kind: 'r', dir: 'out', id, peerSeq: 0 }, readerEvent)
      }
      return { changed: true, upTo: seq, unread: await unread(), peerEvent, readerEvent }
    })
  }

  recall (sender: string, id: string, now: number, windowMs: number): Promise<RecallResult> {
    return this.#write(async (tx): Promise<RecallResult> => {
      const record = await tx.get(`ids!${sender}!${id}`)
      if (record === undefined) return { status: 'not_found' }
      const { senderSeq, recipientSeq, to, ts, recalled } = parseIdRecord(record)
      if (recalled) {
        const stored = await tx.get(evKey(sender, senderSeq))
        if (stored === undefined) return { status: 'not_found' }
        return { status: 'recalled', message: stored.slice(stored.indexOf('\n') + 1), senderEvent: undefined, recipientEvent: undefined, to }
      }
      if (now - ts > windowMs) return { status: 'window_expired' }
      const replaceWithTombstone = async (user: string, seq: number): Promise<string> => {
        const stored = (await tx.get(evKey(user, seq)))!
        const body = tombstone(seq, id, sender, to, ts, now)
        tx.put(evKey(user, seq), `${stored.slice(0, stored.indexOf('\n'))}\n${body}`)
        return body
      }
      const addRecallEvent = async (user: string, peer: string, messageSeq: number, dir: LogMeta['dir']): Promise<string> => {
        await this.#trim(tx, user, now)
        const seq = await tx.next(user)
        const event = recallEvent(seq, id, sender, to, messageSeq, now)
        tx.putEvent(user, { seq, ts: now, peer, kind: 'x', dir, id, peerSeq: 0 }, event)
        return event
      }
      const message = await replaceWithTombstone(sender, senderSeq)
      tx.put(`ids!${sender}!${id}`, formatIdRecord({ senderSeq, recipientSeq, to, ts, recalled: true }))
      const senderEvent = await addRecallEvent(sender, to, senderSeq, 'out')
      let recipientEvent: string | undefined
      if (to !== sender) {
        await replaceWithTombstone(to, recipientSeq)
        tx.del(`in!${to}!${sender}!${pad(recipientSeq)}`)
        recipientEvent = await addRecallEvent(to, sender, recipientSeq, 'in')
      }
      return { status: 'recalled', message, senderEvent, recipientEvent, to }
    })
  }

  async #trimNow (user: string): Promise<void> {
    if (this.#keepMs > 0) await this.#write((tx) => this.#trim(tx, user, Date.now()))
  }

  async #eventsAt (user: string, seqs: number[]): Promise<string[]> {
    if (seqs.length === 0) return []
    const values = await this.#db.getMany(seqs.map((seq) => evKey(user, seq)))
    return values.filter((value): value is string => value !== undefined).map((value) => value.slice(value.indexOf('\n') + 1))
  }

  async events (user: string, since: number, limit: number): Promise<Page> {
    await this.#trimNow(user)
    const rows = await this.#db.values({ ...after(`ev!${user}!`, since), limit: limit + 1 }).all()
    return { events: rows.slice(0, limit).map((value) => value.slice(value.indexOf('\n') + 1)), hasMore: rows.length > limit }
  }

  async conversation (user: string, peer: string, range: { before?: number, after?: number, limit: number }): Promise<Page> {
    await this.#trimNow(user)
    const prefix = `c!${user}!${peer}!`
    const keys = await this.#keys(after(prefix, range.after ?? 0, range.before), range.limit + 1, range.after === undefined)
    const hasMore = keys.length > range.limit
    const seqs = keys.slice(0, range.limit).map((key) => Number(key.slice(prefix.length)))
    if (range.after === undefined) seqs.reverse()
    return { events: await this.#eventsAt(user, seqs), hasMore }
  }

  /** How many keys under `prefix` have a seq above `seq` (unread: incoming above the read mark). */
  async #countAfter (prefix: string, seq: number): Promise<number> {
    return (await this.#keys(after(prefix, seq), 1_000_000)).length
  }

  async #unread (user: string, peer: string): Promise<number> {
    return this.#countAfter(`in!${user}!${peer}!`, Number(await this.#db.get(markKey(user, 'read', peer)) ?? 0))
  }

  async conversations (user: string, range: { before?: number, limit: number }): Promise<{ conversations: ConversationSummary[], hasMore: boolean }> {
    await this.#trimNow(user)
    const prefix = `convs!${user}!`
    const all: Array<{ peer: string, lastSeq: number }> = []
    for await (const [key, value] of this.#db.iterator({ gt: prefix, lt: prefix + '~' })) {
      const lastSeq = Number(value)
      if (range.before === undefined || lastSeq < range.before) all.push({ peer: key.slice(prefix.length), lastSeq })
    }
    all.sort((a, b) => b.lastSeq - a.lastSeq)
    const page = all.slice(0, range.limit)
    const mark = async (name: Mark, peer: string): Promise<number> => Number(await this.#db.get(markKey(user, name, peer)) ?? 0)
    const conversations = await Promise.all(page.map(async ({ peer, lastSeq }) => ({
      peer,
      lastSeq,
      lastMessage: (await this.#eventsAt(user, [lastSeq]))[0],
      unread: await this.#unread(user, peer),
      readUpTo: await mark('read', peer),
      peerReadUpTo: await mark('readby', peer),
      peerDeliveredUpTo: await mark('dlvby', peer)
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

  async close (): Promise<void> {
    await this.#queue
    await this.#db.close()
  }
}
