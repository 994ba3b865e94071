// One behaviour, every implementation: the KeyDirectory contract against
// LevelDB, one Redis (DB 11, unique ids) and a real Redis Cluster of this
// file's own. One key per user on the user's slot, not one hash for all.
import t from 'tap'
import { join } from 'node:path'
import { LevelKeyDirectory, RedisKeyDirectory, type KeyDirectory, type PublishedKey } from '../keys/key-directory.ts'
import type { RedisClient } from '../storage/redis-client.ts'
import { ownerKey, userTag } from '../storage/redis-keys.ts'
import { startRedisCluster } from './helpers/redis-cluster.ts'
import { clusterRedis, singleRedis, twoProcesses } from './helpers/store-redis.ts'
import { tempDataDir } from './helpers/server-process.ts'
import { uniqueUser } from './helpers/tokens.ts'

const REDIS_DB = 11

interface Opened {
  keys: KeyDirectory
  /** Another process's view. */
  other: KeyDirectory
  redis?: RedisClient
  close (): Promise<void>
}

async function redisOpened (open: () => Promise<RedisClient>): Promise<Opened> {
  const { one, other, redis, close } = await twoProcesses(open, (client) => new RedisKeyDirectory(client))
  return { keys: one, other, redis, close }
}

const cluster = await startRedisCluster()
t.teardown(() => cluster.stop())

const STORES: Array<{ name: string, open: () => Promise<Opened> }> = [
  {
    name: 'leveldb',
    open: async () => {
      const keys = await LevelKeyDirectory.open(join(tempDataDir(), 'keys'))
      return { keys, other: keys, close: () => keys.close() }
    }
  },
  { name: 'redis', open: () => redisOpened(() => singleRedis(REDIS_DB)) },
  { name: 'redis-cluster', open: () => redisOpened(() => clusterRedis(cluster)) }
]

const published = (user: string, fill: string, updatedAt = Date.now()): PublishedKey => ({ user, publicKey: `${fill.repeat(43)}=`, updatedAt })

for (const { name, open } of STORES) {
  t.test(`${name}: publish and fetch`, async (t) => {
    const { keys, other, redis, close } = await open()
    t.teardown(close)
    const users = Array.from({ length: 12 }, (_, i) => uniqueUser(`u${i}`))
    t.equal(await other.get(users[0]!), undefined, 'nothing published: undefined')
    await Promise.all(users.map((user, i) => keys.put(published(user, 'ABCDEFGHIJKL'[i]!, i))))
    t.same(await Promise.all(users.map((user) => other.get(user))), users.map((user, i) => published(user, 'ABCDEFGHIJKL'[i]!, i)), 'each user\'s own key, on every process')
    const renewed = published(users[0]!, 'z', 99)
    await other.put(renewed)
    t.same(await keys.get(users[0]!), renewed, 'publishing again replaces it')
    t.same(await keys.get(users[1]!), published(users[1]!, 'B', 1), 'and no other')
    if (redis !== undefined) t.same(JSON.parse((await redis.get(ownerKey('keys', userTag(users[0]!))))!), renewed, 'inboxd:keys:{u:<user>}')
    t.equal(await keys.remove(users[0]!), true, 'removed')
    t.equal(await other.get(users[0]!), undefined, 'gone on every process')
    t.equal(await other.remove(users[0]!), false, 'removing again: nothing was there')
    t.same(await other.get(users[2]!), published(users[2]!, 'C', 2), 'the others stay')
  })
}

t.test('redis: keys published before #20 (in the one hash) are still found on one Redis', async (t) => {
  const redis = await singleRedis(REDIS_DB)
  t.teardown(() => redis.disconnect())
  const keys = new RedisKeyDirectory(redis)
  const [old, renewed] = [uniqueUser('old'), uniqueUser('renewed')]
  await redis.hset('inboxd:keys', old, JSON.stringify(published(old, 'o', 1)), renewed, JSON.stringify(published(renewed, 'o', 1)))
  t.teardown(() => redis.hdel('inboxd:keys', old, renewed))
  t.same(await keys.get(old), published(old, 'o', 1), 'an old key is found')
  await keys.put(published(renewed, 'n', 2))
  t.same(await keys.get(renewed), published(renewed, 'n', 2), 'a key published since wins')
  t.equal(await new RedisKeyDirectory(redis, { legacy: false }).get(old), undefined, 'unless told not to read the old hash')
})
