// The small stores and the REST rate limit through real servers on a real
// Redis Cluster (3 primaries, 3 replicas, this file's own): two server
// processes share push registrations, published keys, revocations and the
// REST count, on the owners' keys.
import t from 'tap'
import { Redis } from 'ioredis'
import { ownerKey, pushTokenKey, userTag } from '../storage/redis-keys.ts'
import { startRedisCluster } from './helpers/redis-cluster.ts'
import { apiFor } from './helpers/rest.ts'
import { startServerProcess } from './helpers/server-process.ts'
import { uniqueUser } from './helpers/tokens.ts'

const cluster = await startRedisCluster()
t.teardown(() => cluster.stop())

const PER_MINUTE = 6
// (`embedded` only keeps the helper from setting REDIS_URL: REDIS_CLUSTER_NODES puts the server in Redis mode.)
const env = { REDIS_CLUSTER_NODES: cluster.seeds, WORKERS: '1', REST_RATE_PER_MINUTE: String(PER_MINUTE) }
const servers = await Promise.all([0, 1].map(() => startServerProcess({ mode: 'embedded', env })))
t.teardown(() => Promise.all(servers.map((server) => server.stop())))
const [a, b] = servers.map((server) => server.httpUrl) as [string, string]

/** The value of `key` read from the primary that serves its slot, on a plain connection to it: the key is on the cluster, where it belongs. */
async function onItsPrimary<T> (key: string, read: (node: Redis) => Promise<T>): Promise<T> {
  const node = new Redis({ host: '127.0.0.1', port: await cluster.primaryOf(key), lazyConnect: true })
  try {
    await node.connect()
    return await read(node)
  } finally {
    node.disconnect()
  }
}

t.test('the REST rate limit holds across processes, counted in the user\'s slot', async (t) => {
  const dave = uniqueUser('dave')
  const statuses: number[] = []
  // (A route served by this branch's stores: the history store is not on the cluster's key names yet.)
  for (let i = 0; i <= PER_MINUTE; i++) statuses.push((await apiFor(i % 2 === 0 ? a : b, dave).get('/v1/devices')).status)
  t.same(statuses, [...Array(PER_MINUTE).fill(200), 429], `the request past ${PER_MINUTE} a minute is refused, whichever process counts it`)
  const key = ownerKey('rl', userTag(dave))
  const [count, ttl] = await onItsPrimary(key, async (node) => [await node.get(key), await node.pttl(key)] as const)
  t.equal(count, String(PER_MINUTE + 1), `${key}: one counter for both processes`)
  t.ok(ttl > 0 && ttl <= 60_000, `expiring with the window (${ttl} ms)`)
  t.equal((await apiFor(b, uniqueUser('erin')).get('/v1/devices')).status, 200, 'another user has their own count')
})

t.test('push registrations, published keys and revocations are shared through the cluster', async (t) => {
  const [alice, carol] = [uniqueUser('alice'), uniqueUser('carol')]
  const [aliceA, aliceB, carolB] = [apiFor(a, alice), apiFor(b, alice), apiFor(b, carol)]
  const publicKey = `${'K'.repeat(43)}=`
  t.equal((await aliceA.put('/v1/keys', { publicKey })).status, 200)
  t.match((await carolB.get(`/v1/keys/${alice}`)).body, { user: alice, publicKey }, 'a key published on one process is fetched on the other')
  t.match(JSON.parse((await onItsPrimary(ownerKey('keys', userTag(alice)), (node) => node.get(ownerKey('keys', userTag(alice)))))!), { publicKey }, 'inboxd:keys:{u:<user>}')

  const token = 'ab'.repeat(32)
  t.equal((await aliceA.post('/v1/devices', { platform: 'ios', token, deviceId: 'phone' })).status, 201)
  t.match((await aliceB.get('/v1/devices')).body, { devices: [{ deviceId: 'phone', token }] }, 'registered on one process, listed on the other')
  t.equal((await carolB.post('/v1/devices', { platform: 'ios', token, deviceId: 'ipad' })).status, 201, 'the phone changes account, on the other process')
  t.same((await aliceA.get('/v1/devices')).body, { devices: [] }, 'the previous account no longer has it')
  t.equal(await onItsPrimary(pushTokenKey(token), (node) => node.get(pushTokenKey(token))), `${carol}:ipad`, 'inboxd:devices:{t:<token>}')

  t.equal((await aliceA.post('/v1/sessions/logout', {})).status, 200)
  t.match(await aliceB.get('/v1/sessions/current'), { status: 401, body: { error: 'token_revoked' } }, 'a token logged out on one process is refused on the other')
})
