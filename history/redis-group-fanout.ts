// The fan-out of group events into members' logs on Redis: the step after a
// group write, with the group log itself as the outbox. It reads what the
// group log holds past `fanned` and who the members were then, works out each
// event's recipients from the events themselves (a membership event changes
// them), writes members' entries with one script call per slot (all members
// in one call on a single Redis), reports each call to the LogSink, then
// moves `fanned`. A member's mark of the highest gseq applied (per group, in
// their slot) makes a repeat harmless and keeps gseq order, so any number of
// fan-outs of one group may run at once, on any process: the process that
// wrote runs one at once (the fast path), and every process sweeps the
// pending index for what a dead process left.
import type { RedisArchiveMarks } from './redis-archive-source.ts'
import { defineVariadicScript, type RedisClient } from '../storage/redis-client.ts'
import { bySlot } from '../storage/redis-keys.ts'
import type { LogSink } from './log-sink.ts'
import type { GroupKeys } from './redis-group-keys.ts'
import { FANOUT_DONE, FANOUT_READ, MEMBER_APPLY } from './redis-group-scripts.ts'
import type { ReplicaGate } from '../storage/replication.ts'
import { SerialRuns } from './serial-runs.ts'
import { PendingSweep } from './pending-sweep.ts'
import { memberEntry, membershipChange, parseGroupEvent, type StoredGroupEvent } from './group-events.ts'

type Reply = Array<string | number>

interface FanOutRedis {
  groupFanoutRead (...args: Array<string | number>): Promise<Reply>
  groupFanoutDone (...args: Array<string | number>): Promise<number>
  groupMemberApply (...args: Array<string | number>): Promise<number[]>
}

/** Events read per round. */
const ROUND = 100
/** The member keys MEMBER_APPLY takes, in its order. */
const MEMBER_KEY_NAMES = (group: string): string[] => ['seq', 'ev', 'log', `in:g:${group}`, 'convs', 'groups', 'gm', 'ids', 'gres']

interface Waiter { member: string, gseq: number, resolve: (seq: number | undefined) => void, reject: (error: unknown) => void }

interface Run { sink: LogSink, waiters: Waiter[] }

interface Pending { gseq: number, tail: string, event: StoredGroupEvent }

export class RedisGroupFanOut {
  readonly #redis: FanOutRedis
  readonly #keys: GroupKeys
  /** On a cluster one call per slot; on a single Redis one call for everyone. */
  readonly #perSlot: boolean
  /** Once a group is idle, a waiter no run answered was applied by another process's run. */
  readonly #runs = new SerialRuns<Run>((group, run) => this.#loop(group, run), (_group, run) => { for (const waiter of run.waiters.splice(0)) waiter.resolve(undefined) })
  readonly #sweep: PendingSweep

  readonly #replicas: Pick<ReplicaGate, 'after'> | undefined

  /** `replicas`: members' copies count as fanned out only once their replicas hold them (else a failover could lose them). */
  readonly #archive: Pick<RedisArchiveMarks, 'mark'> | undefined

  constructor (redis: RedisClient, keys: GroupKeys, replicas?: Pick<ReplicaGate, 'after'>, archive?: Pick<RedisArchiveMarks, 'mark'>) {
    this.#replicas = replicas
    this.#archive = archive
    redis.defineCommand('groupFanoutRead', { numberOfKeys: 4, lua: FANOUT_READ })
    redis.defineCommand('groupFanoutDone', { numberOfKeys: 4, lua: FANOUT_DONE })
    defineVariadicScript(redis, 'groupMemberApply', MEMBER_APPLY)
    this.#redis = redis as unknown as FanOutRedis
    this.#keys = keys
    this.#perSlot = redis.isCluster
    this.#sweep = new PendingSweep(redis, keys.pendingKeys)
  }

  /**
   * Fans out everything pending in `group`; resolves once a run that started
   * after this call has finished. One run per group at once in this process:
   * calls meanwhile share the next run. `waiter`: resolved with that member's
   * seq for that gseq as soon as their slot has it (undefined if another run applied it).
   */
  run (group: string, sink: LogSink, waiter?: { member: string, gseq: number }): { done: Promise<void>, seq: Promise<number | undefined> } {
    let resolveSeq!: (seq: number | undefined) => void
    let rejectSeq!: (error: unknown) => void
    const seq = new Promise<number | undefined>((resolve, reject) => { resolveSeq = resolve; rejectSeq = reject })
    seq.catch(() => {})
    if (waiter === undefined) resolveSeq(undefined)
    const { done, state } = this.#runs.run(group, () => ({ sink, waiters: [] }))
    if (waiter !== undefined) state.waiters.push({ ...waiter, resolve: resolveSeq, reject: rejectSeq })
    return { done, seq }
  }

