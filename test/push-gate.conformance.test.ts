// One behaviour, every implementation: the PushGate contract in memory
// (embedded mode), on one Redis (DB 11, unique ids) and on a real Redis
// Cluster of this file's own. In Redis mode a window is shared by every
// process: the suite opens two gates on two connections there.
import t from 'tap'
import { MemoryPushGate, RedisPushGate, type DeferredAlert, type PushGate, type PushWindow } from '../push/push-gate.ts'
import type { RedisClient } from '../storage/redis-client.ts'
import { ownerKey, userTag } from '../storage/redis-keys.ts'
import { startRedisCluster } from './helpers/redis-cluster.ts'
import { clusterRedis, singleRedis, twoProcesses } from './helpers/store-redis.ts'
import { uniqueUser } from './helpers/tokens.ts'

const REDIS_DB = 11

interface Opened {
  gate: PushGate
  /** Another process's gate: the same windows in Redis mode, its own in memory. */
  other: PushGate
  shared: boolean
  redis?: RedisClient
  close (): Promise<void>
}

async function redisOpened (open: () => Promise<RedisClient>): Promise<Opened> {
  const { one, other, redis, close } = await twoProcesses(open, (client) => new RedisPushGate(client))
  return { gate: one, other, shared: true, redis, close }
}

const cluster = await startRedisCluster()
t.teardown(() => cluster.stop())

const STORES: Array<{ name: string, open: () => Promise<Opened> }> = [
  { name: 'memory', open: async () => ({ gate: new MemoryPushGate(), other: new MemoryPushGate(), shared: false, async close () {} }) },
  { name: 'redis', open: () => redisOpened(() => singleRedis(REDIS_DB)) },
  { name: 'redis-cluster', open: () => redisOpened(() => clusterRedis(cluster)) }
]

const windowOf = (user: string, deviceId = 'phone', conversation = 'bob'): PushWindow => ({ user, deviceId, conversation })
const alert = (to: string, seq: number, extra: Partial<DeferredAlert> = {}): DeferredAlert => ({ from: 'bob', to, id: `m${seq}`, seq, ...extra })

for (const { name, open } of STORES) {
  t.test(`${name}: one push per device and conversation per window`, async (t) => {
    const { gate, other, shared, close } = await open()
    t.teardown(close)
    const alice = uniqueUser('alice')
    const windowMs = 400
    const opened = Date.now()
    t.equal(await gate.open(windowOf(alice), windowMs), true, 'the first message opens the window')
    t.equal(await gate.open(windowOf(alice), windowMs), false, 'the next one in it does not')
    if (shared) t.equal(await other.open(windowOf(alice), windowMs), false, 'nor on another process')
    t.equal(await gate.open(windowOf(alice, 'tablet'), windowMs), true, 'another device has its own window')
    t.equal(await gate.open(windowOf(alice, 'phone', 'g:team'), windowMs), true, 'so has another conversation')
    t.equal(await gate.open(windowOf(uniqueUser('carol')), windowMs), true, 'and another user')
    while (!await gate.open(windowOf(alice), windowMs)) await new Promise((resolve) => setTimeout(resolve, 25))
    t.ok(Date.now() - opened >= windowMs - 5, `it opens again once the window has passed (${Date.now() - opened} ms)`)
  })

  t.test(`${name}: the latest deferred alert is kept, whatever order they come in`, async (t) => {
    const { gate, other, shared, close } = await open()
    t.teardown(close)
    const alice = uniqueUser('alice')
    const late = shared ? other : gate
    await gate.defer(windowOf(alice), alert(alice, 5), 1000)
    await late.defer(windowOf(alice), alert(alice, 3), 1000)
    await gate.defer(windowOf(alice), alert(alice, 12), 1000)
    await late.defer(windowOf(alice), alert(alice, 9), 1000)
    await gate.defer(windowOf(alice, 'tablet'), alert(alice, 1), 1000)
    t.same(await late.take(windowOf(alice)), alert(alice, 12), 'the highest seq (12 is above 9: compared as numbers)')
    t.equal(await gate.take(windowOf(alice)), undefined, 'taken once')
    t.same(await gate.take(windowOf(alice, 'tablet')), alert(alice, 1), 'per device')
    const big = 2 ** 40 + 1
    await gate.defer(windowOf(alice), alert(alice, big - 2), 1000)
    await gate.defer(windowOf(alice), alert(alice, big), 1000)
    await gate.defer(windowOf(alice), alert(alice, big - 1), 1000)
    t.same(await gate.take(windowOf(alice)), alert(alice, big), 'seqs past 32 bits')
  })

  t.test(`${name}: only the alert is kept, never a body`, async (t) => {
    const { gate, redis, close } = await open()
    t.teardown(close)
    const alice = uniqueUser('alice')
    let nested: unknown = 'deep'
    for (let i = 0; i < 2_000; i++) nested = [nested]
    const group = { id: 'team', name: 'a|b "quoted" \u00e9\u{1F600}' }
    const message = { ...alert(alice, 7, { group }), body: nested, ts: 1 }
    const window = windowOf(alice, 'phone', 'g:team')
    await gate.defer(window, message, 1000)
    await gate.defer(window, alert(alice, 6), 1000)
    if (redis !== undefined) {
      const stored = await redis.get(ownerKey('push', userTag(alice), 'q:phone:g:team'))
      t.equal(stored, `7|${JSON.stringify(alert(alice, 7, { group }))}`, 'inboxd:push:{u:<user>}:q:<device>:<conversation> holds `<seq>|<alert>`')
    }
    t.same(await gate.take(window), alert(alice, 7, { group }), 'a message nested 2,000 deep is deferred (nothing decodes it) and comes back as its alert')
  })
}
