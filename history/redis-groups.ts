// Groups on Redis: the scripts in redis-group-scripts.ts, shared by every
// server process, on the history store's connection.
import type { Redis } from 'ioredis'
import type { GroupReadResult, Group, GroupAppend, GroupChange, GroupEventTemplate, GroupMessageResult, GroupPage, GroupStore, Role } from './group-store.ts'
import { GroupsFull, visibleWindow } from './group-store.ts'
import { GROUP_CHANGE, GROUP_CREATE, GROUP_DELIVERED, GROUP_MESSAGE, GROUP_READ } from './redis-group-scripts.ts'
import { GROUP_PREFIX, PREFIX } from './redis-history.ts'

type Reply = Array<string | number | null>

interface ScriptedRedis extends Redis {
  groupCreate (...args: Array<string | number>): Promise<Reply>
  groupChange (...args: Array<string | number>): Promise<Reply>
  groupMessage (...args: Array<string | number>): Promise<Reply>
  groupRead (...args: Array<string | number>): Promise<Reply>
  groupDelivered (...args: Array<string | number>): Promise<number>
}

const gkey = (group: string, name: string): string => `${GROUP_PREFIX}${group}:${name}`

function appended (reply: Reply): GroupAppend {
  const recipients: Array<[string, number]> = []
  for (let i = 3; i < reply.length; i += 2) recipients.push([String(reply[i]), Number(reply[i + 1])])
  return { gseq: Number(reply[1]), tail: String(reply[2]), recipients }
}

export class RedisGroups implements GroupStore {
  readonly #redis: ScriptedRedis
  readonly #keepMs: number

  /** `keepMs`: history retention, applied to group logs too (0 keeps them forever). */
  constructor (redis: Redis, keepMs = 0) {
    this.#keepMs = keepMs
    redis.defineCommand('groupCreate', { numberOfKeys: 0, lua: GROUP_CREATE })
    redis.defineCommand('groupChange', { numberOfKeys: 0, lua: GROUP_CHANGE })
    redis.defineCommand('groupMessage', { numberOfKeys: 0, lua: GROUP_MESSAGE })
    redis.defineCommand('groupRead', { numberOfKeys: 0, lua: GROUP_READ })
    redis.defineCommand('groupDelivered', { numberOfKeys: 0, lua: GROUP_DELIVERED })
    this.#redis = redis as ScriptedRedis
  }

