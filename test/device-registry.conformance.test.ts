// One behaviour, every implementation: the DeviceRegistry contract against
// LevelDB, one Redis (DB 11, unique ids) and a real Redis Cluster of this
// file's own (3 primaries, 3 replicas), where a user's registrations and a
// push token's holder live on different primaries.
import t from 'tap'
import { join } from 'node:path'
import { LevelDeviceRegistry, type DeviceRegistry, type RegisteredDevice } from '../push/device-registry.ts'
import { RedisDeviceRegistry } from '../push/redis-device-registry.ts'
import type { RedisClient } from '../storage/redis-client.ts'
import { ownerKey, pushTokenKey, slotOf, userTag } from '../storage/redis-keys.ts'
import { startRedisCluster } from './helpers/redis-cluster.ts'
import { clusterRedis, singleRedis, twoProcesses } from './helpers/store-redis.ts'
import { tempDataDir } from './helpers/server-process.ts'
import { uniqueUser } from './helpers/tokens.ts'

const REDIS_DB = 11

interface Opened {
  devices: DeviceRegistry
  /** A second registry on its own connection: another server process. */
  other: DeviceRegistry
  /** Redis: who holds a token, as its key says. */
  holder?: (token: string) => Promise<string | null>
  /** Redis: the keys of a user's registrations. */
  redis?: RedisClient
  /** The cluster: the port of the primary serving a user's keys. */
  nodeOf?: (user: string) => Promise<number>
  close (): Promise<void>
}

async function redisOpened (open: () => Promise<RedisClient>, nodeOf?: (user: string) => Promise<number>): Promise<Opened> {
  const { one, other, redis, close } = await twoProcesses(open, (client) => new RedisDeviceRegistry(client))
  return { devices: one, other, holder: (token) => redis.get(pushTokenKey(token)), redis, nodeOf, close }
}

const cluster = await startRedisCluster()
t.teardown(() => cluster.stop())

const STORES: Array<{ name: string, open: () => Promise<Opened> }> = [
  {
    name: 'leveldb',
    open: async () => {
      const devices = await LevelDeviceRegistry.open(join(tempDataDir(), 'devices'))
      return { devices, other: devices, close: () => devices.close() }
    }
  },
  { name: 'redis', open: () => redisOpened(() => singleRedis(REDIS_DB)) },
  { name: 'redis-cluster', open: () => redisOpened(() => clusterRedis(cluster), (user) => cluster.primaryOf(userTag(user))) }
]

const third = (user: string): number => Math.floor(slotOf(userTag(user)) * 3 / 16_384)
/** A user whose keys are in another third of the slots than `user`'s: another primary on a 3-primary cluster. */
function apartFrom (user: string, name: string): string {
  for (;;) {
    const other = uniqueUser(name)
    if (third(other) !== third(user)) return other
  }
}

let tokens = 0
const hexToken = (): string => (Date.now().toString(16) + (tokens++).toString(16).padStart(8, '0')).padEnd(64, 'a')
const ios = (deviceId: string, token = hexToken(), registeredAt = Date.now()): RegisteredDevice => ({ deviceId, platform: 'ios', token, sandbox: false, registeredAt })
const ids = async (devices: DeviceRegistry, user: string): Promise<string[]> => (await devices.list(user)).map((device) => device.deviceId).sort()

