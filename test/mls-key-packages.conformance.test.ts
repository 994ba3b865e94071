// One behaviour, every implementation: the MLS KeyPackage directory
// (keys/mls-key-packages.ts) against LevelDB, one Redis (DB 11, unique ids) and
// a real Redis Cluster of this file's own, each Redis one seen from two
// processes. The store keeps packages opaque: these are stand-in strings.
import t from 'tap'
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { LevelMlsKeyPackages, RedisMlsKeyPackages, type MlsKeyPackageStore, type StoredKeyPackage } from '../keys/mls-key-packages.ts'
import type { RedisClient } from '../storage/redis-client.ts'
import { startRedisCluster } from './helpers/redis-cluster.ts'
import { clusterRedis, singleRedis, twoProcesses } from './helpers/store-redis.ts'
import { tempDataDir } from './helpers/server-process.ts'
import { uniqueUser } from './helpers/tokens.ts'

const REDIS_DB = 11

interface Opened {
  store: MlsKeyPackageStore
  /** Another process's view. */
  other: MlsKeyPackageStore
  redis?: RedisClient
  close (): Promise<void>
}

async function redisOpened (open: () => Promise<RedisClient>): Promise<Opened> {
  const { one, other, redis, close } = await twoProcesses(open, (client) => new RedisMlsKeyPackages(client))
  return { store: one, other, redis, close }
}

const cluster = await startRedisCluster()
t.teardown(() => cluster.stop())

const STORES: Array<{ name: string, open: () => Promise<Opened> }> = [
  {
    name: 'leveldb',
    open: async () => {
      const store = await LevelMlsKeyPackages.open(join(tempDataDir(), 'mls-key-packages'))
      return { store, other: store, close: () => store.close() }
    }
  },
  { name: 'redis', open: () => redisOpened(() => singleRedis(REDIS_DB)) },
  { name: 'redis-cluster', open: () => redisOpened(() => clusterRedis(cluster)) }
]

const pkg = (label: string): StoredKeyPackage => ({ ref: createHash('sha256').update(label).digest('hex'), data: Buffer.from(label).toString('base64') })
const label = (data: string): string => Buffer.from(data, 'base64').toString()
const LIMITS = { perDevice: 5, devicesPerUser: 3 }