  async getGroup (id: string): Promise<Group | undefined> {
    const [info, members] = await Promise.all([this.#redis.hgetall(gkey(id, 'info')), this.#redis.hgetall(gkey(id, 'm'))])
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

  async createGroup (group: Parameters<GroupStore['createGroup']>[0], event: GroupEventTemplate, maxGroupsPerUser = 0): Promise<GroupAppend> {
    const reply = await this.#redis.groupCreate(PREFIX, GROUP_PREFIX, group.id, group.creator, group.createdAt, group.name,
      group.meta === undefined ? '' : JSON.stringify(group.meta), event.pre, event.post, maxGroupsPerUser, ...group.members.flatMap(({ user, role }) => [user, role]))
    if (reply[0] === 'exists') throw new Error(`group ${group.id} exists`)
    if (reply[0] === 'too_many_groups') throw new GroupsFull(reply.slice(1).map(String))
    return appended(reply)
  }

  async changeGroup (id: string, expectedVersion: number, change: GroupChange, event: GroupEventTemplate, alsoNotify: string[], maxGroupsPerUser = 0): Promise<GroupAppend | 'stale'> {
    const upsert = change.upsert ?? []
    const remove = change.remove ?? []
    const reply = await this.#redis.groupChange(PREFIX, GROUP_PREFIX, id, expectedVersion, Date.now(), event.pre, event.post,
      change.name === undefined ? '0' : '1', change.name ?? '',
      change.meta === undefined ? '0' : '1', change.meta === null || change.meta === undefined ? '' : JSON.stringify(change.meta),
      change.replace === undefined ? '' : change.replace.gseq, change.replace?.tail ?? '', maxGroupsPerUser,
      upsert.length, ...upsert.flatMap(({ user, role }) => [user, role]), remove.length, ...remove, alsoNotify.length, ...alsoNotify)
    if (reply[0] === 'too_many_groups') throw new GroupsFull(reply.slice(1).map(String))
    return reply[0] === 'stale' ? 'stale' : appended(reply)
  }

  async appendGroupMessage ({ group, from, id, ts, event }: { group: string, from: string, id: string, ts: number, event: GroupEventTemplate }): Promise<GroupMessageResult> {
    const reply = await this.#redis.groupMessage(PREFIX, GROUP_PREFIX, group, from, id, ts, event.pre, event.post, this.#keepMs)
    if (reply[0] === 'not_a_member' || reply[0] === 'conflict') return { status: reply[0] }
    if (reply[0] === 'duplicate') return { status: 'duplicate', senderEvent: typeof reply[1] === 'string' ? reply[1] : undefined }
    return { status: 'stored', ...appended(reply) }
  }

  async groupEvents (id: string, member: string, range: { before?: number, after?: number, limit: number }): Promise<GroupPage | 'not_a_member'> {
    const [joined, head, low] = await Promise.all([this.#redis.hget(gkey(id, 'j'), member), this.#redis.get(gkey(id, 'seq')), this.#redis.get(gkey(id, 'low'))])
    if (joined === null) return 'not_a_member'
    // Nothing before `low` exists any more (retention): pages stop there.
    const window = visibleWindow(Math.max(Number(joined), Number(low ?? 1) - 1), Number(head ?? 0), range)
    if (window.to < window.from) return { events: [], hasMore: window.hasMore }
    const gseqs = Array.from({ length: window.to - window.from + 1 }, (_, i) => String(window.from + i))
    const tails = await this.#redis.hmget(gkey(id, 'ev'), ...gseqs)
    return { events: tails.filter((tail): tail is string => tail !== null).map((tail) => `{${tail}`), hasMore: window.hasMore }
  }

  async setMute (group: string, user: string, until: number | undefined): Promise<void> {
    if (until === undefined) await this.#redis.hdel(gkey(group, 'mute'), user)
    else await this.#redis.hset(gkey(group, 'mute'), user, until)
  }

  async mutedUntil (group: string, user: string): Promise<number | undefined> {
    const value = await this.#redis.hget(gkey(group, 'mute'), user)
    return value === null ? undefined : Number(value)
  }

  async groupEvent (group: string, gseq: number): Promise<string | undefined> {
    return (await this.#redis.hget(gkey(group, 'ev'), String(gseq))) ?? undefined
  }

  async groupsOf (user: string): Promise<string[]> {
    return this.#redis.smembers(`${PREFIX}${user}:groups`)
  }

  async markGroupRead (group: string, user: string, gseq: number, ts: number): Promise<GroupReadResult | 'not_a_member'> {
    const reply = await this.#redis.groupRead(PREFIX, GROUP_PREFIX, group, user, gseq, ts)
    if (reply[0] === 'not_a_member') return 'not_a_member'
    return { changed: reply[0] === 'changed', previous: Number(reply[4]), upTo: Number(reply[1]), unread: Number(reply[2]), readerEvent: typeof reply[3] === 'string' ? reply[3] : undefined }
  }

  async markGroupDelivered (marks: Array<{ group: string, user: string, gseq: number }>): Promise<void> {
    if (marks.length > 0) await this.#redis.groupDelivered(PREFIX, GROUP_PREFIX, ...marks.flatMap(({ group, user, gseq }) => [group, user, gseq]))
  }

  async groupMarks (group: string): Promise<{ read: Map<string, number>, delivered: Map<string, number> }> {
    const [read, delivered] = await Promise.all([this.#redis.hgetall(gkey(group, 'read')), this.#redis.hgetall(gkey(group, 'dlv'))])
    const numbers = (hash: Record<string, string>): Map<string, number> => new Map(Object.entries(hash).map(([user, gseq]) => [user, Number(gseq)]))
    return { read: numbers(read), delivered: numbers(delivered) }
  }
}
