// One behaviour, every implementation: the three stores of a user's history,
// each with its own suite (the log: LogStore; device cursors: CursorStore;
// blocks: BlockStore), run against Redis on one Redis and on a real Redis
// Cluster of this test's own, and LevelDB (a real LevelDB in a temp dir),
// sharing one cluster. A new implementation is proven by adding it to STORES.
//
// One owner per write: a call returns once the caller's log has the event;
// the other user's copy is reported to the sink when it lands (on Redis
// through the relay). Tests that read the other user's log wait for the
// relay first (`store.relayed()`: the work this process started, not a sleep).
import t from 'tap'
import { Redis, Cluster } from 'ioredis'
import { ClassicLevel } from 'classic-level'
import { join } from 'node:path'
import type { BlockStore, CursorStore, HotLogStore, LogStore } from '../history/history-store.ts'
import type { ArrivedMessage, LogSink } from '../history/log-sink.ts'
import { RedisLog } from '../history/redis-log.ts'
import { RedisCursors } from '../history/redis-cursors.ts'
import { RedisBlocks } from '../history/redis-blocks.ts'
import { LevelHistory } from '../history/level-history.ts'
import { MAX_EDITS_PER_MESSAGE } from '../history/events.ts'
import { MemoryPresence } from '../presence/memory-presence.ts'
import { presenceConnectionsKey } from '../storage/redis-keys.ts'
import type { RedisClient } from '../storage/redis-client.ts'
import { REDIS_BASE, tempDataDir, flushRedisDb } from './helpers/server-process.ts'
import { startRedisCluster } from './helpers/redis-cluster.ts'
import { uniqueUser } from './helpers/tokens.ts'

const REDIS_DB = 12
await flushRedisDb(REDIS_DB)
const cluster = await startRedisCluster()
t.teardown(() => cluster.stop())

/** What the store reported: every event per user, and every arrival. */
class RecordingSink implements LogSink {
  readonly events: Array<{ user: string, event: string }> = []
  readonly arrivals: ArrivedMessage[] = []
  appended (user: string, event: string): void { this.events.push({ user, event }) }
  appendedToMembers (): void {}
  arrived (message: ArrivedMessage): void { this.arrivals.push(message) }
  of (user: string): unknown[] { return this.events.filter((e) => e.user === user).map((e) => JSON.parse(e.event)) }
}

/** A store, and who is connected beside it: the session bound never evicts a connected device. */
interface Opened {
  /** The log. */
  store: HotLogStore
  /** Redis: every key of the user's log family left (SCAN on every primary). */
  userKeys?: (user: string) => Promise<string[]>
  cursors: CursorStore
  blocks: BlockStore
  connect: (user: string, device: string) => Promise<void>
  disconnect: (user: string, device: string) => Promise<void>
  close: () => Promise<void>
}

interface OpenOptions { keepMs?: number, maxSessions?: number, fastPath?: boolean }

/**
 * Redis: who is connected is the presence hash in the user's slot (presence/redis-presence.ts
 * keeps it; its own conformance suite covers how), written here directly as it holds it.
 */
function redisOpened (redis: RedisClient, options: OpenOptions, close: () => void): Opened {
  const store = new RedisLog(redis, { keepMs: options.keepMs ?? 0, fastPath: options.fastPath ?? true })
  return {
    store,
    cursors: new RedisCursors(redis, { maxSessionsPerUser: options.maxSessions ?? 0 }),
    blocks: new RedisBlocks(redis),
    connect: async (user, device) => { await redis.hset(presenceConnectionsKey(user), `${user}:${device}`, 'node|t') },
    disconnect: async (user, device) => { await redis.hdel(presenceConnectionsKey(user), `${user}:${device}`) },
    userKeys: async (user) => {
      const nodes = redis instanceof Cluster ? redis.nodes('master') : [redis]
      const keys = await Promise.all(nodes.map((node) => node.keys(`inboxd:h:{u:${user}}:*`)))
      return keys.flat()
    },
    close: async () => { await store.close(); close() }
  }
}