  async #loop (group: string, run: Run): Promise<void> {
    try {
      for (;;) {
        const { head, members, pending, upTo } = await this.#read(group)
        const deltas: Array<string | number> = []
        const items = new Map<string, Array<string | number>>()
        const counts = new Map<string, number>()
        const current = new Set(members)
        for (const { gseq, event } of pending) {
          const { joins, leaves } = membershipChange(event)
          for (const user of joins) current.add(user)
          for (const user of leaves) current.delete(user)
          if (joins.length + leaves.length > 0) deltas.push(gseq, joins.length, ...joins, leaves.length, ...leaves)
          const unrecall = event.type === 'recall' ? event.messageGseq : ''
          for (const user of new Set([...current, ...leaves])) {
            const { kind, dir, id } = memberEntry(event, user)
            const op = joins.includes(user) ? 'join' : leaves.includes(user) ? 'leave' : ''
            let list = items.get(user)
            if (list === undefined) items.set(user, list = [])
            list.push(gseq, event.ts, kind, dir, id, op, unrecall)
            counts.set(user, (counts.get(user) ?? 0) + 1)
          }
        }
        const ready = run.waiters.filter((waiter) => waiter.gseq <= upTo)
        const waiting = new Set(ready.map((waiter) => waiter.member))
        // A single Redis takes everyone in one call, the waiting senders in a small one before it.
        const batches = this.#perSlot
          ? bySlot(items.keys(), (user) => this.#keys.member(user, 'seq'))
          : [[...items.keys()].filter((user) => waiting.has(user)), [...items.keys()].filter((user) => !waiting.has(user))].filter((batch) => batch.length > 0)
        const applied = new Map<string, number>()
        const apply = (batch: string[]): Promise<void> => this.#apply(group, batch, items, counts, pending, run.sink, applied)
        // The waiting senders' slots first: their copy is what their PUBACK or REST answer waits for.
        await Promise.all(batches.filter((batch) => batch.some((user) => waiting.has(user))).map(apply))
        for (const waiter of ready) {
          run.waiters.splice(run.waiters.indexOf(waiter), 1)
          waiter.resolve(applied.get(`${waiter.member}|${waiter.gseq}`))
        }
        await Promise.all(batches.filter((batch) => !batch.some((user) => waiting.has(user))).map(apply))
        const keys = ['fanned', 'fm', 'seq'].map((name) => this.#keys.group(group, name))
        await this.#redis.groupFanoutDone(...keys, this.#keys.pending(group), group, upTo, ...deltas)
        if (upTo >= head) return
      }
    } catch (error) {
      for (const waiter of run.waiters.splice(0)) waiter.reject(error)
      throw error
    }
  }

  async #read (group: string): Promise<{ fanned: number, head: number, members: string[], pending: Pending[], upTo: number }> {
    const reply = await this.#redis.groupFanoutRead(...['fanned', 'seq', 'ev', 'fm'].map((name) => this.#keys.group(group, name)), ROUND)
    const fanned = Number(reply[0])
    const count = Number(reply[2])
    const members = reply.slice(3, 3 + count).map(String)
    const pending: Pending[] = []
    reply.slice(3 + count).forEach((tail, i) => {
      const event = parseGroupEvent(String(tail))
      // One gone (never: trimming stops at `fanned`) or unreadable reaches no one.
      if (event !== undefined) pending.push({ gseq: fanned + 1 + i, tail: String(tail), event })
    })
    // `pending` may have holes; the round still covers every gseq read.
    return { fanned, head: Number(reply[1]), members, pending, upTo: fanned + reply.length - 3 - count }
  }

  async #apply (group: string, batch: string[], items: Map<string, Array<string | number>>, counts: Map<string, number>, pending: Pending[], sink: LogSink, applied: Map<string, number>): Promise<void> {
    const names = MEMBER_KEY_NAMES(group)
    const keys = batch.flatMap((user) => names.map((name) => this.#keys.member(user, name)))
    const args = batch.flatMap((user) => [counts.get(user)!, ...items.get(user)!])
    this.#archive?.mark(batch.map((user) => `u:${user}`))
    const reply = await this.#redis.groupMemberApply(keys.length, ...keys, group, batch.length, ...args)
    await this.#replicas?.after(keys[0]!)
    const byGseq = new Map<number, Array<[string, number]>>()
    for (let i = 0; i < reply.length; i += 3) {
      const user = batch[Number(reply[i]) - 1]!
      const gseq = Number(reply[i + 1])
      const seq = Number(reply[i + 2])
      applied.set(`${user}|${gseq}`, seq)
      let list = byGseq.get(gseq)
      if (list === undefined) byGseq.set(gseq, list = [])
      list.push([user, seq])
    }
    for (const { gseq, tail, event } of pending) {
      const recipients = byGseq.get(gseq)
      if (recipients === undefined) continue
      sink.appendedToMembers(tail, recipients)
      if (event.type !== 'message') continue
      for (const [user, seq] of recipients) if (user !== event.from) sink.arrived({ from: event.from, to: user, id: event.id, seq, group })
    }
  }

  /** Completes what dead processes left: groups pending for longer than `graceMs` (pending-sweep.ts). */
  async sweep (sink: LogSink, options: { graceMs?: number, everySlot?: boolean } = {}): Promise<number> {
    const groups = await this.#sweep.due(options)
    const results = await Promise.allSettled(groups.map((group) => this.run(group, sink).done))
    return results.filter((result) => result.status === 'fulfilled').length
  }
}
