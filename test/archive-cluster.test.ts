// The archive on a Redis Cluster (issue #21): two server processes on a
// cluster of this file's own (3 primaries, 3 replicas) and a PostgreSQL
// database of its own. Users and groups in many slots are archived (the
// pending index is per slot, the archiver's leases per range of slots) and
// found by search, and sync reads across both tiers.
import t from 'tap'
import { startRedisCluster } from './helpers/redis-cluster.ts'
import { startServerProcess } from './helpers/server-process.ts'
import { createTestDatabase } from './helpers/postgres.ts'
import { apiFor, isGapless, type Api } from './helpers/rest.ts'
import { uniqueUser } from './helpers/tokens.ts'
import { archiveOpen } from './helpers/metrics.ts'

const cluster = await startRedisCluster()
t.teardown(() => cluster.stop())
const db = await createTestDatabase()
t.teardown(() => db.drop())
const env = { REDIS_CLUSTER_NODES: cluster.seeds, DATABASE_URL: db.url, WORKERS: '1', HOT_RETENTION_SECONDS: '1' }
const servers = await Promise.all([
  startServerProcess({ mode: 'redis', redisCluster: cluster.seeds, env }),
  startServerProcess({ mode: 'redis', redisCluster: cluster.seeds, env })
])
t.teardown(() => Promise.all(servers.map((server) => server.stop())))
await Promise.all(servers.map(archiveOpen))

async function searchUntil (api: Api, query: string, count: number): Promise<string[]> {
  const deadline = Date.now() + 60_000
  for (;;) {
    const ids = ((await api.get(`/v1/search?q=${encodeURIComponent(query)}&limit=100`)).body.results as Array<{ message: { id: string } }>).map((hit) => hit.message.id)
    if (ids.length >= count) return ids
    if (Date.now() > deadline) throw new Error(`found ${ids.length} of ${count} for ${query}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

t.test('1:1 and group messages in many slots are archived and found; sync reads both tiers', async (t) => {
  const bob = uniqueUser('bob')
  const senders = Array.from({ length: 12 }, (_, i) => uniqueUser(`s${i}`))
  // Senders spread over slots, and both processes.
  await Promise.all(senders.map((sender, i) => apiFor(servers[i % 2]!.httpUrl, sender).post('/v1/messages', { to: bob, id: `m${i}`, body: `第${i}条消息 papaya` })))
  const group = (await apiFor(servers[0]!.httpUrl, senders[0]!).post('/v1/groups', { name: 'g', members: [bob, senders[1]!] })).body.group.id as string
  await apiFor(servers[1]!.httpUrl, senders[1]!).post('/v1/messages', { group, id: 'g1', body: '群里的 papaya' })

  const b = apiFor(servers[0]!.httpUrl, bob)
  const found = await searchUntil(b, 'papaya', 13)
  t.same([...found].sort(), [...senders.map((_, i) => `m${i}`), 'g1'].sort(), 'every message, from every slot, once')
  t.same(await searchUntil(apiFor(servers[1]!.httpUrl, senders[5]!), '消息', 1), ['m5'], 'each sender finds their own')

  // Past the hot window: the next reads trim bob's hot log; sync still has everything, in order.
  const before = await b.syncAll()
  await new Promise((resolve) => setTimeout(resolve, 1_200))
  await b.get('/v1/sync?since=0&limit=1')
  const after = await b.syncAll()
  t.same(after, before, 'the same events, byte for byte, across the tiers')
  t.ok(isGapless(after.map((event) => event.seq)))
})
