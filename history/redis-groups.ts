// Groups on Redis (one server or a cluster): the group's scripts touch the
// group's keys only (history/redis-group-scripts.ts); members' logs are
// written by the fan-out (history/redis-group-fanout.ts), one call per slot.
// MAX_GROUPS_PER_USER is kept by reserving a place in each joining user's
// slot before the group's change (released if the change is refused or
// stale; taken by the fan-out's join; a reservation lapses after RESERVE_MS).
import type { RedisArchiveMarks } from './redis-archive-source.ts'
import { defineVariadicScript, type RedisClient } from '../storage/redis-client.ts'
import { bySlot } from '../storage/redis-keys.ts'
import type { GroupReadResult, Group, GroupAppend, GroupChange, GroupMessageResult, GroupPage, GroupRetentionHook, GroupStore, Role } from './group-store.ts'
import { GroupsFull, REMOVE_PAST_RETENTION, groupPeer, visibleWindow } from './group-store.ts'
import { GROUP_CHANGE, GROUP_CREATE, GROUP_DELIVERED, GROUP_MARKS, GROUP_MESSAGE, GROUP_TRIM, MEMBER_READ, MEMBER_RESERVE } from './redis-group-scripts.ts'
import { redisKeys, type GroupKeys } from './redis-group-keys.ts'
import { RedisGroupFanOut } from './redis-group-fanout.ts'
import { groupEventTail, groupEventTemplate, groupReadReceiptTail, type GroupEvent, type GroupMessageEvent } from './group-events.ts'
import { MAX_EDITS_PER_MESSAGE } from './events.ts'
import type { LogSink } from './log-sink.ts'
import type { ReplicaGate } from '../storage/replication.ts'

type Reply = Array<string | number | null>

interface ScriptedRedis {
  groupCreate (...args: Array<string | number>): Promise<Reply>
  groupChange (...args: Array<string | number>): Promise<Reply>
  groupMessage (...args: Array<string | number>): Promise<Reply>
  groupMarks (...args: Array<string | number>): Promise<number>
  groupDelivered (...args: Array<string | number>): Promise<number>
  groupTrim (...args: Array<string | number>): Promise<number>
  groupMemberRead (...args: Array<string | number>): Promise<Reply>
  groupMemberReserve (...args: Array<string | number>): Promise<string>
}

/** How long a reserved place for a join holds if its fan-out never comes (the sweeper completes one within seconds). */
export const RESERVE_MS = 5 * 60_000

export interface RedisGroupsOptions {
  /** History retention, applied to group logs too (0 keeps them forever). */
  keepMs?: number
  /** Key names (shared with the history store); by default the cluster's scheme, per slot on a cluster. */
  keys?: GroupKeys
  retention?: GroupRetentionHook
  /** Off only in tests: a write then leaves its fan-out to the sweeper, as a process dying right after it would. */
  fastPath?: boolean
  /** A background fan-out failed (the sweeper retries it). */
  onError?: (error: unknown) => void
  /** REDIS_WAIT_REPLICAS: a group write is acknowledged (and a member's copy counted as fanned out) only once replicas hold it. */
  replicas?: Pick<ReplicaGate, 'after'>
  /** Set when an archive follows the logs: every write marks its owners pending first (history/redis-archive-source.ts). */
  archive?: Pick<RedisArchiveMarks, 'mark'>
}

export class RedisGroups implements GroupStore {
  readonly #redis: RedisClient & ScriptedRedis
  readonly #keepMs: number
  readonly #keys: GroupKeys
  readonly #retention: GroupRetentionHook
  readonly #fastPath: boolean
  readonly #onError: (error: unknown) => void
  readonly #fanOut: RedisGroupFanOut
  readonly #perSlot: boolean
  readonly #replicas: Pick<ReplicaGate, 'after'>
  readonly #archive: Pick<RedisArchiveMarks, 'mark'> | undefined

