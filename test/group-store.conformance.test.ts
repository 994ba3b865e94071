// One behaviour, every implementation: the GroupStore contract against a
// single Redis (DB 1, unique ids), a real Redis Cluster of this file's own
// (3 primaries, 3 replicas; one script call per slot), both with the per-user
// log's store beside it, and LevelDB (one batch). Fan-out is
// observed through the LogSink it reports to and the members' own log keys.
import t from 'tap'
import { MAX_EDITS_PER_MESSAGE } from '../history/events.ts'
import { Cluster, Redis } from 'ioredis'
import { join } from 'node:path'
import type { GroupRetentionHook, GroupStore, Role } from '../history/group-store.ts'
import { GroupsFull } from '../history/group-store.ts'
import type { GroupEvent } from '../history/group-events.ts'
import type { ArrivedMessage, LogSink } from '../history/log-sink.ts'
import { RedisGroups } from '../history/redis-groups.ts'
import { redisKeys, type GroupKeys } from '../history/redis-group-keys.ts'
import { LevelHistory } from '../history/level-history.ts'
import { RedisLog } from '../history/redis-log.ts'
import type { LogStore } from '../history/history-store.ts'
import type { RedisClient } from '../storage/redis-client.ts'
import { slotOf } from '../storage/redis-keys.ts'
import { REDIS_BASE, tempDataDir } from './helpers/server-process.ts'
import { startRedisCluster } from './helpers/redis-cluster.ts'
import { uniqueUser } from './helpers/tokens.ts'

/** Records what the store reports, and lets a test wait for it. */
class RecordingSink implements LogSink {
  readonly copies = new Map<string, number>()
  readonly arrivals: ArrivedMessage[] = []
  readonly #waiters: Array<() => void> = []
  appended (): void {}
  appendedToMembers (tail: string, recipients: Array<[string, number]>): void {
    const gseq = (JSON.parse(`{${tail}`) as { gseq: number }).gseq
    const group = (JSON.parse(`{${tail}`) as { group: string }).group
    for (const [user, seq] of recipients) this.copies.set(`${group}|${user}|${gseq}`, seq)
    this.#poke()
  }

  arrived (message: ArrivedMessage): void {
    this.arrivals.push(message)
    this.#poke()
  }

  #poke (): void { for (const waiter of this.#waiters.splice(0)) waiter() }