const STORES: Array<{ name: string, open: (options?: OpenOptions) => Promise<Opened> }> = [
  {
    name: 'redis',
    open: async (options = {}) => {
      const redis = new Redis(`${REDIS_BASE}/${REDIS_DB}`, { enableAutoPipelining: true })
      return redisOpened(redis, options, () => redis.disconnect())
    }
  },
  {
    name: 'redis-cluster',
    open: async (options = {}) => {
      const redis = new Cluster(cluster.nodes.map(({ port }) => ({ host: '127.0.0.1', port })), { enableAutoPipelining: true })
      return redisOpened(redis, options, () => redis.disconnect())
    }
  },
  {
    name: 'leveldb',
    open: async ({ keepMs = 0, maxSessions = 0 } = {}) => {
      const presence = new MemoryPresence()
      const store = await LevelHistory.open(join(tempDataDir(), 'history'), keepMs, { maxPerUser: maxSessions, isConnected: (user, clientId) => presence.connectedNow(user, clientId) })
      return {
        store,
        cursors: store,
        blocks: store,
        connect: async (user, device) => { await presence.connected(user, `${user}:${device}`, 't', Date.now()) },
        disconnect: async (user, device) => { await presence.disconnected(user, `${user}:${device}`, 't', Date.now()) },
        close: () => store.close()
      }
    }
  }
]


/** Appends, then waits for the relay this process started, so the recipient's log has it too. */
async function send (store: LogStore, from: string, to: string, id: string, ts = Date.now(), sink: LogSink = new RecordingSink()) {
  const result = await store.appendMessage({ type: 'message', from, to, id, ts, body: 'hi' }, sink)
  await store.relayed()
  return result
}