  constructor (redis: RedisClient, options: RedisGroupsOptions | number = {}) {
    const { keepMs = 0, keys = redisKeys(redis.isCluster), retention = REMOVE_PAST_RETENTION, fastPath = true, onError = () => {}, replicas = { after: async () => {} }, archive } = typeof options === 'number' ? { keepMs: options } : options
    this.#archive = archive
    this.#replicas = replicas
    this.#keepMs = keepMs
    this.#keys = keys
    this.#retention = retention
    this.#fastPath = fastPath
    this.#onError = onError
    this.#perSlot = redis.isCluster
    redis.defineCommand('groupCreate', { numberOfKeys: 7, lua: GROUP_CREATE })
    redis.defineCommand('groupChange', { numberOfKeys: 8, lua: GROUP_CHANGE })
    redis.defineCommand('groupMessage', { numberOfKeys: 7, lua: GROUP_MESSAGE })
    redis.defineCommand('groupMarks', { numberOfKeys: 2, lua: GROUP_MARKS })
    defineVariadicScript(redis, 'groupDelivered', GROUP_DELIVERED)
    redis.defineCommand('groupTrim', { numberOfKeys: 5, lua: GROUP_TRIM })
    redis.defineCommand('groupMemberRead', { numberOfKeys: 5, lua: MEMBER_READ })
    redis.defineCommand('groupMemberReserve', { numberOfKeys: 2, lua: MEMBER_RESERVE })
    this.#redis = redis as RedisClient & ScriptedRedis
    this.#fanOut = new RedisGroupFanOut(redis, keys, replicas, archive)
  }

  #g (group: string, ...names: string[]): string[] {
    return names.map((name) => this.#keys.group(group, name))
  }

