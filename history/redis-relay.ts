// The relay on Redis: the step after a write in one user's slot that takes
// what it means for other users (a 1:1 message's recipient copy, a receipt
// for the peer, a recall) to their logs. The writer's outbox is the queue: a
// run reads the items past `obdone`, groups them by target, applies them with
// one RELAY_APPLY per target slot (all targets in one call on a single
// Redis), reports each appended event to the LogSink, then moves `obdone`.
// The target's mark of the highest item applied per origin makes a repeat
// harmless and keeps order, so runs may overlap: the writing process starts
// one at once (the fast path, after the writer's call has returned), and
// every process sweeps the pending index for what a dead process left.
import { defineVariadicScript, type RedisClient } from '../storage/redis-client.ts'
import { bySlot } from '../storage/redis-keys.ts'
import type { LogSink } from './log-sink.ts'
import { receiptTail, recallTemplate, tailOf, tombstoneTail } from './events.ts'
import type { ReceiptKind } from './history-store.ts'
import { RELAY_APPLY, RELAY_DONE, RELAY_READ, RELAY_TARGET_KEYS } from './redis-scripts.ts'

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

/** Outbox items read per round. */
const ROUND = 200

/** One outbox item, decoded, with the bytes it will append (the seq is the target's). */
type Item =
  | { no: number, kind: 'm', to: string, id: string, ts: number, senderSeq: number, tail: string, newConversation: boolean }
  | { no: number, kind: 'r', to: string, id: string, ts: number, receipt: ReceiptKind, upTo: number, tail: string }
  | { no: number, kind: 'x', to: string, id: string, ts: number, messageTs: number, pre: string, post: string, tombstone: string }

function decode (no: number, origin: string, text: string, stored: string): Item | undefined {
  const f = text.split('|')
  const to = f[1]!
  if (f[0] === 'm') {
    // Gone: retention never trims what the outbox still needs, so only damaged data gets here.
    if (stored === '') return undefined
    return { no, kind: 'm', to, senderSeq: Number(f[2]), id: f[3]!, ts: Number(f[4]), tail: tailOf(stored), newConversation: f[5] === '1' }
  }
  if (f[0] === 'r') {
    const receipt = f[2] as ReceiptKind
    const upTo = Number(f[3])
    const id = f[4]!
    const ts = Number(f[5])
    return { no, kind: 'r', to, id, ts, receipt, upTo, tail: receiptTail(receipt, origin, origin, upTo, id, ts) }
  }
  if (f[0] === 'x') {
    const id = f[2]!
    const messageTs = Number(f[3])
    const ts = Number(f[4])
    return { no, kind: 'x', to, id, ts, messageTs, ...recallTemplate(id, origin, to, ts), tombstone: tombstoneTail(id, origin, to, messageTs, ts) }
  }
  return undefined
}

function args (item: Item): Array<string | number> {
  switch (item.kind) {
    case 'm': return [item.no, 'm', item.ts, item.id, item.senderSeq, '', item.tail, '']
    case 'r': return [item.no, 'r', item.ts, item.id, item.receipt, item.upTo, item.tail, '']
    case 'x': return [item.no, 'x', item.ts, item.id, '', item.tombstone, item.pre, item.post]
  }
}

interface Run { sink: LogSink, current: Promise<void>, again: { promise: Promise<void>, resolve: () => void, reject: (e: unknown) => void } | undefined }

export class RedisRelay {
  readonly #redis: RelayRedis & RedisClient
  readonly #keys: RelayKeys
  readonly #perSlot: boolean
  readonly #runs = new Map<string, Run>()
  #sweepFrom = 0

  constructor (redis: RedisClient, keys: RelayKeys) {
    redis.defineCommand('relayRead', { numberOfKeys: 4, lua: RELAY_READ })
    defineVariadicScript(redis, 'relayApply', RELAY_APPLY)
    redis.defineCommand('relayDone', { numberOfKeys: 4, lua: RELAY_DONE })
    this.#redis = redis as RelayRedis & RedisClient
    this.#keys = keys
    this.#perSlot = redis.isCluster
  }

  /**
   * Relays everything pending in `origin`'s outbox; resolves once a run that
   * started after this call has finished. One run per origin at once in this
   * process: calls meanwhile share the next run.
   */
  run (origin: string, sink: LogSink): Promise<void> {
    const run = this.#runs.get(origin)
    if (run === undefined) {
      const fresh: Run = { sink, current: Promise.resolve(), again: undefined }
      this.#runs.set(origin, fresh)
      fresh.current = this.#loop(origin, fresh).finally(() => this.#next(origin))
      return fresh.current
    }
    if (run.again === undefined) {
      let resolve!: () => void
      let reject!: (error: unknown) => void
      const promise = new Promise<void>((res, rej) => { resolve = res; reject = rej })
      promise.catch(() => {})
      run.again = { promise, resolve, reject }
    }
    return run.again.promise
  }