for (const { name, open } of STORES) {
  t.test(name, async (t) => {
    const { store, cursors, close } = await open()
    t.teardown(close)

    t.test('append: each side gets its own gapless seq; ids are idempotent per sender', async (t) => {
      const alice = uniqueUser('alice')
      const bob = uniqueUser('bob')
      const sink = new RecordingSink()
      const first = await send(store, alice, bob, 'm1', Date.now(), sink)
      t.equal(first.status, 'stored')
      if (first.status !== 'stored') return
      t.match(JSON.parse(first.senderEvent), { seq: 1, type: 'message', id: 'm1', from: alice, to: bob })
      t.match(sink.of(bob), [{ seq: 1, id: 'm1', from: alice }], 'the recipient\'s copy is reported with the recipient\'s seq')
      t.same(sink.of(alice), [], 'the sender\'s own copy is the caller\'s to report')
      t.match(sink.arrivals, [{ from: alice, to: bob, id: 'm1', seq: 1, newConversation: true }])
      t.same((await store.readLog(bob, 0, 10)).map((entry) => entry.event), sink.events.map((e) => e.event), 'byte for byte what the log holds')
      const again = await send(store, alice, bob, 'm1')
      t.same(again, { status: 'duplicate', senderEvent: first.senderEvent }, 'a retry is a duplicate with the first event')
      t.same(await send(store, alice, uniqueUser('carol'), 'm1'), { status: 'conflict' }, 'the same id to another recipient conflicts')
      await send(store, bob, alice, 'm2')
      t.equal(await store.head(alice), 2)
      t.equal(await store.head(bob), 2)
      t.equal(await store.head(uniqueUser('nobody')), 0)
      const selfSink = new RecordingSink()
      const self = await send(store, alice, alice, 'note', Date.now(), selfSink)
      t.match(self, { status: 'stored' })
      t.equal(await store.head(alice), 3, 'a note to oneself is one event')
      t.same(selfSink.events, [], 'and nothing is relayed')
    })

    t.test('concurrent appends stay gapless', async (t) => {
      const bob = uniqueUser('bob')
      const senders = Array.from({ length: 5 }, (_, i) => uniqueUser(`s${i}`))
      await Promise.all(senders.flatMap((sender) => Array.from({ length: 40 }, (_, i) => send(store, sender, bob, `c${i}`))))
      const log = await store.readLog(bob, 0, 1000)
      t.same(log.map((entry) => entry.seq), Array.from({ length: 200 }, (_, i) => i + 1))
      t.ok(log.every((entry) => JSON.parse(entry.event!).seq === entry.seq && typeof entry.ts === 'number'), 'entries carry their seq and ts')
    })

    t.test('readLog pages by seq and matches events()', async (t) => {
      const alice = uniqueUser('alice')
      const bob = uniqueUser('bob')
      for (let i = 0; i < 25; i++) await send(store, alice, bob, `p${i}`, 1000 + i)
      const page = await store.readLog(bob, 10, 5)
      t.same(page.map((entry) => entry.seq), [11, 12, 13, 14, 15])
      t.same(page.map((entry) => entry.ts), [1010, 1011, 1012, 1013, 1014])
      t.same((await store.events(bob, 10, 5)).events, page.map((entry) => entry.event))
      t.same(await store.readLog(bob, 25, 10), [], 'nothing after the head')
    })

    t.test('receipts and recall are log events too', async (t) => {
      const alice = uniqueUser('alice')
      const bob = uniqueUser('bob')
      await send(store, alice, bob, 'r1')
      await send(store, alice, bob, 'r2')
      const sink = new RecordingSink()
      const read = await store.receipt('read', bob, alice, 2, Date.now(), sink)
      t.match(read, { changed: true, upTo: 2, unread: 0 })
      t.match(JSON.parse(read.readerEvent!), { seq: 3, type: 'receipt', kind: 'read', peer: alice, upTo: 2 })
      await store.relayed()
      t.match(sink.of(alice), [{ seq: 3, type: 'receipt', kind: 'read', by: bob, upTo: 2, id: 'r2' }], 'the peer\'s receipt is reported when it lands')
      t.same((await store.readLog(alice, 2, 10)).map((entry) => entry.event), [sink.events[0]!.event])
      t.match((await store.conversations(alice, { limit: 10 })).conversations, [{ peer: bob, peerReadUpTo: 2, peerDeliveredUpTo: 2 }], 'read implies delivered, in the sender\'s seqs')
      t.match(await store.receipt('read', bob, alice, 1, Date.now(), sink), { changed: false, upTo: 2 }, 'a mark never moves back')
      const delivered = await store.receipt('delivered', bob, alice, 2, Date.now(), sink)
      t.match(delivered, { changed: false }, 'read implied delivered')
      const recalled = await store.recall(alice, 'r1', Date.now(), 60_000, sink)
      t.match(recalled, { status: 'recalled', to: bob })
      if (recalled.status === 'recalled') t.match(JSON.parse(recalled.senderEvent!), { seq: 4, type: 'recall', id: 'r1', messageSeq: 1 })
      await store.relayed()
      t.equal(await store.head(bob), 4, 'the recall is an event in the recipient log')
      const [recallEvent] = await store.readLog(bob, 3, 1)
      t.match(JSON.parse(recallEvent!.event!), { type: 'recall', id: 'r1', messageSeq: 1 })
      t.equal(sink.events.at(-1)!.event, recallEvent!.event, 'reported as stored')
      t.match(JSON.parse((await store.readLog(bob, 0, 1))[0]!.event!), { seq: 1, id: 'r1', recalled: true }, 'the recipient\'s copy is a tombstone')
      t.notOk('body' in JSON.parse((await store.readLog(bob, 0, 1))[0]!.event!))
      t.match(await store.recall(alice, 'r1', Date.now(), 60_000, sink), { status: 'recalled', senderEvent: undefined }, 'recalling twice writes nothing more')
      t.same(await store.recall(alice, 'missing', Date.now(), 60_000, sink), { status: 'not_found' })
    })

    t.test('edit: the body is replaced in both logs, an edit event in each; the window, a recall and retries', async (t) => {
      const alice = uniqueUser('alice')
      const bob = uniqueUser('bob')
      const ts = Date.now()
      const sink = new RecordingSink()
      await store.appendMessage({ type: 'message', from: alice, to: bob, id: 'e1', ts, replyTo: { id: 'x', from: bob }, body: 'old' }, sink)
      await store.relayed()
      // A body with `|`: outbox items are `|`-separated.
      const body = { text: 'new | with a bar' }
      const edited = await store.edit(alice, 'e1', body, ts + 10, 60_000, sink)
      t.match(edited, { status: 'edited', to: bob })
      if (edited.status !== 'edited') return
      t.same(JSON.parse(edited.message), { seq: 1, type: 'message', id: 'e1', from: alice, to: bob, ts, replyTo: { id: 'x', from: bob }, body, edited: true, editedAt: ts + 10 })
      t.same(JSON.parse(edited.senderEvent!), { seq: 2, type: 'edit', id: 'e1', from: alice, to: bob, messageSeq: 1, ts: ts + 10, body })
      t.equal((await store.readLog(alice, 0, 1))[0]!.event, edited.message, 'the sender\'s log holds the edited message')
      await store.relayed()
      const bobs = await store.readLog(bob, 0, 10)
      t.equal(bobs[0]!.event, edited.message, 'so does the recipient\'s, byte for byte (both seqs are 1)')
      t.same(JSON.parse(bobs[1]!.event!), { seq: 2, type: 'edit', id: 'e1', from: alice, to: bob, messageSeq: 1, ts: ts + 10, body })
      t.equal(sink.events.at(-1)!.event, bobs[1]!.event, 'the recipient\'s edit event is reported as stored')
      t.same(sink.arrivals.map((arrival) => arrival.id), ['e1'], 'an edit is no arrival (no push)')
      t.match((await store.conversations(bob, { limit: 1 })).conversations, [{ peer: alice, lastSeq: 1, unread: 1 }], 'an edit is not a message: unread and last message stay')

      t.match(await store.edit(alice, 'e1', body, ts + 20, 60_000, sink), { status: 'edited', senderEvent: undefined }, 'the same edit again writes nothing')
      t.equal(await store.head(alice), 2)
      t.same(await store.edit(alice, 'e1', 'late', ts + 60_001, 60_000, sink), { status: 'window_expired' })
      t.same(await store.edit(bob, 'e1', 'not mine', ts + 30, 60_000, sink), { status: 'not_found' }, 'only the sender\'s ids')
      t.same(await store.edit(alice, 'missing', 'x', ts + 30, 60_000, sink), { status: 'not_found' })
      t.match(await store.recall(alice, 'e1', ts + 40, 60_000, sink), { status: 'recalled' })
      t.same(await store.edit(alice, 'e1', 'again', ts + 50, 60_000, sink), { status: 'recalled' })
      await store.relayed()
      const tombstone = JSON.parse((await store.readLog(bob, 0, 1))[0]!.event!)
      t.notOk('body' in tombstone || 'edited' in tombstone, 'the tombstone has neither body nor edit')
      for (const user of [alice, bob]) {
        t.same(JSON.parse((await store.readLog(user, 1, 1))[0]!.event!), { seq: 2, type: 'edit', id: 'e1', from: alice, to: bob, messageSeq: 1, ts: ts + 10 }, 'the recall took the text out of the edit events too')
      }

      await store.appendMessage({ type: 'message', from: alice, to: bob, id: 'e2', ts, body: 0 }, sink)
      for (let i = 1; i <= MAX_EDITS_PER_MESSAGE; i++) t.equal((await store.edit(alice, 'e2', i, ts + i, 60_000, sink)).status, 'edited')
      t.same(await store.edit(alice, 'e2', 'one more', ts + 100, 60_000, sink), { status: 'too_many_edits' })
      t.match(await store.recall(alice, 'e2', ts + 200, 60_000, sink), { status: 'recalled' })
      await store.relayed()
      const bodies = (await store.readLog(bob, 0, 200)).filter((entry) => entry.event!.includes('"e2"') && 'body' in JSON.parse(entry.event!))
      t.same(bodies, [], 'every one of the edits lost its text in the recipient\'s log')
    })

    t.test('notices are appended to logs with the next seq', async (t) => {
      const user = uniqueUser('n')
      await send(store, uniqueUser('a'), user, 'n1')
      const [notice] = await store.appendNotices([{ user, peer: 'g:x', ts: 5, tail: '"type":"receipt","kind":"read","ts":5}' }])
      t.same(notice, { user, event: '{"seq":2,"type":"receipt","kind":"read","ts":5}' })
      t.same((await store.readLog(user, 1, 10)).map((entry) => entry.event), [notice!.event])
    })

    t.test('cursors: opened at the head, forward only, dropped', async (t) => {
      const alice = uniqueUser('alice')
      const bob = uniqueUser('bob')
      t.equal(await cursors.cursor(bob, 'phone'), undefined, 'no session, no cursor')
      await send(store, alice, bob, 'before')
      t.same(await cursors.openCursor(bob, 'phone'), { seq: 1, created: true, evicted: [] }, 'a new cursor starts at the head')
      await cursors.openCursor(bob, 'laptop')
      await send(store, alice, bob, 'after')
      t.same(await cursors.openCursor(bob, 'phone'), { seq: 1, created: false, evicted: [] }, 'opening again keeps the cursor')
      await cursors.saveCursors([{ user: bob, device: 'phone', seq: 2 }, { user: bob, device: 'laptop', seq: 1 }])
      t.equal(await cursors.cursor(bob, 'phone'), 2)
      t.equal(await cursors.cursor(bob, 'laptop'), 1, 'each device has its own')
      await cursors.saveCursors([{ user: bob, device: 'phone', seq: 1 }])
      t.equal(await cursors.cursor(bob, 'phone'), 2, 'never moves back')
      await cursors.dropCursor(bob, 'phone')
      t.equal(await cursors.cursor(bob, 'phone'), undefined)
      t.equal(await cursors.cursor(bob, 'laptop'), 1, 'dropping one leaves the others')
      await cursors.saveCursors([{ user: bob, device: 'phone', seq: 2 }, { user: bob, device: 'tablet', seq: 2 }])
      t.equal(await cursors.cursor(bob, 'phone'), undefined, 'a late save does not bring a dropped cursor back')
      t.equal(await cursors.cursor(bob, 'tablet'), undefined, 'nor create one')
    })

    t.test('conversations and unread', async (t) => {
      const alice = uniqueUser('alice')
      const bob = uniqueUser('bob')
      for (let i = 0; i < 3; i++) await send(store, alice, bob, `u${i}`)
      const { conversations } = await store.conversations(bob, { limit: 10 })
      t.match(conversations, [{ peer: alice, lastSeq: 3, unread: 3, readUpTo: 0 }])
      t.equal(await store.unreadTotal(bob), 3)
      t.equal(await store.seqOfMessage(bob, alice, 'u1'), 2, 'a received message, in the caller\'s seqs')
      t.equal(await store.seqOfMessage(alice, bob, 'u1'), 2, 'a sent one')
      t.equal(await store.seqOfMessage(alice, uniqueUser('x'), 'u1'), undefined, 'not with another peer')
      const page = await store.conversation(bob, alice, { limit: 2 })
      t.same(page.events.map((event) => JSON.parse(event).id), ['u1', 'u2'])
      t.equal(page.hasMore, true)
    })
  })

  t.test(`${name}: sessions per user are bounded, the one furthest behind goes`, async (t) => {
    const { store, cursors, connect, disconnect, close } = await open({ maxSessions: 3 })
    t.teardown(close)
    const alice = uniqueUser('alice')
    const bob = uniqueUser('bob')
    // d1 at 0, d2 at 1, d3 at 2: each opened after one more message.
    for (const device of ['d1', 'd2', 'd3']) {
      t.same((await cursors.openCursor(bob, device)).evicted, [], `${device} fits`)
      await send(store, alice, bob, `m-${device}`)
    }
    t.same(await cursors.openCursor(bob, 'd4'), { seq: 3, created: true, evicted: ['d1'] }, 'the fourth evicts the lowest cursor, in the same step')
    t.equal(await cursors.cursor(bob, 'd1'), undefined, 'its cursor is gone')
    await cursors.saveCursors([{ user: bob, device: 'd1', seq: 3 }])
    t.equal(await cursors.cursor(bob, 'd1'), undefined, 'a late save of the evicted device does not bring it back')

    await connect(bob, 'd2')
    t.same((await cursors.openCursor(bob, 'd5')).evicted, ['d3'], 'a connected device is never evicted: the next one behind goes')
    t.equal(await cursors.cursor(bob, 'd2'), 1, 'the connected one keeps its cursor')
    t.same((await cursors.openCursor(bob, 'd2')).evicted, [], 'reopening an existing cursor evicts nothing')

    await cursors.dropCursor(bob, 'd4')
    t.same((await cursors.openCursor(bob, 'd6')).evicted, [], 'a dropped session frees its place')

    await cursors.saveCursors([{ user: bob, device: 'd5', seq: 3 }, { user: bob, device: 'd6', seq: 3 }])
    t.same((await cursors.openCursor(bob, 'd1')).evicted, ['d5'], 'equal cursors: the lowest device id goes first')

    await connect(bob, 'd1')
    await connect(bob, 'd6')
    const over = await cursors.openCursor(bob, 'd7')
    t.same(over.evicted, [], 'every session connected: none is evicted, the new one is kept anyway')
    t.equal(await cursors.cursor(bob, 'd7'), 3)
    await disconnect(bob, 'd1')
    await disconnect(bob, 'd2')
    t.same((await cursors.openCursor(bob, 'd8')).evicted.sort(), ['d1', 'd2'], 'once they disconnect, the next new session brings the user back to the bound')
    const carol = uniqueUser('carol')
    t.same((await cursors.openCursor(carol, 'd1')).evicted, [], 'the bound is per user')

    const [a, b] = await Promise.all([cursors.openCursor(carol, 'x1'), cursors.openCursor(carol, 'x2')])
    const [c, d] = await Promise.all([cursors.openCursor(carol, 'x3'), cursors.openCursor(carol, 'x4')])
    t.equal([a, b, c, d].flatMap((opened) => opened.evicted).length, 2, 'concurrent opens: each eviction happens once')
    const kept = await Promise.all(['d1', 'x1', 'x2', 'x3', 'x4'].map((device) => cursors.cursor(carol, device)))
    t.equal(kept.filter((cursor) => cursor !== undefined).length, 3, 'and the user holds exactly the bound')
  })

  t.test(`${name}: retention`, async (t) => {
    const { store, close } = await open({ keepMs: 1000 })
    t.teardown(close)
    const alice = uniqueUser('alice')
    const bob = uniqueUser('bob')
    const carol = uniqueUser('carol')
    const old = Date.now() - 5000
    await send(store, alice, bob, 'old', old)
    await send(store, carol, bob, 'gone', old)
    await send(store, alice, bob, 'new')
    t.same((await store.events(bob, 0, 10)).events.map((event) => JSON.parse(event).id), ['new'], 'events past retention are gone')
    t.equal((await send(store, alice, bob, 'old')).status, 'stored', 'an id past retention can be reused')
    await store.events(bob, 0, 10) // a read applies retention first
    t.same((await store.conversations(bob, { limit: 10 })).conversations.map((c) => c.peer), [alice], 'a conversation whose messages are all past retention leaves the list')
  })
}