for (const { name, open } of STORES) {
  t.test(`${name}: upload, count, claim one per device, last resort`, async (t) => {
    const { store, other, close } = await open()
    t.teardown(close)
    const user = uniqueUser('kp')
    t.same(await other.claim(user), [], 'no device: nothing to claim')
    t.same(await store.count(user, 'phone'), { oneTime: 0, lastResort: false }, 'nothing uploaded')
    t.same(await store.upload(user, 'phone', [pkg('p1')], undefined, LIMITS), { ok: false, reason: 'last_resort_required', oneTime: 0 }, 'a first upload without a last-resort package is refused')
    t.same(await store.upload(user, 'phone', [pkg('p1'), pkg('p2')], pkg('p-last'), LIMITS), { ok: true, oneTime: 2 }, 'with one: stored')
    t.same(await other.upload(user, 'phone', [pkg('p3')], undefined, LIMITS), { ok: true, oneTime: 3 }, 'a top-up needs no new last resort')
    t.same(await store.upload(user, 'laptop', [pkg('l1')], pkg('l-last'), LIMITS), { ok: true, oneTime: 1 }, 'a second device')
    // Device ids that share a prefix stay apart (ranges by device id).
    t.same(await store.upload(user, 'phone.2', [], pkg('p2-last'), LIMITS), { ok: true, oneTime: 0 }, 'a device with only a last-resort package')
    t.same(await other.count(user, 'phone'), { oneTime: 3, lastResort: true }, 'counted on every process')
    t.same(await other.count(user, 'phone.2'), { oneTime: 0, lastResort: true }, 'apart from phone.2')

    const first = await other.claim(user)
    t.same(first.map((p) => [p.device, p.lastResort]), [['laptop', false], ['phone', false], ['phone.2', true]], 'one per device, in device order: a one-time package, else the last resort')
    t.same([label(first[0]!.data), label(first[2]!.data)], ['l1', 'p2-last'], 'laptop\'s one-time package, phone.2\'s last resort')
    const second = await store.claim(user)
    t.same(second.map((p) => [p.device, p.lastResort]), [['laptop', true], ['phone', false], ['phone.2', true]], 'laptop is down to its last resort')
    t.equal(label(second[0]!.data), 'l-last', 'which is handed out')
    const third = await other.claim(user)
    const phone = [first[1]!, second[1]!, third[1]!].map((p) => label(p.data))
    t.same([...phone].sort(), ['p1', 'p2', 'p3'], 'phone\'s three one-time packages, each once')
    t.same((await store.claim(user)).map((p) => [p.device, label(p.data), p.lastResort]), [['laptop', 'l-last', true], ['phone', 'p-last', true], ['phone.2', 'p2-last', true]], 'then last resorts, again and again')
    t.same(await store.count(user, 'phone'), { oneTime: 0, lastResort: true }, 'the count says so')

    t.same(await other.upload(user, 'phone', [pkg('p4')], pkg('p-last-2'), LIMITS), { ok: true, oneTime: 1 }, 'a top-up may replace the last resort')
    t.same((await store.claim(user)).map((p) => label(p.data)), ['l-last', 'p4', 'p2-last'], 'one-time first again')
    t.same((await store.claim(user)).map((p) => label(p.data)), ['l-last', 'p-last-2', 'p2-last'], 'then the new last resort')
  })

  t.test(`${name}: bounds and duplicates refuse the whole upload`, async (t) => {
    const { store, other, close } = await open()
    t.teardown(close)
    const user = uniqueUser('kpb')
    const five = ['a', 'b', 'c', 'd', 'e'].map(pkg)
    t.same(await store.upload(user, 'd1', [...five, pkg('f')], pkg('last'), LIMITS), { ok: false, reason: 'too_many_packages', oneTime: 0 }, 'more than perDevice at once')
    t.same(await store.count(user, 'd1'), { oneTime: 0, lastResort: false }, 'nothing stored, not even the last resort')
    t.same(await store.upload(user, 'd1', five.slice(0, 4), pkg('last'), LIMITS), { ok: true, oneTime: 4 }, 'four')
    t.same(await other.upload(user, 'd1', [pkg('x'), pkg('y')], undefined, LIMITS), { ok: false, reason: 'too_many_packages', oneTime: 4 }, 'two more would be six')
    t.same(await other.upload(user, 'd1', [pkg('a')], undefined, LIMITS), { ok: false, reason: 'duplicate', oneTime: 4 }, 'a package already stored')
    t.same(await other.upload(user, 'd1', [pkg('last')], undefined, LIMITS), { ok: false, reason: 'duplicate', oneTime: 4 }, 'the last resort as a one-time package')
    t.same(await other.upload(user, 'd1', [], pkg('b'), LIMITS), { ok: false, reason: 'duplicate', oneTime: 4 }, 'a one-time package as the last resort')
    t.same(await other.upload(user, 'd2', [pkg('a')], pkg('last'), LIMITS), { ok: true, oneTime: 1 }, 'the same bytes on another device are that device\'s business')
    t.same(await other.upload(user, 'd2', [pkg('x'), pkg('x')], undefined, LIMITS), { ok: false, reason: 'duplicate', oneTime: 1 }, 'twice in one upload')
    t.same(await other.upload(user, 'd1', [pkg('e')], undefined, LIMITS), { ok: true, oneTime: 5 }, 'the fifth')
    t.same(await store.upload(user, 'd3', [], pkg('l3'), LIMITS), { ok: true, oneTime: 0 }, 'a third device')
    t.same(await store.upload(user, 'd4', [], pkg('l4'), LIMITS), { ok: false, reason: 'too_many_devices', oneTime: 0 }, 'a fourth is beyond devicesPerUser')
    t.same(await store.upload(user, 'd3', [pkg('z')], undefined, LIMITS), { ok: true, oneTime: 1 }, 'a known device still tops up')
    t.same((await other.claim(user)).map((p) => p.device), ['d1', 'd2', 'd3'], 'the fourth holds nothing')

    t.equal(await store.removeDevice(user, 'd1'), true, 'a device retired')
    t.equal(await other.removeDevice(user, 'd1'), false, 'once')
    t.same(await other.count(user, 'd1'), { oneTime: 0, lastResort: false }, 'its packages are gone')
    t.same(await store.upload(user, 'd4', [], pkg('l4'), LIMITS), { ok: true, oneTime: 0 }, 'which makes room for another')
    t.same((await other.claim(user)).map((p) => p.device), ['d2', 'd3', 'd4'], 'claimed from the three')
    await other.removeUser(user)
    t.same(await store.claim(user), [], 'an account deleted: nothing left')
    t.same(await store.count(user, 'd2'), { oneTime: 0, lastResort: false }, 'nothing counted')
  })

  t.test(`${name}: concurrent claims never hand out a one-time package twice`, async (t) => {
    const { store, other, close } = await open()
    t.teardown(close)
    const user = uniqueUser('kpc')
    const limits = { perDevice: 100, devicesPerUser: 0 }
    const devices = ['a', 'b', 'c']
    for (const device of devices) {
      const result = await store.upload(user, device, Array.from({ length: 20 }, (_, i) => pkg(`${device}-${i}`)), pkg(`${device}-last`), limits)
      t.ok(result.ok, `${device}: 20 one-time packages`)
    }
    // 2 × 15 claims at once, half on each process: 30 per device asked, 20 there.
    const claims = await Promise.all(Array.from({ length: 30 }, (_, i) => (i % 2 === 0 ? store : other).claim(user)))
    for (const device of devices) {
      const got = claims.map((c) => c.find((p) => p.device === device)!)
      t.equal(got.length, 30, `${device}: in every claim`)
      const oneTime = got.filter((p) => !p.lastResort).map((p) => label(p.data))
      t.equal(oneTime.length, 20, `${device}: its 20 one-time packages handed out`)
      t.equal(new Set(oneTime).size, 20, `${device}: each once`)
      t.ok(got.filter((p) => p.lastResort).every((p) => label(p.data) === `${device}-last`), `${device}: the other 10 claims got its last resort`)
    }
  })
}