for (const { name, open } of STORES) {
  t.test(`${name}: register, update, list, remove`, async (t) => {
    const { devices, other, close } = await open()
    t.teardown(close)
    const alice = uniqueUser('alice')
    const phone = ios('phone')
    t.equal(await devices.put(alice, phone), 'registered')
    t.same(await other.list(alice), [phone], 'every process reads it, as registered')
    const renewed = { ...phone, token: hexToken(), sandbox: true, registeredAt: phone.registeredAt + 1 }
    t.equal(await other.put(alice, renewed), 'registered', 'registering again updates')
    t.same(await devices.list(alice), [renewed])
    t.equal(await devices.put(alice, { deviceId: 'pixel', platform: 'android', token: `fcm:${hexToken()}`, sandbox: false, registeredAt: 1 }), 'registered')
    t.same(await ids(devices, alice), ['phone', 'pixel'])
    t.equal(await devices.remove(alice, 'phone'), true)
    t.equal(await devices.remove(alice, 'phone'), false, 'removing it again: there is no such device')
    t.same(await ids(other, alice), ['pixel'])
    t.same(await devices.list(uniqueUser('nobody')), [])
  })

  t.test(`${name}: MAX_PUSH_DEVICES_PER_USER is a real bound`, async (t) => {
    const { devices, other, close } = await open()
    t.teardown(close)
    const bob = uniqueUser('bob')
    const limit = 3
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => (i % 2 === 0 ? devices : other).put(bob, ios(`d${i}`), limit)))
    t.equal(results.filter((result) => result === 'registered').length, limit, 'concurrent registrations from two processes: exactly the limit succeed')
    const held = await devices.list(bob)
    t.equal(held.length, limit)
    t.equal(await devices.put(bob, { ...held[0]!, token: hexToken() }, limit), 'registered', 'at the bound, updating a registration is not a new one')
    const refused = ios('extra')
    t.equal(await devices.put(bob, refused, limit), 'limit', 'a new device beyond it is refused')
    t.equal(await devices.put(bob, refused, 0), 'registered', 'limit 0: no limit')
    t.equal((await devices.list(bob)).length, limit + 1)
    const moving = (await devices.list(bob)).find((device) => device.deviceId === held[1]!.deviceId)!
    t.equal(await devices.put(bob, { ...ios('newphone'), token: moving.token }, limit + 1), 'registered', 'at the bound, a token moving from another of the user\'s devices frees that one')
    t.same((await ids(devices, bob)).includes(moving.deviceId), false, 'which is gone')
    t.equal((await devices.list(bob)).length, limit + 1)
  })

  t.test(`${name}: a token belongs to one user's device at a time`, async (t) => {
    const { devices, other, holder, nodeOf, close } = await open()
    t.teardown(close)
    const carol = uniqueUser('carol')
    const dave = apartFrom(carol, 'dave')
    if (nodeOf !== undefined) t.not(await nodeOf(carol), await nodeOf(dave), 'the two users\' keys are on different primaries')
    const shared = ios('phone')
    await devices.put(carol, shared)
    await devices.put(carol, ios('tablet'))
    await devices.put(dave, ios('old'), 1)
    t.equal(await other.put(dave, { ...shared, deviceId: 'phone2' }, 1), 'limit', 'a refused registration...')
    t.same(await ids(devices, carol), ['phone', 'tablet'], '...leaves the token\'s previous holder alone')
    if (holder !== undefined) t.equal(await holder(shared.token), `${carol}:phone`)

    t.equal(await other.put(dave, { ...shared, deviceId: 'phone2' }), 'registered', 'the phone changes account')
    t.same(await ids(devices, carol), ['tablet'], 'the previous user\'s registration of it is dropped')
    t.same(await ids(devices, dave), ['old', 'phone2'])
    if (holder !== undefined) t.equal(await holder(shared.token), `${dave}:phone2`)

    // Carol's tablet gets a new token; its old one moving to dave afterwards must not take the tablet.
    const tablet = (await devices.list(carol))[0]!
    const renewed = { ...tablet, token: hexToken() }
    await devices.put(carol, renewed)
    if (holder !== undefined) t.equal(await holder(tablet.token), null, 'a replaced token is let go')
    await other.put(dave, { ...tablet, deviceId: 'phone3' })
    t.same(await devices.list(carol), [renewed], 'a device that has since changed token keeps its registration')
    t.same(await ids(devices, dave), ['old', 'phone2', 'phone3'])
  })

  t.test(`${name}: a dead token is removed only while it is that registration`, async (t) => {
    const { devices, other, holder, close } = await open()
    t.teardown(close)
    const erin = uniqueUser('erin')
    const first = ios('phone', hexToken(), 1000)
    await devices.put(erin, first)
    await other.removeToken(erin, 'phone', hexToken())
    await other.removeToken(erin, 'phone', first.token, 999)
    t.same(await devices.list(erin), [first], 'another token, or the same token registered at another time: kept')
    const again = { ...first, registeredAt: 2000 }
    await devices.put(erin, again)
    await other.removeToken(erin, 'phone', first.token, first.registeredAt)
    t.same(await devices.list(erin), [again], 'a 410 about the previous registration does not remove the new one')
    await other.removeToken(erin, 'phone', again.token, again.registeredAt)
    t.same(await devices.list(erin), [], 'the registration itself: removed')
    if (holder !== undefined) t.equal(await holder(again.token), null, 'and the token is let go')
    await other.removeToken(erin, 'phone', again.token)
    t.same(await devices.list(erin), [], 'removing what is gone changes nothing')
  })

  t.test(`${name}: keys`, { skip: name === 'leveldb' }, async (t) => {
    const { devices, redis, close } = await open()
    t.teardown(close)
    const frank = uniqueUser('frank')
    const phone = ios('phone')
    await devices.put(frank, phone)
    t.same(await redis!.hgetall(ownerKey('devices', userTag(frank), 'd')), { phone: JSON.stringify(phone) }, 'inboxd:devices:{u:<user>}:d')
    t.same(await redis!.hgetall(ownerKey('devices', userTag(frank), 't')), { [phone.token]: 'phone' }, 'inboxd:devices:{u:<user>}:t')
    t.equal(await redis!.get(pushTokenKey(phone.token)), `${frank}:phone`, 'inboxd:devices:{t:<token>}')
  })
}