for (const { name, open } of STORES) {
  t.test(`${name}: blocking withholds the recipient's copy, and conversations are known`, async (t) => {
    const { store, blocks, close } = await open()
    t.teardown(close)
    const [alice, mallory, bob] = [uniqueUser('alice'), uniqueUser('mallory'), uniqueUser('bob')]
    t.equal(await blocks.isBlocked(alice, mallory), false)
    t.equal(await blocks.setBlocked(alice, mallory, 1000), 1000)
    t.equal(await blocks.setBlocked(alice, mallory, 2000), 1000, 'blocking again keeps the first time')
    await blocks.setBlocked(alice, bob, 3000)
    t.same(await blocks.blocked(alice), [{ user: bob, since: 3000 }, { user: mallory, since: 1000 }], 'most recent first')
    t.equal(await blocks.setUnblocked(alice, bob), true)
    t.equal(await blocks.setUnblocked(alice, bob), false, 'unblocking twice: false')
    t.equal(await blocks.isBlocked(alice, mallory), true)
    t.equal(await blocks.isBlocked(mallory, alice), false, 'one way only')

    const sink = new RecordingSink()
    const withheld = await send(store, mallory, alice, 'w1', Date.now(), sink)
    t.match(withheld, { status: 'stored', newConversation: true })
    t.same(sink.events, [], 'nothing reaches the blocker')
    t.same(sink.arrivals, [], 'and nothing arrives (no push)')
    t.equal(await store.head(alice), 0, 'nothing in the blocker\'s log')
    t.equal((await store.events(mallory, 0, 10)).events.length, 1, 'the sender\'s log has it')
    t.equal(await store.hasConversation(mallory, alice), true)
    t.equal(await store.hasConversation(alice, mallory), false)
    t.match(await send(store, mallory, alice, 'w1'), { status: 'duplicate' }, 'a retry is a duplicate, as ever')
    t.match(await store.recall(mallory, 'w1', Date.now(), 60_000, sink), { status: 'recalled' })
    await store.relayed()
    t.equal(await store.head(alice), 0, 'a recall of a withheld message writes nothing for the blocker')
    t.same(sink.events, [])

    t.match(await send(store, alice, mallory, 'a1'), { status: 'stored', newConversation: true }, 'the blocker may still write')
    await blocks.setUnblocked(alice, mallory)
    const after = new RecordingSink()
    t.match(await send(store, mallory, alice, 'w2', Date.now(), after), { status: 'stored', newConversation: undefined })
    t.match(after.of(alice), [{ seq: 2, id: 'w2' }], 'after unblocking: delivered')
  })
}

