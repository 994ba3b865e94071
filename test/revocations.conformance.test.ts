// One behaviour, every implementation: the Revocations contract against
// LevelDB, one Redis (DB 11, unique ids) and a real Redis Cluster of this
// file's own. A mark made on one process is seen by the others at their next
// check (in Redis mode the suite checks through a second connection); cutting
// live connections is the kick's job (test/revocation.test.ts).
import t from 'tap'
import { join } from 'node:path'
import { LevelRevocations, RedisRevocations, tokenHash, type Revocations, type TokenFacts } from '../auth/revocations.ts'
import type { RedisClient } from '../storage/redis-client.ts'
import { ownerKey, userTag } from '../storage/redis-keys.ts'
import { startRedisCluster } from './helpers/redis-cluster.ts'
import { clusterRedis, singleRedis, twoProcesses } from './helpers/store-redis.ts'
import { tempDataDir } from './helpers/server-process.ts'
import { token, uniqueUser } from './helpers/tokens.ts'

const REDIS_DB = 11

interface Opened {
  revocations: Revocations
  /** Another process's view. */
  other: Revocations
  redis?: RedisClient
  close (): Promise<void>
}

async function redisOpened (open: () => Promise<RedisClient>): Promise<Opened> {
  const { one, other, redis, close } = await twoProcesses(open, (client) => new RedisRevocations(client))
  return { revocations: one, other, redis, close }
}

const cluster = await startRedisCluster()
t.teardown(() => cluster.stop())

const STORES: Array<{ name: string, open: () => Promise<Opened> }> = [
  {
    name: 'leveldb',
    open: async () => {
      const revocations = await LevelRevocations.open(join(tempDataDir(), 'revocations'))
      return { revocations, other: revocations, close: () => revocations.close() }
    }
  },
  { name: 'redis', open: () => redisOpened(() => singleRedis(REDIS_DB)) },
  { name: 'redis-cluster', open: () => redisOpened(() => clusterRedis(cluster)) }
]

const now = (): number => Math.floor(Date.now() / 1000)
const facts = (sub: string, iat: number | undefined, exp = now() + 3600): TokenFacts => ({ token: token(sub) + String(iat), sub, iat, exp })

for (const { name, open } of STORES) {
  t.test(`${name}: a logged-out token`, async (t) => {
    const { revocations, other, close } = await open()
    t.teardown(close)
    const alice = uniqueUser('alice')
    const session = facts(alice, now())
    const another = facts(alice, now() - 1)
    t.equal(await other.isRevoked(session), false)
    await revocations.revokeToken(session)
    t.equal(await other.isRevoked(session), true, 'is refused, on every process')
    t.equal(await other.isRevoked(session, 'phone'), true, 'also for an MQTT connection')
    t.equal(await other.isRevoked(another), false, 'the user\'s other tokens are not')
    const forever = { ...facts(alice, now()), exp: undefined }
    await revocations.revokeToken(forever)
    t.equal(await other.isRevoked(forever), true, 'a token without exp too')
  })

  t.test(`${name}: a user's mark`, async (t) => {
    const { revocations, other, close } = await open()
    t.teardown(close)
    const [bob, carol] = [uniqueUser('bob'), uniqueUser('carol')]
    const mark = now() - 10
    await revocations.revokeUser(bob, mark)
    t.equal(await other.isRevoked(facts(bob, mark - 5)), true, 'a token issued before it is refused')
    t.equal(await other.isRevoked(facts(bob, mark)), true, 'in its own second too')
    t.equal(await other.isRevoked(facts(bob, undefined)), true, 'and one without iat')
    t.equal(await other.isRevoked(facts(bob, mark + 1), 'phone'), false, 'one issued after it is not')
    t.equal(await other.isRevoked(facts(carol, mark - 5)), false, 'another user is not touched')
    await revocations.revokeUser(bob, mark + 5)
    t.equal(await other.isRevoked(facts(bob, mark + 1)), true, 'a later mark moves it')
  })

  t.test(`${name}: a device's mark`, async (t) => {
    const { revocations, other, close } = await open()
    t.teardown(close)
    const dave = uniqueUser('dave')
    const mark = now() - 10
    await revocations.revokeDevice(dave, 'phone', mark)
    t.equal(await other.isRevoked(facts(dave, mark - 1), 'phone'), true, 'that device\'s connections with an older token are refused')
    t.equal(await other.isRevoked(facts(dave, mark + 1), 'phone'), false, 'a newer token is not')
    t.equal(await other.isRevoked(facts(dave, mark - 1), 'tablet'), false, 'another device is not')
    t.equal(await other.isRevoked(facts(dave, mark - 1)), false, 'nor a REST call (it names no device)')
  })

  t.test(`${name}: keys`, { skip: name === 'leveldb' }, async (t) => {
    const { revocations, redis, close } = await open()
    t.teardown(close)
    const erin = uniqueUser('erin')
    const session = facts(erin, now())
    await revocations.revokeToken(session)
    await revocations.revokeUser(erin, 100)
    await revocations.revokeDevice(erin, 'phone', 200)
    const ttl = await redis!.ttl(ownerKey('rv', userTag(erin), `t:${tokenHash(session.token)}`))
    t.ok(ttl > 3500 && ttl <= 3600, `inboxd:rv:{u:<user>}:t:<token hash>, kept until the token expires (${ttl} s)`)
    t.equal(await redis!.get(ownerKey('rv', userTag(erin), 'u')), '100', 'inboxd:rv:{u:<user>}:u')
    t.equal(await redis!.get(ownerKey('rv', userTag(erin), 'd:phone')), '200', 'inboxd:rv:{u:<user>}:d:<device>')
  })
}

t.test('redis: marks made before #20 (under the old names) still count on one Redis', async (t) => {
  const redis = await singleRedis(REDIS_DB)
  t.teardown(() => redis.disconnect())
  const revocations = new RedisRevocations(redis)
  const [frank, gina] = [uniqueUser('frank'), uniqueUser('gina')]
  const session = facts(frank, now())
  await redis.set(`inboxd:rv:t:${tokenHash(session.token)}`, '1', 'EX', 60)
  await redis.set(`inboxd:rv:u:${gina}`, String(now() - 10))
  await redis.set(`inboxd:rv:d:${gina}:phone`, String(now()))
  t.teardown(() => redis.del(`inboxd:rv:u:${gina}`, `inboxd:rv:d:${gina}:phone`))
  t.equal(await revocations.isRevoked(session), true, 'a token logged out before')
  t.equal(await revocations.isRevoked(facts(frank, now() - 1)), false, 'not another')
  t.equal(await revocations.isRevoked(facts(gina, now() - 20)), true, 'a user revoked before')
  t.equal(await revocations.isRevoked(facts(gina, now() - 5)), false)
  t.equal(await revocations.isRevoked(facts(gina, now() - 5), 'phone'), true, 'a device revoked before')
  t.equal(await new RedisRevocations(redis, { legacy: false }).isRevoked(session), false, 'unless told not to read them')
})
