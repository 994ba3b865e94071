// What a presence subscription costs the server (issue 19, item 3): heap and
// RSS of one server process (WORKERS=1), measured after a full GC through the
// inspector (test/helpers/heap.ts), for CLIENTS persistent sessions each
// watching WATCHES distinct presence topics (QoS 1), while connected and after
// they DISCONNECT; in Redis mode also what their stored subscriptions take in
// Redis. Not part of `npm run bench`: run it by hand, e.g.
//   npx tsx bench/subscription-memory.ts embedded 10 1000
import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import { startServerProcess, freePort, REDIS_BASE, type Mode } from '../test/helpers/server-process.ts'
import { connectDevice, errorsOf, inboxOf, type Device } from '../test/helpers/devices.ts'
import { inspectorEnv, probeHeap } from '../test/helpers/heap.ts'

const mode = (process.argv[2] ?? 'embedded') as Mode
const clients = Number(process.argv[3] ?? 10)
const watches = Number(process.argv[4] ?? 1000)
const BATCH = 100
// The default test database, with unique user ids (other test files flush theirs).
const REDIS_DB = 1

const inspectorPort = await freePort()
const server = await startServerProcess({
  mode,
  redisDb: REDIS_DB,
  env: { WORKERS: '1', PRESENCE_VISIBILITY: 'all', ...inspectorEnv(inspectorPort) }
})
const heap = await probeHeap(inspectorPort)
const memory = async (): Promise<{ heapMB: number, rssMB: number }> => {
  const usage = await heap.measure()
  return { heapMB: usage.heapUsed / 1e6, rssMB: usage.rss / 1e6 }
}
const redis = mode === 'redis' ? new Redis(`${REDIS_BASE}/${REDIS_DB}`) : undefined
const run = randomUUID().slice(0, 8)
const user = (i: number): string => `mem-${run}-${i}`

// Warm up first: the first connections allocate what every later one shares
// (mqtt-packet's 64k cached message-id buffers alone are 6 MB).
const warm = await connectDevice({ url: server.mqttUrl, userId: `warm-${run}`, deviceId: 'd', subscribe: false })
await warm.client.subscribeAsync([inboxOf(`warm-${run}`), errorsOf(`warm-${run}`, 'd'), ...Array.from({ length: 10 }, (_, i) => `presence/warm-${run}-${i}`)], { qos: 1 })
await warm.end()
await (await connectDevice({ url: server.mqttUrl, userId: `warm-${run}`, deviceId: 'd', subscribe: false, clean: true })).end()
const base = await memory()
const devices: Device[] = []
const granted: number[] = []
for (let c = 0; c < clients; c++) {
  const device = await connectDevice({ url: server.mqttUrl, userId: user(c), deviceId: 'd', subscribe: false })
  await device.client.subscribeAsync([inboxOf(user(c)), errorsOf(user(c), 'd')], { qos: 1 })
  let ok = 0
  for (let start = 0; start < watches; start += BATCH) {
    const topics = Array.from({ length: Math.min(BATCH, watches - start) }, (_, i) => `presence/w-${run}-${c}-${start + i}`)
    const grants = await device.client.subscribeAsync(topics, { qos: 1 })
    ok += grants.filter((grant) => grant.qos !== 128).length
  }
  granted.push(ok)
  devices.push(device)
}
const connected = await memory()
const storedKB = async (): Promise<number | undefined> => {
  if (redis === undefined) return undefined
  let bytes = 0
  for (let c = 0; c < clients; c++) bytes += Number(await redis.memory('USAGE', `client:${encodeURIComponent(`${user(c)}:d`)}`) ?? 0)
  return bytes / 1e3
}
const redisConnectedKB = await storedKB()
for (const device of devices) await device.end()
await new Promise((resolve) => setTimeout(resolve, 500))
const disconnected = await memory()
const redisDisconnectedKB = await storedKB()

const subs = clients * watches
const perSub = (a: number, b: number): number => Math.round((a - b) * 1e6 / subs)
console.log(JSON.stringify({
  mode,
  clients,
  watches,
  granted: granted.reduce((a, b) => a + b, 0),
  base,
  connected,
  disconnected,
  bytesPerSubscription: {
    connectedHeap: perSub(connected.heapMB, base.heapMB),
    connectedRss: perSub(connected.rssMB, base.rssMB),
    disconnectedHeap: perSub(disconnected.heapMB, base.heapMB),
    disconnectedRss: perSub(disconnected.rssMB, base.rssMB)
  },
  redisStoredKB: { connected: redisConnectedKB, disconnected: redisDisconnectedKB }
}, null, 2))
// A clean session removes what was stored, so runs do not accumulate.
for (let c = 0; c < clients; c++) await (await connectDevice({ url: server.mqttUrl, userId: user(c), deviceId: 'd', subscribe: false, clean: true })).end()
heap.close()
redis?.disconnect()
await server.stop()