for (const { name, open } of STORES) {
  t.test(`${name}: deleteUser empties the user's log in this tier; the peer's stays`, async (t) => {
    const { store, cursors, blocks, userKeys, close } = await open()
    t.teardown(close)
    const alice = uniqueUser('alice')
    const bob = uniqueUser('bob')
    const carol = uniqueUser('carol')
    await send(store, alice, bob, 'd1')
    await send(store, bob, alice, 'd2')
    await send(store, bob, carol, 'd3')
    await store.receipt('read', bob, alice, 1, Date.now(), new RecordingSink())
    await store.recall(bob, 'd3', Date.now(), 60_000, new RecordingSink())
    await store.appendNotices([{ user: bob, peer: 'g:x', ts: 5, tail: '"type":"receipt","kind":"read","ts":5}' }])
    await store.relayed()
    await cursors.openCursor(bob, 'phone')
    await blocks.setBlocked(bob, carol, Date.now())
    t.ok(await store.head(bob) >= 5, 'bob has a log')
    const alicesLog = await store.readLog(alice, 0, 100)
    const alicesConversations = await store.conversations(alice, { limit: 10 })

    await store.deleteUser(bob)
    t.equal(await store.head(bob), 0, 'head is 0')
    t.equal(await store.floor(bob), 1)
    t.same(await store.readLog(bob, 0, 100), [], 'the log is empty')
    t.same((await store.events(bob, 0, 100)).events, [])
    t.same((await store.conversations(bob, { limit: 10 })).conversations, [], 'no conversations')
    t.same((await store.conversation(bob, alice, { limit: 10 })).events, [])
    t.equal(await store.unreadTotal(bob), 0)
    t.equal(await store.hasConversation(bob, alice), false)
    t.equal(await store.seqOfMessage(bob, alice, 'd2'), undefined, 'no id records')
    t.equal(await cursors.cursor(bob, 'phone'), undefined, 'no cursors')
    t.same(await blocks.blocked(bob), [], 'no blocks')
    t.equal(await blocks.isBlocked(bob, carol), false)
    if (userKeys !== undefined) t.same(await userKeys(bob), [], 'not one key of the user left')
    t.same(await store.readLog(alice, 0, 100), alicesLog, 'the peer\'s log is intact, byte for byte')
    t.same(await store.conversations(alice, { limit: 10 }), alicesConversations, 'and her conversation with him')

    const fresh = new RecordingSink()
    await send(store, alice, bob, 'd4', Date.now(), fresh)
    t.match(fresh.of(bob), [{ seq: 1, id: 'd4', from: alice }], 'a new message starts a new log at seq 1')
    t.same((await store.readLog(bob, 0, 100)).map((entry) => JSON.parse(entry.event!).id), ['d4'], 'holding only what came after')
    t.match((await store.conversations(bob, { limit: 10 })).conversations, [{ peer: alice, lastSeq: 1, unread: 1, readUpTo: 0 }])
    t.same(await cursors.openCursor(bob, 'phone'), { seq: 1, created: true, evicted: [] }, 'a device starts a new session')
    const again = await send(store, bob, alice, 'd2')
    t.match(again, { status: 'stored' }, 'an id of the deleted log is new again')
    if (again.status === 'stored') t.match(JSON.parse(again.senderEvent), { seq: 2, id: 'd2' })
    t.match(JSON.parse((await store.readLog(alice, 0, 100)).at(-1)!.event!), { id: 'd2', from: bob }, 'and reaches the peer')
    t.equal(await store.head(carol), 2, 'carol keeps her copy and the recall')
  })

  t.test(`${name}: a write racing deleteUser is deleted with the log or starts the new one, never half`, async (t) => {
    const { store, close } = await open()
    t.teardown(close)
    for (let round = 0; round < 5; round++) {
      const bob = uniqueUser('bob')
      const carol = uniqueUser('carol')
      for (let i = 0; i < 10; i++) await send(store, carol, bob, `old${i}`)
      const before = Array.from({ length: 10 }, (_, i) => send(store, carol, bob, `race${i}`))
      const deleted = store.deleteUser(bob)
      const after = Array.from({ length: 10 }, (_, i) => send(store, carol, bob, `race${10 + i}`))
      await Promise.all([deleted, ...before, ...after])
      const log = await store.readLog(bob, 0, 1000)
      t.same(log.map((entry) => entry.seq), Array.from({ length: log.length }, (_, i) => i + 1), `round ${round}: ${log.length} left, gapless from 1`)
      t.ok(log.every((entry) => JSON.parse(entry.event!).id.startsWith('race')), 'none of the old log')
      t.equal(await store.head(bob), log.length, 'the head is the last of them')
      const { conversations } = await store.conversations(bob, { limit: 10 })
      t.same(conversations.map((c) => [c.peer, c.lastSeq, c.unread]), log.length === 0 ? [] : [[carol, log.length, log.length]], 'the indexes agree with the log')
    }
  })
}

