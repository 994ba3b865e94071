// The relay on Redis: the step after a write in one user's slot that takes
// what it means for other users (a 1:1 message's recipient copy, a receipt
// for the peer, a recall) to their logs. The writer's outbox is the queue.
//
// Fast path: the process that wrote knows the item it just queued. Items of
// one event-loop turn, from every writer, are applied together (one
// RELAY_APPLY per target slot: one call for all on a single Redis) and then
// marked done (one RELAY_DONE per writer slot), a batch at a time: under
// load a batch holds many messages, so the relay costs a fraction of a
// script per message. An item takes the fast path only when every earlier
// item of its writer is done or in this process's batches; otherwise (and
// for what a dead process left, found by the sweeper) a run reads the
// outbox from its `obdone` and applies it in order.
//
// The target's mark of the highest item applied per origin keeps order, and
// what is already in the target's log makes a repeat harmless, so batches,
// runs and sweeps on any process may overlap.
import type { RedisArchiveMarks } from './redis-archive-source.ts'
import { defineVariadicScript, type RedisClient } from '../storage/redis-client.ts'
import { bySlot } from '../storage/redis-keys.ts'
import type { ReplicaGate } from '../storage/replication.ts'
import type { LogSink } from './log-sink.ts'
import { editTemplate, receiptTail, recallTemplate, tailOf, tombstoneTail } from './events.ts'
import type { ReceiptKind } from './history-store.ts'
import { RELAY_APPLY, RELAY_DONE, RELAY_READ, RELAY_TARGET_KEYS } from './redis-scripts.ts'
import { SerialRuns } from './serial-runs.ts'
import { PendingSweep } from './pending-sweep.ts'

/** Key names the relay needs: a user's keys, and the pending index of a user's slot. */
export interface RelayKeys {
  user (user: string, name: string): string
  pending (user: string): string
  pendingKeys (): string[]
}

interface RelayRedis {
  relayRead (...args: Array<string | number>): Promise<Array<string | number>>
  relayApply (...args: Array<string | number>): Promise<number[]>
  relayDone (...args: Array<string | number>): Promise<number>
}

/** Outbox items read per round of a run. */
const ROUND = 200

/** One outbox item, with the bytes it will append (the seq is the target's). */
export type RelayItem =
  | { origin: string, no: number, kind: 'm', to: string, id: string, ts: number, senderSeq: number, tail: string, newConversation: boolean }
  | { origin: string, no: number, kind: 'r', to: string, id: string, ts: number, receipt: ReceiptKind, upTo: number, tail: string }
  | { origin: string, no: number, kind: 'x', to: string, id: string, ts: number, messageTs: number, pre: string, post: string, tombstone: string }
  /** An edit: `tail` is the edited message's (seq-independent), the edit event is made from it. */
  | { origin: string, no: number, kind: 'e', to: string, id: string, ts: number, tail: string, pre: string, post: string }

type Fields<K extends RelayItem['kind']> = Omit<Extract<RelayItem, { kind: K }>, 'origin' | 'no' | 'kind' | 'tail' | 'pre' | 'post' | 'tombstone'>

/** The items a writer queues, built from what it knows (the same bytes a run rebuilds from the outbox). */
export const relayItem = {
  message: (origin: string, no: number, fields: Fields<'m'> & { tail: string }): RelayItem => ({ origin, no, kind: 'm', ...fields }),
  receipt: (origin: string, no: number, fields: Fields<'r'>): RelayItem =>
    ({ origin, no, kind: 'r', ...fields, tail: receiptTail(fields.receipt, origin, origin, fields.upTo, fields.id, fields.ts) }),
  recall: (origin: string, no: number, fields: Fields<'x'>): RelayItem =>
    ({ origin, no, kind: 'x', ...fields, ...recallTemplate(fields.id, origin, fields.to, fields.ts), tombstone: tombstoneTail(fields.id, origin, fields.to, fields.messageTs, fields.ts) }),
  edit: (origin: string, no: number, to: string, tail: string): RelayItem => {
    const { id, body, editedAt } = JSON.parse(`{${tail}`) as { id: string, body: unknown, editedAt: number }
    return { origin, no, kind: 'e', to, id, ts: editedAt, tail, ...editTemplate(id, origin, to, editedAt, body) }
  }
}

/** An edit's outbox item: the edited message's tail last, since it may hold `|`. */
export function editItemText (to: string, tail: string): string {
  return `e|${to}|${tail}`
}

