// One behaviour, every implementation: the PresenceRegistry contract against
// memory (embedded mode: one process), a single Redis (DB 0, unique ids) and
// a real Redis Cluster of this file's own (3 primaries, 3 replicas). On Redis
// several processes share presence: a peer registry with its own node id and
// its own connection stands for another process, and it dies as a process
// does, by losing its connection, so its heartbeat really expires (a short
// TTL here) and the survivors' sweeps, run as the tracker runs them, find it.
import t from 'tap'
import { pino } from 'pino'
import type { PresenceChange, PresenceRegistry, PresenceState } from '../presence/presence-registry.ts'
import { MemoryPresence } from '../presence/memory-presence.ts'
import { RedisPresence } from '../presence/redis-presence.ts'
import { aliveKey, NODES_KEY, nodeConnsKey } from '../presence/redis-presence-scripts.ts'
import type { RedisClient } from '../storage/redis-client.ts'
import { openCommands, type RedisTarget } from '../storage/redis-connection.ts'
import { presenceConnectionsKey, slotOf } from '../storage/redis-keys.ts'
import { REDIS_BASE } from './helpers/server-process.ts'
import { startRedisCluster } from './helpers/redis-cluster.ts'
import { uniqueUser } from './helpers/tokens.ts'

const REDIS_DB = 0
const TTL_MS = 1_500
const HEARTBEAT_MS = 300
const log = pino({ level: process.env.TEST_LOG ?? 'silent' })

interface Peer {
  presence: RedisPresence
  node: string
  /** Dies as kill -9 does: its connection is gone, so its heartbeat stops being refreshed. */
  crash (): void
}

interface Opened {
  presence: PresenceRegistry
  /** Redis only: the storage itself, and another process on it. */
  redis?: RedisClient
  node?: string
  peer?: () => Promise<Peer>
  close (): Promise<void>
}

function redisOpened (target: RedisTarget): () => Promise<Opened> {
  // The connection the server gives presence (auto-pipelined; on a cluster, every primary connected first).
  const connect = (): Promise<RedisClient> => openCommands(target, 'presence-test', log)
  return async () => {
    const redis = await connect()
    const closers: Array<() => void> = [() => redis.disconnect()]
    const node = uniqueUser('node')
    const presence = await RedisPresence.join(redis, node, { ttlMs: TTL_MS, heartbeatMs: HEARTBEAT_MS })
    return {
      presence,
      redis,
      node,
      async peer () {
        const own = await connect()
        closers.push(() => own.disconnect())
        const peerNode = uniqueUser('peer')
        return { presence: await RedisPresence.join(own, peerNode, { ttlMs: TTL_MS, heartbeatMs: HEARTBEAT_MS }), node: peerNode, crash: () => own.disconnect() }
      },
      async close () {
        try { await presence.leave(Date.now()) } finally { for (const close of closers) close() }
      }
    }
  }
}

const cluster = await startRedisCluster()
t.teardown(() => cluster.stop())
const seeds = cluster.seeds.split(',').map((seed) => ({ host: seed.split(':')[0]!, port: Number(seed.split(':')[1]) }))

const STORES: Array<{ name: string, open: () => Promise<Opened> }> = [
  { name: 'memory', open: async () => ({ presence: new MemoryPresence(), close: async () => {} }) },
  { name: 'redis', open: redisOpened({ kind: 'single', url: `${REDIS_BASE}/${REDIS_DB}` }) },
  { name: 'redis-cluster', open: redisOpened({ kind: 'cluster', nodes: seeds }) }
]

const statuses = (states: PresenceState[]): string[] => states.map((state) => state.status)
const ours = (changes: PresenceChange[], users: string[]): PresenceChange[] => changes.filter((change) => users.includes(change.user))