for (const { name, open } of STORES.filter(({ name }) => name.startsWith('redis'))) {
  t.test(`${name}: the relay completes what a dead writer left, once, in order`, async (t) => {
    // fastPath off: the writer returns and relays nothing, as a process killed right after its write.
    const dead = await open({ fastPath: false })
    const sweeperA = await open()
    const sweeperB = await open()
    t.teardown(async () => { await dead.close(); await sweeperA.close(); await sweeperB.close() })
    const [alice, bob, carol] = [uniqueUser('alice'), uniqueUser('bob'), uniqueUser('carol')]
    for (let i = 1; i <= 2; i++) await send(dead.store, alice, bob, `m${i}`)
    await send(dead.store, alice, carol, 'c1')
    t.equal(await dead.store.head(bob), 0, 'durable in the sender\'s log only')
    t.equal(await dead.store.head(alice), 3)

    const sink = new RecordingSink()
    t.ok(await sweeperA.store.sweepRelay(sink, { graceMs: 0, everySlot: true }) >= 1, 'another process sweeps it')
    t.match((await sweeperA.store.readLog(bob, 0, 10)).map((entry) => JSON.parse(entry.event!)), [{ seq: 1, id: 'm1' }, { seq: 2, id: 'm2' }])
    t.match((await sweeperA.store.readLog(carol, 0, 10)).map((entry) => JSON.parse(entry.event!)), [{ seq: 1, id: 'c1' }])
    t.same(sink.arrivals.map(({ to, id, seq }) => [to, id, seq]).sort(), [[bob, 'm1', 1], [bob, 'm2', 2], [carol, 'c1', 1]], 'reported to the sweeper\'s sink')
    await sweeperA.store.sweepRelay(sink, { graceMs: 0, everySlot: true })
    t.equal(await sweeperA.store.head(bob), 2, 'a second sweep finds nothing to do')

    // A receipt and a recall left behind too, then two processes sweeping at once.
    await dead.store.receipt('read', bob, alice, 2, Date.now(), sink)
    await dead.store.recall(alice, 'm1', Date.now(), 60_000, sink)
    await dead.store.edit(alice, 'm2', 'edited | m2', Date.now(), 60_000, sink)
    for (let i = 3; i <= 40; i++) await send(dead.store, alice, bob, `m${i}`)
    await Promise.all([
      sweeperA.store.sweepRelay(new RecordingSink(), { graceMs: 0, everySlot: true }),
      sweeperB.store.sweepRelay(new RecordingSink(), { graceMs: 0, everySlot: true })
    ])
    await Promise.all([sweeperA.store.relayed(), sweeperB.store.relayed()])
    const bobs = (await sweeperA.store.readLog(bob, 0, 100)).map((entry) => JSON.parse(entry.event!) as { seq: number, type: string, id: string })
    // bob's own: m1, m2, his read receipt; then what alice's outbox held: the recall, the edit, m3..m40.
    t.same(bobs.map((event) => event.seq), Array.from({ length: 43 }, (_, i) => i + 1), 'gapless, nothing twice')
    t.same(bobs.filter((event) => event.type === 'message').map((event) => event.id), Array.from({ length: 40 }, (_, i) => `m${i + 1}`), 'every message once, in the order sent')
    t.match(bobs[3], { type: 'recall', id: 'm1', messageSeq: 1 }, 'the recall after the messages before it')
    t.match(bobs[4], { type: 'edit', id: 'm2', messageSeq: 2, body: 'edited | m2' }, 'the edit from the outbox')
    t.match(bobs[1], { id: 'm2', body: 'edited | m2', edited: true })
    const alices = (await sweeperA.store.readLog(alice, 0, 100)).map((entry) => JSON.parse(entry.event!) as { type: string })
    t.equal(alices.filter((event) => event.type === 'receipt').length, 1, 'the receipt reached the sender once')
    t.match((await sweeperA.store.conversations(alice, { limit: 1 })).conversations, [{ peer: bob, peerReadUpTo: 2 }])
    t.match((await sweeperA.store.conversations(bob, { limit: 1 })).conversations, [{ peer: alice, unread: 38 }], 'unread: the recalled one no longer counts')
  })
}

t.test('leveldb: cursors written before the session index are counted after an upgrade', async (t) => {
  const path = join(tempDataDir(), 'history')
  const bob = uniqueUser('bob')
  const before = await LevelHistory.open(path, 0)
  for (const device of ['d1', 'd2', 'd3']) await before.openCursor(bob, device)
  await before.close()
  // What an older version left: cursors only, no index.
  const raw = new ClassicLevel<string, string>(path)
  await raw.batch([{ type: 'del', key: `curs!${bob}` }, { type: 'del', key: 'meta!sessions-indexed' }])
  await raw.close()
  const after = await LevelHistory.open(path, 0, { maxPerUser: 3, isConnected: () => false })
  t.teardown(() => after.close())
  t.same((await after.openCursor(bob, 'd4')).evicted, ['d1'], 'the old sessions count towards the bound')
})