/** An outbox item as stored (`kind|to|…`), with the sender's stored event for a message. */
function decode (origin: string, no: number, text: string, stored: string): RelayItem | undefined {
  if (text.startsWith('e|')) {
    const at = text.indexOf('|', 2)
    return relayItem.edit(origin, no, text.slice(2, at), text.slice(at + 1))
  }
  const f = text.split('|')
  const to = f[1]!
  if (f[0] === 'm') {
    // Gone: retention never trims what the outbox still needs, so only damaged data gets here.
    if (stored === '') return undefined
    return relayItem.message(origin, no, { to, senderSeq: Number(f[2]), id: f[3]!, ts: Number(f[4]), tail: tailOf(stored), newConversation: f[5] === '1' })
  }
  if (f[0] === 'r') return relayItem.receipt(origin, no, { to, receipt: f[2] as ReceiptKind, upTo: Number(f[3]), id: f[4]!, ts: Number(f[5]) })
  if (f[0] === 'x') return relayItem.recall(origin, no, { to, id: f[2]!, messageTs: Number(f[3]), ts: Number(f[4]) })
  return undefined
}

function args (item: RelayItem): Array<string | number> {
  switch (item.kind) {
    case 'm': return [item.no, 'm', item.ts, item.id, item.senderSeq, '', item.tail, '']
    case 'r': return [item.no, 'r', item.ts, item.id, item.receipt, item.upTo, item.tail, '']
    case 'x': return [item.no, 'x', item.ts, item.id, '', item.tombstone, item.pre, item.post]
    case 'e': return [item.no, 'e', item.ts, item.id, '', item.tail, item.pre, item.post]
  }
}

interface Batch { items: Array<{ item: RelayItem, sink: LogSink }>, done: Promise<void>, resolve: () => void }

export class RedisRelay {
  readonly #redis: RelayRedis & RedisClient
  readonly #keys: RelayKeys
  readonly #perSlot: boolean
  readonly #replicas: Pick<ReplicaGate, 'after'> | undefined
  readonly #onError: (error: unknown) => void
  readonly #runs = new SerialRuns<{ sink: LogSink }>((origin, state) => this.#loop(origin, state))
  /** Per writer: the highest item this process has applied or queued with every earlier one (the fast path's condition). */
  readonly #ahead = new Map<string, number>()
  #next: Batch | undefined
  #flushing: Promise<void> = Promise.resolve()
  readonly #sweep: PendingSweep
  readonly #archive: Pick<RedisArchiveMarks, 'mark'> | undefined

  /**
   * `replicas`: an item is marked done only once the target's replicas hold its copy (else a failover
   * could lose it). `onError`: a batch failed; its writers' items are left to a run (the sweeper retries).
   */
  constructor (redis: RedisClient, keys: RelayKeys, { replicas, onError = () => {}, archive }: { replicas?: Pick<ReplicaGate, 'after'>, onError?: (error: unknown) => void, archive?: Pick<RedisArchiveMarks, 'mark'> } = {}) {
    redis.defineCommand('relayRead', { numberOfKeys: 4, lua: RELAY_READ })
    defineVariadicScript(redis, 'relayApply', RELAY_APPLY)
    defineVariadicScript(redis, 'relayDone', RELAY_DONE)
    this.#redis = redis as RelayRedis & RedisClient
    this.#keys = keys
    this.#perSlot = redis.isCluster
    this.#replicas = replicas
    this.#onError = onError
    this.#archive = archive
    this.#sweep = new PendingSweep(redis, keys.pendingKeys)
  }