/** Sweeps as the tracker does (every 50 ms here) until `done` holds for everything reported so far. */
async function sweepUntil (presence: PresenceRegistry, done: (changes: PresenceChange[]) => boolean, timeoutMs = 20_000): Promise<PresenceChange[]> {
  const changes: PresenceChange[] = []
  const deadline = Date.now() + timeoutMs
  while (!done(changes)) {
    if (Date.now() > deadline) throw new Error(`sweeps reported only ${JSON.stringify(changes)} in ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 50))
    changes.push(...await presence.sweep(Date.now()))
  }
  return changes
}

/** Waits for a condition of the storage (an expiry), checking every 50 ms. */
async function until (done: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!await done()) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

for (const { name, open } of STORES) {
  t.test(`${name}: online while any device is connected`, async (t) => {
    const { presence, redis, node, close } = await open()
    t.teardown(close)
    const alice = uniqueUser('alice')
    const [phone, laptop] = [`${alice}:phone`, `${alice}:laptop`]
    t.same(await presence.connected(alice, phone, 't1', 1000), { status: 'online', ts: 1000, lastSeen: 1000 }, 'the first device brings the user online')
    t.equal(await presence.connected(alice, laptop, 't2', 2000), undefined, 'a second device changes nothing')
    t.same((await presence.connectedDevices(alice)).sort(), [laptop, phone], 'the user\'s connections')
    t.equal(await presence.isConnected(alice, phone), true)
    if (redis !== undefined) t.same(await redis.hgetall(presenceConnectionsKey(alice)), { [phone]: `${node}|t1`, [laptop]: `${node}|t2` }, 'the hash the log feed reads: clientId → <node>|<token>')
    t.equal(await presence.disconnected(alice, phone, 't1', 3000), undefined, 'one device leaving is not offline')
    t.equal(await presence.isConnected(alice, phone), false)
    t.same(statuses(await presence.states([alice])), ['online'])
    t.same(await presence.disconnected(alice, laptop, 't2', 4000), { status: 'offline', ts: 4000, lastSeen: 4000 }, 'the last one is')
    t.equal(await presence.disconnected(alice, laptop, 't2', 5000), undefined, 'a repeated disconnect changes nothing')
    t.same(await presence.connectedDevices(alice), [])
    t.same(await presence.states([alice]), [{ status: 'offline', ts: 4000, lastSeen: 4000 }])
  })

  t.test(`${name}: a takeover (same clientId, new token) never shows offline`, async (t) => {
    const { presence, peer, close } = await open()
    t.teardown(close)
    const bob = uniqueUser('bob')
    const phone = `${bob}:phone`
    t.ok(await presence.connected(bob, phone, 'old', 1000))
    t.equal(await presence.connected(bob, phone, 'new', 2000), undefined, 'the new connection is recorded before the old one closes')
    t.equal(await presence.disconnected(bob, phone, 'old', 3000), undefined, 'the old connection\'s disconnect is not offline')
    t.same(statuses(await presence.states([bob])), ['online'])
    t.same(await presence.connectedDevices(bob), [phone])
    t.match(await presence.disconnected(bob, phone, 'new', 4000), { status: 'offline', ts: 4000 })
    if (peer === undefined) return
    // Across processes: taken over from the peer here.
    const other = await peer()
    t.ok(await other.presence.connected(bob, phone, 'there', 5000))
    t.equal(await presence.connected(bob, phone, 'here', 6000), undefined)
    t.equal(await other.presence.disconnected(bob, phone, 'there', 7000), undefined, 'the other process\'s late disconnect is not offline')
    t.same(statuses(await other.presence.states([bob])), ['online'], 'seen the same from both')
    await other.presence.leave(8000)
    t.equal(await presence.isConnected(bob, phone), true, 'nor is its leaving')
  })

  t.test(`${name}: states`, async (t) => {
    const { presence, close } = await open()
    t.teardown(close)
    const users = Array.from({ length: 12 }, (_, i) => uniqueUser(`s${i}`))
    t.ok(new Set(users.map((user) => slotOf(presenceConnectionsKey(user)))).size > 5, 'the users are in several slots')
    const never = uniqueUser('never')
    t.same(await presence.states([]), [])
    for (const [i, user] of users.entries()) await presence.connected(user, `${user}:d`, 't', 1000 + i)
    for (const user of users.filter((_, i) => i % 2 === 1)) await presence.disconnected(user, `${user}:d`, 't', 9000)
    const before = Date.now()
    const states = await presence.states([never, ...users])
    t.same(states[0], { status: 'offline', ts: 0, lastSeen: 0 }, 'never seen')
    t.same(statuses(states.slice(1)), users.map((_, i) => (i % 2 === 0 ? 'online' : 'offline')), 'in the order asked')
    t.ok(states.slice(1).every((state, i) => i % 2 === 1
      ? state.ts === 9000 && state.lastSeen === 9000
      : state.ts === 1000 + i && state.lastSeen >= before), 'online: since when, and seen now; offline: since when')
  })

  t.test(`${name}: leaving forgets this process's connections only`, async (t) => {
    const { presence, peer, close } = await open()
    t.teardown(close)
    const [ann, ben] = [uniqueUser('ann'), uniqueUser('ben')]
    await presence.connected(ann, `${ann}:a`, 't', 1000)
    await presence.connected(ben, `${ben}:a`, 't', 1000)
    const other = peer === undefined ? undefined : await peer()
    await other?.presence.connected(ben, `${ben}:b`, 't', 1000)
    const changes = ours(await presence.leave(2000), [ann, ben])
    t.same(changes, [{ user: ann, state: { status: 'offline', ts: 2000, lastSeen: 2000 } }, ...(other === undefined ? [{ user: ben, state: { status: 'offline', ts: 2000, lastSeen: 2000 } }] : [])])
    if (other === undefined) return
    t.same(statuses(await other.presence.states([ann, ben])), ['offline', 'online'], 'a user with a device on a live process stays online')
    t.same(await other.presence.connectedDevices(ben), [`${ben}:b`])
    await other.presence.leave(3000)
  })

  t.test(`${name}: a dead process's connections are swept`, async (t) => {
    const { presence, peer, redis, close } = await open()
    t.teardown(close)
    if (peer === undefined || redis === undefined) {
      t.same(await presence.sweep(Date.now()), [], 'one process: nothing to sweep')
      return
    }
    const dying = await peer()
    const [alice, bob, carol] = [uniqueUser('alice'), uniqueUser('bob'), uniqueUser('carol')]
    const many = Array.from({ length: 20 }, (_, i) => uniqueUser(`m${i}`))
    await dying.presence.connected(alice, `${alice}:phone`, 'a', 1000)
    await dying.presence.connected(alice, `${alice}:laptop`, 'b', 1000)
    // Bob also has a device here; Carol's phone moved here (a takeover) before the peer died.
    await dying.presence.connected(bob, `${bob}:a`, 'c', 1000)
    await presence.connected(bob, `${bob}:b`, 'd', 1000)
    await dying.presence.connected(carol, `${carol}:phone`, 'e', 1000)
    await presence.connected(carol, `${carol}:phone`, 'f', 1000)
    for (const user of many) await dying.presence.connected(user, `${user}:d`, 'g', 1000)
    const users = [alice, bob, carol, ...many]

    dying.crash()
    const crashedAt = Date.now()
    t.same(ours(await presence.sweep(Date.now()), users), [], 'a process whose heartbeat has not expired is not swept')
    const changes = ours(await sweepUntil(presence, (seen) => ours(seen, users).length > 0), users)
    const after = Date.now() - crashedAt
    t.ok(after >= TTL_MS - HEARTBEAT_MS - 50, `swept ${after} ms after the crash, once its heartbeat expired (TTL ${TTL_MS} ms)`)
    t.same(changes.map((change) => change.user).sort(), [alice, ...many].sort(), 'one sweep: each user who had no other connection, once')
    t.ok(changes.every((change) => change.state.status === 'offline'))
    t.same(statuses(await presence.states(users)), ['offline', 'online', 'online', ...many.map(() => 'offline')], 'a connection live elsewhere is never forgotten')
    t.same(await presence.connectedDevices(bob), [`${bob}:b`])
    t.same(await presence.connectedDevices(carol), [`${carol}:phone`], 'the taken-over connection stays')
    t.same(ours(await presence.sweep(Date.now()), users), [], 'a second sweep reports nothing')
    t.equal(await redis.sismember(NODES_KEY, dying.node), 0, 'the dead process is forgotten')
    t.equal(await redis.exists(nodeConnsKey(dying.node)), 0, 'with its connection index')
  })

  t.test(`${name}: sweeps are idempotent, concurrent, and resumable`, async (t) => {
    const { presence, peer, redis, close } = await open()
    t.teardown(close)
    if (peer === undefined || redis === undefined) return t.same(await presence.sweep(Date.now()), [], 'one process: nothing to sweep')
    const [dying, second] = [await peer(), await peer()]
    const users = Array.from({ length: 30 }, (_, i) => uniqueUser(`u${i}`))
    for (const user of users) await dying.presence.connected(user, `${user}:d`, 'tok', 1000)
    // What a sweep that died midway leaves: its first user forgotten, the index and the node still there.
    const [first, ...rest] = users
    await redis.hdel(presenceConnectionsKey(first!), `${first!}:d`)
    dying.crash()
    await until(async () => (await redis.exists(aliveKey(dying.node))) === 0)
    // Two processes sweep at once, as two trackers would.
    const [a, b] = await Promise.all([presence.sweep(Date.now()), second.presence.sweep(Date.now())])
    const seen = ours([...a, ...b], users)
    t.same(seen.map((change) => change.user).sort(), rest.sort(), 'each offline change reported once, by one of the two; none for the user forgotten before')
    t.comment(`split between the two sweepers: ${ours(a, users).length} + ${ours(b, users).length}`)
    t.same(ours([...await presence.sweep(Date.now()), ...await second.presence.sweep(Date.now())], users), [], 'and again: nothing')
    t.equal(await redis.sismember(NODES_KEY, dying.node), 0, 'the dead process is forgotten')
    await second.presence.leave(Date.now())
  })
}