  async until (done: () => boolean): Promise<void> {
    while (!done()) await new Promise<void>((resolve) => this.#waiters.push(resolve))
  }

  has (group: string, user: string, gseq: number): boolean {
    return this.copies.has(`${group}|${user}|${gseq}`)
  }
}

interface Opened {
  groups: GroupStore
  /** The same storage with a store that leaves every fan-out to the sweeper (a process dying right after its write). */
  crashing: GroupStore
  /** The gseqs of `group` in `user`'s log, in their seq order. */
  entries (user: string, group: string): Promise<number[]>
  unread (user: string, group: string): Promise<number>
  /** Makes the store fan out `group` from its start again (Redis only: LevelDB has no separate fan-out). */
  rewind?: (group: string) => Promise<void>
  history?: LogStore
  close (): Promise<void>
}

interface Options { keepMs?: number, retention?: GroupRetentionHook }

function redisOpened (redis: RedisClient, keys: GroupKeys, options: Options, close: () => Promise<void>, history?: LogStore): Opened {
  const make = (fastPath: boolean): RedisGroups => new RedisGroups(redis, { keys, fastPath, keepMs: options.keepMs ?? 0, retention: options.retention })
  return {
    groups: make(true),
    crashing: make(false),
    async entries (user, group) {
      const metas = await redis.zrange(keys.member(user, 'log'), 0, -1)
      return metas.map((meta) => meta.split('|')).filter((fields) => fields[2] === `g:${group}` && fields[3] !== 'r').map((fields) => Number(fields[6]))
    },
    async unread (user, group) {
      const mark = await redis.hget(keys.member(user, 'read'), `g:${group}`)
      return redis.zcount(keys.member(user, `in:g:${group}`), `(${Number(mark ?? 0)}`, '+inf')
    },
    history,
    async rewind (group) {
      await redis.set(keys.group(group, 'fanned'), 0)
      await redis.del(keys.group(group, 'fm'))
      await redis.zadd(keys.pending(group), 0, group)
    },
    close
  }
}

const cluster = await startRedisCluster()
t.teardown(() => cluster.stop())

const STORES: Array<{ name: string, open: (options?: Options) => Promise<Opened> }> = [
  {
    name: 'redis',
    open: async (options = {}) => {
      const redis = new Redis(`${REDIS_BASE}/1`, { enableAutoPipelining: true })
      // The per-user log's own store reads the members' logs.
      return redisOpened(redis, redisKeys(false), options, async () => { redis.disconnect() }, new RedisLog(redis, { keepMs: options.keepMs ?? 0 }))
    }
  },
  {
    name: 'redis-cluster',
    open: async (options = {}) => {
      const redis = new Cluster(cluster.seeds.split(',').map((seed) => ({ host: seed.split(':')[0]!, port: Number(seed.split(':')[1]) })), { enableAutoPipelining: true })
      return redisOpened(redis, redisKeys(true), options, async () => { redis.disconnect() }, new RedisLog(redis, { keepMs: options.keepMs ?? 0 }))
    }
  },
  {
    name: 'leveldb',
    open: async (options = {}) => {
      const history = await LevelHistory.open(join(tempDataDir(), 'history'), options.keepMs ?? 0)
      const groups = options.retention === undefined ? history.groups() : history.groups().withRetention(options.retention)
      return {
        groups,
        crashing: groups,
        history,
        async entries (user, group) {
          const log = await history.readLog(user, 0, 1000)
          return log.map((entry) => entry.event === undefined ? undefined : JSON.parse(entry.event) as { group?: string, gseq?: number, type: string })
            .filter((event) => event?.group === group && event.type !== 'receipt' && event.gseq !== undefined).map((event) => event!.gseq!)
        },
        async unread (user, group) {
          const { conversations } = await history.conversations(user, { limit: 100 })
          return conversations.find((conversation) => conversation.peer === `g:${group}`)?.unread ?? 0
        },
        close: () => history.close()
      }
    }
  }
]

const created = (group: string, by: string, members: string[], ts = Date.now()): GroupEvent => ({ type: 'group_created', group, ts, by, name: 'Team', members })
const members = (owner: string, others: string[]): Array<{ user: string, role: Role }> => [{ user: owner, role: 'owner' }, ...others.map((user) => ({ user, role: 'member' as const }))]
async function createGroup (groups: GroupStore, sink: LogSink, owner: string, others: string[], options: { ts?: number, limit?: number } = {}): Promise<string> {
  const group = uniqueUser('g')
  const ts = options.ts ?? Date.now()
  await groups.createGroup({ id: group, name: 'Team', meta: undefined, creator: owner, createdAt: ts, members: members(owner, others) }, created(group, owner, [owner, ...others], ts), sink, options.limit)
  return group
}
const message = (groups: GroupStore, sink: LogSink, group: string, from: string, id: string, ts = Date.now(), body: unknown = 'hello') =>
  groups.appendGroupMessage({ type: 'message', group, from, id, ts, body }, sink)

for (const { name, open } of STORES) {
  t.test(`${name}: groups`, async (t) => {
    const { groups, entries, history, close } = await open()
    t.teardown(close)
    const sink = new RecordingSink()
    const [owner, ann, ben] = [uniqueUser('owner'), uniqueUser('ann'), uniqueUser('ben')]
    const group = await createGroup(groups, sink, owner, [ann])
    t.ok(sink.has(group, owner, 1) && sink.has(group, ann, 1), 'group_created reached every member before createGroup resolved')
    t.match(await groups.getGroup(group), { name: 'Team', creator: owner, version: 1 })
    t.same(await groups.groupsOf(ann), [group], 'membership is read-your-writes')

    const sent = await message(groups, sink, group, ann, 'm1', 2000)
    t.match(sent, { status: 'stored', gseq: 2 })
    if (sent.status !== 'stored') return
    t.same(JSON.parse(sent.senderEvent!), { seq: 2, type: 'message', id: 'm1', from: ann, group, gseq: 2, ts: 2000, body: 'hello' }, 'the sender gets their own copy with their seq')
    await sink.until(() => sink.has(group, owner, 2))
    t.same(sink.arrivals.filter((arrival) => arrival.id === 'm1').map(({ from, to, group: g }) => ({ from, to, g })), [{ from: ann, to: owner, g: group }], 'arrival is reported for the others')
    const retry = await message(groups, sink, group, ann, 'm1', 2000)
    t.same(retry, { status: 'duplicate', senderEvent: sent.senderEvent }, 'a retry is stored once and answers the same copy')
    t.same(await entries(owner, group), [1, 2], 'and appears once in each log')
    t.same(await message(groups, sink, group, ben, 'm2'), { status: 'not_a_member' })
    if (history !== undefined) {
      const [ownerCopy] = await history.readLog(owner, 1, 10)
      t.same(JSON.parse(ownerCopy!.event!), { seq: 2, type: 'message', id: 'm1', from: ann, group, gseq: 2, ts: 2000, body: 'hello' }, 'the member log resolves to the full envelope')
      t.same(await history.appendMessage({ type: 'message', id: 'm1', from: ann, to: owner, ts: 1, body: 'x' }, sink), { status: 'conflict' }, 'the same id to a person conflicts')
      t.match((await history.conversations(owner, { limit: 10 })).conversations, [{ peer: `g:${group}`, unread: 1 }], 'the group is a conversation with its unread count')
    }

    t.equal(await groups.changeGroup(group, 99, { name: 'x' }, { type: 'group_updated', group, ts: 1, by: owner, name: 'x', meta: null }, sink), 'stale', 'a stale version changes nothing')
    t.match(await groups.changeGroup(group, 1, { upsert: [{ user: ben, role: 'member' }] }, { type: 'member_added', group, ts: 3000, by: owner, users: [ben] }, sink), { gseq: 3 })
    t.match(await groups.groupEvents(group, ben, { limit: 10 }), { events: [/member_added/], hasMore: false }, 'a new member sees from their addition on')
    t.same(await entries(ben, group), [3])
    t.same(await groups.groupEvents(group, uniqueUser('stranger'), { limit: 10 }), 'not_a_member')
    t.match(await groups.changeGroup(group, 2, { remove: [ann] }, { type: 'member_removed', group, ts: 4000, by: owner, user: ann, reason: 'removed' }, sink), { gseq: 4 })
    t.same(await entries(ann, group), [1, 2, 3, 4], 'the removed member gets the removal as their last event')
    await message(groups, sink, group, owner, 'after')
    await sink.until(() => sink.has(group, ben, 5))
    t.same(await entries(ann, group), [1, 2, 3, 4], 'nothing sent after the removal reaches them')
    t.same(await groups.groupsOf(ben), [group])
    t.same(await groups.groupsOf(ann), [])
    const page = await groups.groupEvents(group, owner, { after: 1, limit: 2 })
    t.same(page !== 'not_a_member' && page.events.map((event) => JSON.parse(event).gseq), [2, 3])
  })

  t.test(`${name}: fan-out reaches members in several slots, once`, async (t) => {
    const { groups, entries, rewind, close } = await open()
    t.teardown(close)
    const sink = new RecordingSink()
    const owner = uniqueUser('owner')
    const others = Array.from({ length: 11 }, (_, i) => uniqueUser(`m${i}`))
    t.ok(new Set([owner, ...others].map((user) => slotOf(`{u:${user}}`))).size > 5, 'the members are in several slots')
    const group = await createGroup(groups, sink, owner, others)
    const sent = await Promise.all(Array.from({ length: 5 }, (_, i) => message(groups, sink, group, others[i]!, `x${i}`)))
    t.ok(sent.every((result) => result.status === 'stored' && result.senderEvent !== undefined), 'every sender has their copy')
    await sink.until(() => [owner, ...others].every((user) => sink.has(group, user, 6)))
    for (const user of [owner, ...others]) t.same(await entries(user, group), [1, 2, 3, 4, 5, 6], `${user.slice(0, 3)}: every event, once, in gseq order`)
    if (rewind === undefined) return
    await rewind(group)
    // Only this group's: the sweeper may also complete what an earlier test's closed connection left pending.
    const ours = (): number => [...sink.copies.keys()].filter((key) => key.startsWith(`${group}|`)).length
    const before = ours()
    t.equal(await groups.sweepFanOut(sink, { graceMs: 0, everySlot: true }) >= 1, true, 'the sweeper runs the rewound fan-out')
    for (const user of [owner, ...others]) t.same(await entries(user, group), [1, 2, 3, 4, 5, 6], `${user.slice(0, 3)}: a repeated fan-out changes nothing`)
    t.equal(ours(), before, 'and reports nothing new')
  })

  t.test(`${name}: a fan-out interrupted after the group append completes by the sweeper`, async (t) => {
    const { groups, crashing, entries, rewind, close } = await open()
    t.teardown(close)
    const sink = new RecordingSink()
    const [owner, ann, ben] = [uniqueUser('owner'), uniqueUser('ann'), uniqueUser('ben')]
    const group = await createGroup(groups, sink, owner, [ann])
    const sent = await message(crashing, sink, group, ann, 'lost?')
    t.match(sent, { status: 'stored', gseq: 2 }, 'durable in the group log')
    const added = await crashing.changeGroup(group, 1, { upsert: [{ user: ben, role: 'member' }] }, { type: 'member_added', group, ts: Date.now(), by: owner, users: [ben] }, sink)
    t.match(added, { gseq: 3 })
    await message(crashing, sink, group, ben, 'from ben')
    if (rewind !== undefined) t.same(await entries(owner, group), [1], 'no member has it yet')
    await groups.sweepFanOut(sink, { graceMs: 0, everySlot: true })
    t.same(await entries(owner, group), [1, 2, 3, 4], 'the sweeper completes it, in gseq order')
    t.same(await entries(ann, group), [1, 2, 3, 4])
    t.same(await entries(ben, group), [3, 4], 'with the membership each event had')
    t.same(await groups.groupsOf(ben), [group], 'the join reached the new member\'s groups')
    t.same((await message(groups, sink, group, ann, 'lost?')).status, 'duplicate', 'the id is known')
  })

  t.test(`${name}: MAX_GROUPS_PER_USER is a real bound`, async (t) => {
    const { groups, close } = await open()
    t.teardown(close)
    const sink = new RecordingSink()
    const [hank, ivy] = [uniqueUser('hank'), uniqueUser('ivy')]
    const limit = 2
    const results = await Promise.allSettled(Array.from({ length: 6 }, () => createGroup(groups, sink, uniqueUser('o'), [hank], { limit })))
    t.equal(results.filter((result) => result.status === 'fulfilled').length, limit, 'concurrent creates: exactly the limit succeed')
    t.ok(results.every((result) => result.status === 'fulfilled' || (result.reason instanceof GroupsFull && result.reason.users.includes(hank))), 'the others are refused, naming the user')
    t.equal((await groups.groupsOf(hank)).length, limit)
    const other = await createGroup(groups, sink, ivy, [], { limit })
    const refused = await groups.changeGroup(other, 1, { upsert: [{ user: hank, role: 'member' }] }, { type: 'member_added', group: other, ts: Date.now(), by: ivy, users: [hank] }, sink, limit).catch((error: unknown) => error)
    t.ok(refused instanceof GroupsFull, 'adding beyond it is refused')
    t.equal((await groups.getGroup(other))!.version, 1, 'and changes nothing')
    const mine = await groups.groupsOf(hank)
    const left = mine[0]!
    const version = (await groups.getGroup(left))!.version
    await groups.changeGroup(left, version, { remove: [hank] }, { type: 'member_removed', group: left, ts: Date.now(), by: hank, user: hank, reason: 'left' }, sink, limit)
    t.match(await groups.changeGroup(other, 1, { upsert: [{ user: hank, role: 'member' }] }, { type: 'member_added', group: other, ts: Date.now(), by: ivy, users: [hank] }, sink, limit), { gseq: 2 },
      'after leaving one, a refused add has left no reservation behind: there is room for one')
    t.same((await groups.groupsOf(hank)).sort(), [...mine.slice(1), other].sort())
  })

  t.test(`${name}: a recall removes the unread for every member; read marks`, async (t) => {
    const { groups, unread, close } = await open()
    t.teardown(close)
    const sink = new RecordingSink()
    const [owner, ann, ben] = [uniqueUser('owner'), uniqueUser('ann'), uniqueUser('ben')]
    const group = await createGroup(groups, sink, owner, [ann, ben])
    await message(groups, sink, group, owner, 'one', 5000)
    await message(groups, sink, group, owner, 'two', 5000)
    t.same([await unread(ann, group), await unread(ben, group)], [2, 2])
    const tombstone = { type: 'message' as const, group, id: 'one', from: owner, ts: 5000, recalled: true as const, recalledAt: 6000, by: owner }
    t.match(await groups.changeGroup(group, 1, { replace: { gseq: 2, event: tombstone } }, { type: 'recall', group, ts: 6000, messageGseq: 2, id: 'one', from: owner, by: owner }, sink), { gseq: 4 })
    t.same([await unread(ann, group), await unread(ben, group)], [1, 1], 'the recalled message no longer counts, for everyone')
    t.same(JSON.parse(`{${(await groups.groupEvent(group, 2))!}`), { type: 'message', id: 'one', from: owner, group, gseq: 2, ts: 5000, recalled: true, recalledAt: 6000, by: owner }, 'one tombstone')

    const read = await groups.markGroupRead(group, ann, 99, 7000)
    t.match(read, { changed: true, previous: 0, upTo: 4, unread: 0 }, 'a mark past the head lands on it')
    t.same(JSON.parse((read as { readerEvent: string }).readerEvent), { seq: JSON.parse((read as { readerEvent: string }).readerEvent).seq, type: 'receipt', kind: 'read', by: ann, group, upTo: 4, ts: 7000 })
    t.match(await groups.markGroupRead(group, ann, 3, 7001), { changed: false, upTo: 4 }, 'forward only')
    await groups.markGroupDelivered([{ group, user: ben, gseq: 3 }, { group, user: ben, gseq: 2 }])
    const marks = await groups.groupMarks(group)
    t.same([marks.read.get(ann), marks.delivered.get(ann), marks.delivered.get(ben)], [4, 4, 3], 'the group\'s marks: read implies delivered; delivered forward only')
    t.equal(await groups.markGroupRead(group, uniqueUser('stranger'), 1, 1), 'not_a_member')
  })

  t.test(`${name}: an edit replaces the message and keeps it unread; a recall cuts the text out of its edits`, async (t) => {
    const { groups, unread, close } = await open()
    t.teardown(close)
    const sink = new RecordingSink()
    const [owner, ann] = [uniqueUser('owner'), uniqueUser('ann')]
    const group = await createGroup(groups, sink, owner, [ann])
    await message(groups, sink, group, owner, 'one', 5000)
    let version = 1
    const edit = async (n: number): Promise<unknown> => {
      const edited = { type: 'message' as const, group, id: 'one', from: owner, ts: 5000, body: `v${n}`, edited: true as const, editedAt: 5000 + n }
      const result = await groups.changeGroup(group, version, { replace: { gseq: 2, event: edited }, editOf: 2 }, { type: 'edit', group, ts: 5000 + n, messageGseq: 2, id: 'one', from: owner, body: `v${n}` }, sink)
      if (typeof result === 'object') version++
      return result
    }
    t.match(await edit(1), { gseq: 3 })
    t.equal(await unread(ann, group), 1, 'an edited message still counts as unread')
    t.same(JSON.parse(`{${(await groups.groupEvent(group, 2))!}`), { type: 'message', id: 'one', from: owner, group, gseq: 2, ts: 5000, body: 'v1', edited: true, editedAt: 5001 })
    t.same(JSON.parse(`{${(await groups.groupEvent(group, 3))!}`), { type: 'edit', group, gseq: 3, ts: 5001, messageGseq: 2, id: 'one', from: owner, body: 'v1' })
    for (let n = 2; n <= MAX_EDITS_PER_MESSAGE; n++) await edit(n)
    t.equal(await edit(99), 'too_many_edits', 'edits per message are bounded')
    const tombstone = { type: 'message' as const, group, id: 'one', from: owner, ts: 5000, recalled: true as const, recalledAt: 9000, by: owner }
    t.match(await groups.changeGroup(group, version, { replace: { gseq: 2, event: tombstone }, scrubEditsOf: 2 }, { type: 'recall', group, ts: 9000, messageGseq: 2, id: 'one', from: owner, by: owner }, sink), { gseq: 3 + MAX_EDITS_PER_MESSAGE })
    t.same(JSON.parse(`{${(await groups.groupEvent(group, 3))!}`), { type: 'edit', group, gseq: 3, ts: 5001, messageGseq: 2, id: 'one', from: owner }, 'the edit event has no body now')
    const page = await groups.groupEvents(group, ann, { after: 0, limit: 100 })
    t.same(page === 'not_a_member' ? ['not_a_member'] : page.events.filter((event) => event.includes('"body"')), [], 'nor has any of them')
  })

  t.test(`${name}: retention is its own step and asks the hook`, async (t) => {
    let removable = 10
    const { groups, history, close } = await open({ keepMs: 1000, retention: { removableUpTo: async () => removable } })
    t.teardown(close)
    const sink = new RecordingSink()
    const [owner, ann] = [uniqueUser('owner'), uniqueUser('ann')]
    const old = Date.now() - 5000
    const group = await createGroup(groups, sink, owner, [ann], { ts: old })
    await message(groups, sink, group, owner, 'lone', old, 'a\ud800b') // cjson refuses a lone surrogate: it must not stop retention
    for (let i = 0; i < 30; i++) await message(groups, sink, group, owner, `old${i}`, old, i)
    for (let i = 0; i < 10; i++) await message(groups, sink, group, owner, `new${i}`, Date.now(), i)
    t.not(await groups.groupEvent(group, 2), undefined, 'writes never trim')
    t.equal(await groups.trimGroup(group), 10, 'a trim removes what the hook lets go')
    t.equal(await groups.groupEvent(group, 10), undefined)
    t.not(await groups.groupEvent(group, 11), undefined, 'and holds back the rest')
    removable = Number.MAX_SAFE_INTEGER
    t.equal(await groups.trimGroup(group), 22, 'then everything past retention (bounded work per call)')
    t.equal(await groups.groupEvent(group, 32), undefined)
    t.not(await groups.groupEvent(group, 33), undefined, 'a new one is kept')
    t.equal(await groups.trimGroup(group), 0)
    const page = await groups.groupEvents(group, ann, { limit: 100 })
    t.same(page !== 'not_a_member' && page.events.map((event) => JSON.parse(event).id), Array.from({ length: 10 }, (_, i) => `new${i}`), 'group history has only what retention keeps')
    t.same((await message(groups, sink, group, owner, 'old3', Date.now())).status, 'stored', 'a trimmed message\'s id is forgotten with it')
    if (history !== undefined) {
      const synced = await history.events(ann, 0, 100)
      t.ok(synced.events.every((event) => !event.includes('"old0"') && !event.includes('"lone"')), 'a member\'s log passes over what is gone')
    }
  })
}