  #next (origin: string): void {
    const run = this.#runs.get(origin)!
    const again = run.again
    if (again === undefined) {
      this.#runs.delete(origin)
      return
    }
    run.again = undefined
    run.current = this.#loop(origin, run).finally(() => this.#next(origin))
    run.current.then(again.resolve, again.reject)
  }

  /** Resolves once every run in this process (and any queued behind it) has ended. */
  async idle (): Promise<void> {
    while (this.#runs.size > 0) await Promise.allSettled([...this.#runs.values()].map((run) => run.again?.promise ?? run.current))
  }

  async #loop (origin: string, run: Run): Promise<void> {
    const key = (name: string): string => this.#keys.user(origin, name)
    for (;;) {
      const reply = await this.#redis.relayRead(key('obdone'), key('obseq'), key('ob'), key('ev'), ROUND)
      const done = Number(reply[0])
      const head = Number(reply[1])
      const items: Item[] = []
      for (let i = 2; i < reply.length; i += 2) {
        const item = decode(done + i / 2, origin, String(reply[i]), String(reply[i + 1]))
        if (item !== undefined) items.push(item)
      }
      const upTo = done + (reply.length - 2) / 2
      await this.#apply(origin, items, run.sink)
      await this.#redis.relayDone(key('obdone'), key('ob'), key('obseq'), this.#keys.pending(origin), origin, upTo)
      if (upTo >= head) return
    }
  }

  async #apply (origin: string, items: Item[], sink: LogSink): Promise<void> {
    const byTarget = new Map<string, Item[]>()
    for (const item of items) {
      let list = byTarget.get(item.to)
      if (list === undefined) byTarget.set(item.to, list = [])
      list.push(item)
    }
    const targets = [...byTarget.keys()]
    const batches = this.#perSlot ? bySlot(targets, (user) => this.#keys.user(user, 'seq')) : [targets]
    await Promise.all(batches.map(async (batch) => {
      const keys = batch.flatMap((target) => [
        ...RELAY_TARGET_KEYS.map((name) => this.#keys.user(target, name)),
        this.#keys.user(target, `c:${origin}`),
        this.#keys.user(target, `in:${origin}`)
      ])
      const argv = batch.flatMap((target) => { const list = byTarget.get(target)!; return [list.length, ...list.flatMap(args)] })
      const reply = await this.#redis.relayApply(keys.length, ...keys, origin, batch.length, ...argv)
      for (let i = 0; i < reply.length; i += 4) {
        const target = batch[Number(reply[i]) - 1]!
        const no = Number(reply[i + 1])
        const seq = Number(reply[i + 2])
        const item = byTarget.get(target)!.find((candidate) => candidate.no === no)!
        if (item.kind === 'x') {
          sink.appended(target, `{"seq":${seq},${item.pre}${Number(reply[i + 3])}${item.post}`)
          continue
        }
        sink.appended(target, `{"seq":${seq},${item.tail}`)
        if (item.kind === 'm') sink.arrived({ from: origin, to: target, id: item.id, seq, ...(item.newConversation ? { newConversation: true } : {}) })
      }
    }))
  }

  /**
   * Completes what dead processes left: origins pending for longer than
   * `graceMs`. A single Redis has one index; a cluster one per slot, of which
   * one call looks at 1,024 in turn (all 16,384 with `everySlot`).
   */
  async sweep (sink: LogSink, { graceMs = 2000, everySlot = false }: { graceMs?: number, everySlot?: boolean } = {}): Promise<number> {
    const all = this.#keys.pendingKeys()
    let keys = all
    if (!everySlot && all.length > 1024) {
      keys = all.slice(this.#sweepFrom, this.#sweepFrom + 1024)
      this.#sweepFrom = (this.#sweepFrom + 1024) % all.length
    }
    const found = await Promise.all(keys.map((key) => this.#redis.zrangebyscore(key, '-inf', Date.now() - graceMs, 'LIMIT', 0, 100)))
    const origins = found.flat()
    const results = await Promise.allSettled(origins.map((origin) => this.run(origin, sink)))
    return results.filter((result) => result.status === 'fulfilled').length
  }
}