  /**
   * A writer queued `item` in its outbox, whose `obdone` was `done` at that moment: relay it now.
   * Resolves once it is in its target's log (or left to a run, which then has it).
   */
  relay (item: RelayItem, done: number, sink: LogSink): Promise<void> {
    const ahead = Math.max(done, this.#ahead.get(item.origin) ?? 0)
    if (item.no !== ahead + 1 || this.#runs.has(item.origin)) return this.run(item.origin, sink)
    this.#ahead.set(item.origin, item.no)
    if (this.#next === undefined) {
      let resolve!: () => void
      const flushed = new Promise<void>((res) => { resolve = res })
      const batch: Batch = { items: [], done: flushed, resolve }
      this.#next = batch
      // Every item of this turn joins; the batch starts once the one before it has finished.
      queueMicrotask(() => {
        this.#flushing = this.#flushing.then(() => {
          if (this.#next === batch) this.#next = undefined
          return this.#flush(batch)
        })
      })
    }
    this.#next.items.push({ item, sink })
    return this.#next.done
  }

  async #flush (batch: Batch): Promise<void> {
    // Per writer: its last item in this batch (items come in order), and a sink to report to.
    const last = new Map<string, { no: number, sink: LogSink }>()
    for (const { item, sink } of batch.items) last.set(item.origin, { no: item.no, sink })
    try {
      await this.#apply(batch.items)
      await this.#done([...last].map(([origin, { no }]) => [origin, no]))
    } catch (error) {
      this.#onError(error)
      // Whatever this batch did not finish, a run finishes from the outbox.
      for (const origin of last.keys()) this.#ahead.delete(origin)
      for (const [origin, { sink }] of last) this.run(origin, sink).catch(this.#onError)
    } finally {
      // A writer with nothing queued after this batch: the next item checks against `obdone` again.
      for (const [origin, { no }] of last) if (this.#ahead.get(origin) === no) this.#ahead.delete(origin)
      batch.resolve()
    }
  }

  /**
   * Relays everything pending in `origin`'s outbox; resolves once a run that
   * started after this call has finished. One run per origin at once in this
   * process (after the batches already queued: they may hold its earlier items).
   */
  run (origin: string, sink: LogSink): Promise<void> {
    return this.#runs.run(origin, () => ({ sink }), this.#flushing).done
  }

  /** Resolves once every batch and run in this process (and any queued behind them) has ended. */
  async idle (): Promise<void> {
    for (;;) {
      const flushing = this.#flushing
      await Promise.allSettled([flushing, ...(this.#next === undefined ? [] : [this.#next.done]), this.#runs.idle()])
      if (this.#next === undefined && this.#runs.size === 0 && flushing === this.#flushing) return
    }
  }

  async #loop (origin: string, { sink }: { sink: LogSink }): Promise<void> {
    const key = (name: string): string => this.#keys.user(origin, name)
    for (;;) {
      const reply = await this.#redis.relayRead(key('obdone'), key('obseq'), key('ob'), key('ev'), ROUND)
      const done = Number(reply[0])
      const head = Number(reply[1])
      const items: RelayItem[] = []
      for (let i = 2; i < reply.length; i += 2) {
        const item = decode(origin, done + i / 2, String(reply[i]), String(reply[i + 1]))
        if (item !== undefined) items.push(item)
      }
      const upTo = done + (reply.length - 2) / 2
      await this.#apply(items.map((item) => ({ item, sink })))
      await this.#done([[origin, upTo]])
      if (upTo >= head) return
    }
  }

  /** One RELAY_APPLY per target slot (one for all on a single Redis), blocks of (target, origin) in item order. */
  async #apply (entries: Array<{ item: RelayItem, sink: LogSink }>): Promise<void> {
    if (entries.length === 0) return
    const blocks = new Map<string, { target: string, origin: string, entries: Array<{ item: RelayItem, sink: LogSink }> }>()
    for (const entry of entries) {
      const id = `${entry.item.to}\n${entry.item.origin}`
      let block = blocks.get(id)
      if (block === undefined) blocks.set(id, block = { target: entry.item.to, origin: entry.item.origin, entries: [] })
      block.entries.push(entry)
    }
    const all = [...blocks.values()]
    const batches = this.#perSlot ? bySlot(all, ({ target }) => this.#keys.user(target, 'seq')) : [all]
    await Promise.all(batches.map(async (batch) => {
      const keys = batch.flatMap(({ target, origin }) => [
        ...RELAY_TARGET_KEYS.map((name) => this.#keys.user(target, name)),
        this.#keys.user(target, `c:${origin}`),
        this.#keys.user(target, `in:${origin}`)
      ])
      const argv = batch.flatMap(({ origin, entries: list }) => [origin, list.length, ...list.flatMap(({ item }) => args(item))])
      this.#archive?.mark(batch.map(({ target }) => `u:${target}`))
      const reply = await this.#redis.relayApply(keys.length, ...keys, batch.length, ...argv)
      await this.#replicas?.after(keys[0]!)
      for (let i = 0; i < reply.length; i += 4) {
        const block = batch[Number(reply[i]) - 1]!
        const no = Number(reply[i + 1])
        const seq = Number(reply[i + 2])
        const { item, sink } = block.entries.find((candidate) => candidate.item.no === no)!
        if (item.kind === 'x' || item.kind === 'e') {
          sink.appended(item.to, `{"seq":${seq},${item.pre}${Number(reply[i + 3])}${item.post}`)
          continue
        }
        sink.appended(item.to, `{"seq":${seq},${item.tail}`)
        if (item.kind === 'm') sink.arrived({ from: item.origin, to: item.to, id: item.id, seq, ...(item.newConversation ? { newConversation: true } : {}) })
      }
    }))
  }

  /** Marks each origin's items up to its number done: one RELAY_DONE per origin slot (one for all on a single Redis). */
  async #done (marks: Array<[string, number]>): Promise<void> {
    const batches = this.#perSlot ? bySlot(marks, ([origin]) => this.#keys.user(origin, 'obdone')) : [marks]
    await Promise.all(batches.map((batch) => {
      const keys = batch.flatMap(([origin]) => [this.#keys.user(origin, 'obdone'), this.#keys.user(origin, 'ob'), this.#keys.user(origin, 'obseq'), this.#keys.pending(origin)])
      return this.#redis.relayDone(keys.length, ...keys, ...batch.flatMap(([origin, upTo]) => [origin, upTo]))
    }))
  }

  /** Completes what dead processes left: writers pending for longer than `graceMs` (pending-sweep.ts). */
  async sweep (sink: LogSink, options: { graceMs?: number, everySlot?: boolean } = {}): Promise<number> {
    const origins = await this.#sweep.due(options)
    const results = await Promise.allSettled(origins.map((origin) => this.run(origin, sink)))
    return results.filter((result) => result.status === 'fulfilled').length
  }
}