  async getGroup (id: string): Promise<Group | undefined> {
    const [info, members] = await Promise.all([this.#redis.hgetall(this.#keys.group(id, 'info')), this.#redis.hgetall(this.#keys.group(id, 'm'))])
    if (info.v === undefined) return undefined
    return {
      id,
      name: info.name!,
      meta: info.meta ? JSON.parse(info.meta) as Record<string, unknown> : undefined,
      creator: info.creator!,
      createdAt: Number(info.createdAt),
      version: Number(info.v),
      members: new Map(Object.entries(members) as Array<[string, Role]>)
    }
  }

  /** A place in each user's groups for joining `group`, in their own slot: the ones newly reserved (to release if the change does not land). */
  async #reserve (group: string, users: string[], limit: number): Promise<string[]> {
    if (limit <= 0 || users.length === 0) return []
    const now = Date.now()
    const replies = await Promise.all(users.map((user) =>
      this.#redis.groupMemberReserve(this.#keys.member(user, 'groups'), this.#keys.member(user, 'gres'), group, limit, now, RESERVE_MS)))
    const reserved = users.filter((_, i) => replies[i] === 'new')
    const full = users.filter((_, i) => replies[i] === 'full')
    if (full.length > 0) {
      await this.#release(group, reserved)
      throw new GroupsFull(full)
    }
    return reserved
  }

  async #release (group: string, users: string[]): Promise<void> {
    await Promise.all(users.map((user) => this.#redis.hdel(this.#keys.member(user, 'gres'), group)))
  }

  async createGroup (group: Parameters<GroupStore['createGroup']>[0], event: GroupEvent, sink: LogSink, maxGroupsPerUser = 0): Promise<GroupAppend> {
    const reserved = await this.#reserve(group.id, group.members.map(({ user }) => user), maxGroupsPerUser)
    const { pre, post } = groupEventTemplate(event)
    let reply: Reply
    try {
      this.#archive?.mark([`g:${group.id}`])
      reply = await this.#redis.groupCreate(...this.#g(group.id, 'info', 'm', 'j', 'seq', 'ev', 'fanned'), this.#keys.pending(group.id),
        group.id, group.creator, group.createdAt, group.name, group.meta === undefined ? '' : JSON.stringify(group.meta), pre, post, Date.now(),
        ...group.members.flatMap(({ user, role }) => [user, role]))
    } catch (error) {
      await this.#release(group.id, reserved)
      throw error
    }
    if (reply[0] === 'exists') {
      await this.#release(group.id, reserved)
      throw new Error(`group ${group.id} exists`)
    }
    await this.#replicas.after(this.#keys.group(group.id, 'seq'))
    await this.#fanOutNow(group.id, sink)
    return { gseq: Number(reply[1]) }
  }

  async changeGroup (id: string, expectedVersion: number, change: GroupChange, event: GroupEvent, sink: LogSink, maxGroupsPerUser = 0): Promise<GroupAppend | 'stale' | 'too_many_edits'> {
    const upsert = change.upsert ?? []
    const remove = change.remove ?? []
    const reserved = await this.#reserve(id, upsert.map(({ user }) => user), maxGroupsPerUser)
    const { pre, post } = groupEventTemplate(event)
    let reply: Reply
    try {
      this.#archive?.mark([`g:${id}`])
      reply = await this.#redis.groupChange(...this.#g(id, 'info', 'm', 'j', 'seq', 'ev', 'fanned', 'fm'), this.#keys.pending(id),
        id, expectedVersion, pre, post,
        change.name === undefined ? '0' : '1', change.name ?? '',
        change.meta === undefined ? '0' : '1', change.meta === null || change.meta === undefined ? '' : JSON.stringify(change.meta),
        change.replace === undefined ? '' : change.replace.gseq, change.replace === undefined ? '' : groupEventTail(change.replace.event, change.replace.gseq), Date.now(),
        change.editOf ?? '', change.scrubEditsOf ?? '', MAX_EDITS_PER_MESSAGE,
        upsert.length, ...upsert.flatMap(({ user, role }) => [user, role]), remove.length, ...remove)
    } catch (error) {
      await this.#release(id, reserved)
      throw error
    }
    if (reply[0] === 'stale' || reply[0] === 'too_many') {
      await this.#release(id, reserved)
      return reply[0] === 'stale' ? 'stale' : 'too_many_edits'
    }
    await this.#replicas.after(this.#keys.group(id, 'seq'))
    await this.#fanOutNow(id, sink)
    return { gseq: Number(reply[1]) }
  }

  /** Membership changes wait for their fan-out: the actor's next read sees them. */
  async #fanOutNow (group: string, sink: LogSink): Promise<void> {
    if (this.#fastPath) await this.#fanOut.run(group, sink).done
  }

  async appendGroupMessage (message: GroupMessageEvent, sink: LogSink): Promise<GroupMessageResult> {
    const { group, from, id } = message
    const { pre, post } = groupEventTemplate(message)
    this.#archive?.mark([`g:${group}`])
    const reply = await this.#redis.groupMessage(...this.#g(group, 'm', 'seq', 'ev', 'gids', 'fanned', 'fm'), this.#keys.pending(group),
      group, from, id, pre, post, Date.now())
    if (reply[0] === 'not_a_member') return { status: 'not_a_member' }
    await this.#replicas.after(this.#keys.group(group, 'seq'))
    const gseq = Number(reply[1])
    if (!this.#fastPath) return reply[0] === 'duplicate' ? { status: 'duplicate', senderEvent: undefined } : { status: 'stored', gseq, senderEvent: undefined }
    const run = this.#fanOut.run(group, sink, { member: from, gseq })
    run.done.catch(this.#onError)
    const seq = await run.seq
    if (reply[0] === 'duplicate') {
      await run.done
      return { status: 'duplicate', senderEvent: await this.#senderEvent(from, group, id, gseq) }
    }
    return { status: 'stored', gseq, senderEvent: seq === undefined ? await this.#senderEvent(from, group, id, gseq) : `{"seq":${seq},${groupEventTail(message, gseq)}` }
  }

  /** The sender's copy of their message, from their record of the id (written by the fan-out). */
  async #senderEvent (from: string, group: string, id: string, gseq: number): Promise<string | undefined> {
    const [record, tail] = await Promise.all([this.#redis.hget(this.#keys.member(from, 'ids'), id), this.#redis.hget(this.#keys.group(group, 'ev'), String(gseq))])
    if (record === null || tail === null) return undefined
    const [seq, recordGseq, peer] = record.split('|')
    return recordGseq === String(gseq) && peer === groupPeer(group) ? `{"seq":${seq},${tail}` : undefined
  }

  sweepFanOut (sink: LogSink, options?: { graceMs?: number, everySlot?: boolean }): Promise<number> {
    return this.#fanOut.sweep(sink, options)
  }

  async trimGroup (group: string, now = Date.now()): Promise<number> {
    if (this.#keepMs <= 0) return 0
    const upTo = await this.#retention.removableUpTo(group)
    return this.#redis.groupTrim(...this.#g(group, 'low', 'seq', 'ev', 'gids', 'fanned'), now - this.#keepMs, Math.min(upTo, Number.MAX_SAFE_INTEGER))
  }

  async historyBounds (id: string, member: string): Promise<{ joined: number, low: number, head: number } | 'not_a_member'> {
    const [joined, head, low] = await Promise.all([this.#redis.hget(this.#keys.group(id, 'j'), member), this.#redis.get(this.#keys.group(id, 'seq')), this.#redis.get(this.#keys.group(id, 'low'))])
    if (joined === null) return 'not_a_member'
    return { joined: Number(joined), low: Number(low ?? 1), head: Number(head ?? 0) }
  }

  async groupEvents (id: string, member: string, range: { before?: number, after?: number, limit: number }): Promise<GroupPage | 'not_a_member'> {
    const [joined, head, low] = await Promise.all([this.#redis.hget(this.#keys.group(id, 'j'), member), this.#redis.get(this.#keys.group(id, 'seq')), this.#redis.get(this.#keys.group(id, 'low'))])
    if (joined === null) return 'not_a_member'
    // Nothing before `low` exists any more (retention): pages stop there.
    const window = visibleWindow(Math.max(Number(joined), Number(low ?? 1) - 1), Number(head ?? 0), range)
    if (window.to < window.from) return { events: [], hasMore: window.hasMore }
    const gseqs = Array.from({ length: window.to - window.from + 1 }, (_, i) => String(window.from + i))
    const tails = await this.#redis.hmget(this.#keys.group(id, 'ev'), ...gseqs)
    return { events: tails.filter((tail): tail is string => tail !== null).map((tail) => `{${tail}`), hasMore: window.hasMore }
  }

  async setMute (group: string, user: string, until: number | undefined): Promise<void> {
    if (until === undefined) await this.#redis.hdel(this.#keys.group(group, 'mute'), user)
    else await this.#redis.hset(this.#keys.group(group, 'mute'), user, until)
  }

  async mutedUntil (group: string, user: string): Promise<number | undefined> {
    const value = await this.#redis.hget(this.#keys.group(group, 'mute'), user)
    return value === null ? undefined : Number(value)
  }

  async groupEvent (group: string, gseq: number): Promise<string | undefined> {
    return (await this.#redis.hget(this.#keys.group(group, 'ev'), String(gseq))) ?? undefined
  }

  async groupsOf (user: string): Promise<string[]> {
    return this.#redis.smembers(this.#keys.member(user, 'groups'))
  }

  /** Two owners, two steps: the reader's mark and receipt (their slot), then the group's marks (max: a retry is harmless). */
  async markGroupRead (group: string, user: string, gseq: number, ts: number): Promise<GroupReadResult | 'not_a_member'> {
    const [role, head] = await Promise.all([this.#redis.hget(this.#keys.group(group, 'm'), user), this.#redis.get(this.#keys.group(group, 'seq'))])
    if (role === null) return 'not_a_member'
    const peer = groupPeer(group)
    const upTo = Math.max(0, Math.min(gseq, Number(head ?? 0)))
    const member = (name: string): string => this.#keys.member(user, name)
    this.#archive?.mark([`u:${user}`])
    const reply = await this.#redis.groupMemberRead(member('read'), member(`in:${peer}`), member('seq'), member('ev'), member('log'),
      peer, upTo, ts, groupReadReceiptTail(user, group, upTo, ts))
    const changed = reply[0] === 'changed'
    const mark = changed ? upTo : Number(reply[1])
    // Also when unchanged: a group mark a failed call left behind catches up.
    if (mark > 0) await this.#retried(() => this.#redis.groupMarks(...this.#g(group, 'read', 'dlv'), user, mark))
    return { changed, previous: Number(reply[1]), upTo: mark, unread: Number(reply[2]), readerEvent: typeof reply[3] === 'string' ? reply[3] : undefined }
  }

  async #retried<T> (work: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await work()
      } catch (error) {
        if (attempt >= 3) throw error
        await new Promise((resolve) => setTimeout(resolve, 50 * attempt))
      }
    }
  }

  async markGroupDelivered (marks: Array<{ group: string, user: string, gseq: number }>): Promise<void> {
    const batches = this.#perSlot ? bySlot(marks, ({ group }) => this.#keys.group(group, 'dlv')) : marks.length > 0 ? [marks] : []
    await Promise.all(batches.map((batch) => this.#redis.groupDelivered(batch.length, ...batch.map(({ group }) => this.#keys.group(group, 'dlv')), ...batch.flatMap(({ user, gseq }) => [user, gseq]))))
  }

  async groupMarks (group: string): Promise<{ read: Map<string, number>, delivered: Map<string, number> }> {
    const [read, delivered] = await Promise.all([this.#redis.hgetall(this.#keys.group(group, 'read')), this.#redis.hgetall(this.#keys.group(group, 'dlv'))])
    const numbers = (hash: Record<string, string>): Map<string, number> => new Map(Object.entries(hash).map(([user, gseq]) => [user, Number(gseq)]))
    return { read: numbers(read), delivered: numbers(delivered) }
  }
}
