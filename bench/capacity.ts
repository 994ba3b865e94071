// The figures docs/capacity.md multiplies up: run by hand with
// `node --import tsx bench/capacity.ts` (about 3 minutes). One server process
// (WORKERS=1, Redis mode, exactly as `npm start` starts it) on a Redis of its
// own (spare port, no persistence: memory and CPU, not fsync, are measured).
//   1. idle: CAPACITY_IDLE persistent, subscribed, idle devices: server RSS and
//      Redis used_memory per device, connected and after DISCONNECT (session kept).
//   2. chat days: CAPACITY_PAIRS pairs of users, one connected device each; per
//      user per day 100 messages sent and 100 received (200-byte bodies) in 20
//      exchanges of 5, each burst read by its recipient (`POST .../read`), so
//      about 20 delivered and 20 read receipts each way. Redis used_memory and
//      MEMORY USAGE of the users' keys after each day; CPU per message.
//   3. saturated 1:1: 20 senders → 20 receivers, 50 in flight each, CAPACITY_MESSAGES
//      messages: server and Redis CPU time per message, Redis commands and bytes.
// CPU is process CPU time (utime + stime), so a busy shared machine slows the
// run but changes the per-message figures less than it changes msg/s.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { createSigner } from 'fast-jwt'
import { RawClient } from './raw-client.ts'
import { connectMany } from './load/connections.ts'
import { profileFor, sleep } from './profile.ts'
import { rssKb } from './targets.ts'
import { startServerProcess, freePort } from '../test/helpers/server-process.ts'
import { startRedisServer } from '../test/helpers/redis-server.ts'
import { SECRET } from '../test/helpers/tokens.ts'

const IDLE = Number(process.env.CAPACITY_IDLE ?? 10_000)
const PAIRS = Number(process.env.CAPACITY_PAIRS ?? 100)
const DAYS = Number(process.env.CAPACITY_DAYS ?? 2)
const SATURATED = Number(process.env.CAPACITY_MESSAGES ?? 40_000)
const BODY = 200
const BURST = 5
const EXCHANGES = 20 // × 2 directions × BURST = 100 sent and 100 received per user per day

const profile = profileFor('inboxd-redis')
const sign = createSigner({ key: SECRET, algorithm: 'HS256' })
const run = Date.now().toString(36)
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim())
const log = (line: string): void => { process.stderr.write(line + '\n') }

/** CPU seconds (user + system, all threads) of a process and its descendants. */
function cpuSeconds (pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  let children: number[] = []
  try {
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)
  } catch { /* none */ }
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK + children.reduce((sum, child) => sum + cpuSeconds(child), 0)
}

async function info (redis: Redis, section: string): Promise<Record<string, string>> {
  const text = await redis.info(section)
  return Object.fromEntries(text.split('\r\n').filter((l) => l.includes(':')).map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1)]))
}

interface Snapshot { at: number, serverCpu: number, redisCpu: number, usedMemory: number, netIn: number, netOut: number, calls: Map<string, { calls: number, usec: number }> }

async function snapshot (redis: Redis, serverPid: number): Promise<Snapshot> {
  const [cpu, memory, stats, commands] = await Promise.all([info(redis, 'cpu'), info(redis, 'memory'), info(redis, 'stats'), info(redis, 'commandstats')])
  const calls = new Map<string, { calls: number, usec: number }>()
  for (const [key, value] of Object.entries(commands)) {
    const m = /calls=(\d+),usec=(\d+)/.exec(value)
    if (m !== null) calls.set(key.replace('cmdstat_', ''), { calls: Number(m[1]), usec: Number(m[2]) })
  }
  return {
    at: performance.now(),
    serverCpu: cpuSeconds(serverPid),
    redisCpu: Number(cpu.used_cpu_user) + Number(cpu.used_cpu_sys),
    usedMemory: Number(memory.used_memory),
    netIn: Number(stats.total_net_input_bytes),
    netOut: Number(stats.total_net_output_bytes),
    calls
  }
}

/** Per-message figures between two snapshots; `commands`: top-level calls per message (scripts count once, inner calls listed apart). */
function perMessage (a: Snapshot, b: Snapshot, messages: number): Record<string, unknown> {
  const calls: Record<string, string> = {}
  for (const [name, after] of b.calls) {
    const before = a.calls.get(name) ?? { calls: 0, usec: 0 }
    const n = after.calls - before.calls
    if (n / messages < 0.005) continue
    calls[name] = `${(n / messages).toFixed(2)} calls/msg, ${((after.usec - before.usec) / n).toFixed(1)} µs/call`
  }
  const serverUs = (b.serverCpu - a.serverCpu) * 1e6 / messages
  const redisUs = (b.redisCpu - a.redisCpu) * 1e6 / messages
  return {
    messages,
    wallSeconds: Number(((b.at - a.at) / 1000).toFixed(1)),
    serverCpuUsPerMessage: Number(serverUs.toFixed(1)),
    serverMessagesPerCoreSecond: Math.round(1e6 / serverUs),
    redisCpuUsPerMessage: Number(redisUs.toFixed(1)),
    redisMessagesPerCoreSecond: Math.round(1e6 / redisUs),
    redisNetInBytesPerMessage: Math.round((b.netIn - a.netIn) / messages),
    redisNetOutBytesPerMessage: Math.round((b.netOut - a.netOut) / messages),
    commandstats: calls
  }
}

/** The server's V8 heap in use and its memory outside the heap (buffers), from its own /metrics. */
async function heapBytes (httpUrl: string): Promise<{ heap: number, external: number }> {
  const text = await (await fetch(`${httpUrl}/metrics`)).text()
  const read = (name: string): number => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1] ?? NaN)
  return { heap: read('nodejs_heap_size_used_bytes'), external: read('nodejs_external_memory_bytes') }
}

/** Bytes of every key of `user` (its id in the name), by key name with the user replaced by `<u>`. */
async function keyBytes (redis: Redis, user: string): Promise<Map<string, number>> {
  const out = new Map<string, number>()
  let cursor = '0'
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `*${user}*`, 'COUNT', 1000)
    cursor = next
    for (const key of keys) {
      // The peer's conversation keys name this user too: they are the peer's.
      if (key.endsWith(`:c:${user}`) || key.endsWith(`:in:${user}`)) continue
      // An exact figure (SAMPLES 0): the per-field sizes differ.
      const bytes = Number(await redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0'))
      const name = key.split(user).join('<u>').replace(/:(c|in):[^:]+$/, ':$1:<peer>')
      out.set(name, (out.get(name) ?? 0) + bytes)
    }
  } while (cursor !== '0')
  return out
}

const mqttBytes = { up: 0, down: 0 }
const publishBytes = (topic: string, payload: string | Buffer): number => Buffer.byteLength(payload) + Buffer.byteLength(topic) + 7 // header 1 + length 2 + topic length 2 + packet id 2

// ---- start ---------------------------------------------------------------------

const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim()
const redisDir = mkdtempSync(join(tmpdir(), 'capacity-redis-'))
const ownRedis = await startRedisServer(await freePort(), redisDir, ['--appendonly', 'no'])
const redisUrl = `${ownRedis.url}/0`
const redis = new Redis(redisUrl)
process.once('exit', () => { ownRedis.child.kill('SIGKILL'); rmSync(redisDir, { recursive: true, force: true }) })
const server = await startServerProcess({
  mode: 'redis',
  env: { REDIS_URL: redisUrl, WORKERS: '1', PUBLISH_RATE: '0', CONNECT_RATE: '0', REST_RATE_PER_MINUTE: '0' }
})
const serverPid = server.child.pid!
const results: Record<string, unknown> = {
  commit,
  loadAverageAtStart: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
  measuredAt: new Date().toISOString().slice(0, 16).replace('T', ' ') + ' UTC',
  node: process.version,
  redis: (await info(redis, 'server')).redis_version
}

try {
  // ---- 1. idle devices ---------------------------------------------------------
  if (IDLE > 0) {
    await sleep(2_000)
    const rssBefore = rssKb(serverPid)
    const heapBefore = await heapBytes(server.httpUrl)
    const memBefore = (await snapshot(redis, serverPid)).usedMemory
    const users = Array.from({ length: IDLE }, (_, i) => `idle${i}-${run}`)
    const { clients, failed } = await connectMany(server.mqttPort, profile, users)
    await sleep(5_000)
    const connected = IDLE - failed
    const rssAfter = rssKb(serverPid)
    const heapAfter = await heapBytes(server.httpUrl)
    const memConnected = (await snapshot(redis, serverPid)).usedMemory
    const perDeviceKeys = await keyBytes(redis, users[0]!)
    for (const client of clients) client?.end()
    await sleep(3_000)
    const memOffline = (await snapshot(redis, serverPid)).usedMemory
    results.idle = {
      connected,
      failed,
      serverRssBeforeMb: Math.round(rssBefore / 1024),
      serverRssAfterMb: Math.round(rssAfter / 1024),
      serverKbPerConnection: Number(((rssAfter - rssBefore) / connected).toFixed(2)),
      // Of which V8 heap in use (includes garbage not yet collected) and buffers outside it.
      heapKbPerConnection: Number(((heapAfter.heap - heapBefore.heap) / 1024 / connected).toFixed(2)),
      externalKbPerConnection: Number(((heapAfter.external - heapBefore.external) / 1024 / connected).toFixed(2)),
      redisBytesPerConnectedDevice: Math.round((memConnected - memBefore) / connected),
      redisBytesPerOfflineSession: Math.round((memOffline - memBefore) / connected),
      keysOfOneConnectedDevice: Object.fromEntries(perDeviceKeys)
    }
    log(`idle: ${JSON.stringify(results.idle)}`)
  }

  // ---- 2. chat days ------------------------------------------------------------
  interface ChatUser { user: string, peer: string, client: RawClient, token: string, incoming: number, lastSeq: number }
  const chatUsers: ChatUser[] = []
  for (let i = 0; i < PAIRS; i++) {
    for (const [user, peer] of [[`ca${i}-${run}`, `cb${i}-${run}`], [`cb${i}-${run}`, `ca${i}-${run}`]] as const) {
      const entry = { user, peer, token: sign({ sub: user }), incoming: 0, lastSeq: 0 } as ChatUser
      entry.client = await RawClient.connect({
        port: server.mqttPort,
        ...profile.credentials(user, 'd'),
        onMessage: (topic, payload) => {
          mqttBytes.down += publishBytes(topic, payload) + 4 // + its PUBACK
          const event = JSON.parse(payload.toString()) as { seq: number, type: string, from?: string }
          if (event.type === 'message' && event.from === peer) { entry.incoming++; entry.lastSeq = Math.max(entry.lastSeq, event.seq) }
        }
      })
      await entry.client.subscribe(profile.inbox(user))
      chatUsers.push(entry)
    }
  }
  await sleep(2_000)
  // What the server spends with these devices connected and nothing sent (timers, heartbeats).
  const idleFrom = await snapshot(redis, serverPid)
  await sleep(5_000)
  const idleTo = await snapshot(redis, serverPid)
  const idleCpuPerSecond = { server: (idleTo.serverCpu - idleFrom.serverCpu) / ((idleTo.at - idleFrom.at) / 1000), redis: (idleTo.redisCpu - idleFrom.redisCpu) / ((idleTo.at - idleFrom.at) / 1000) }
  const days: unknown[] = []
  let previous = await snapshot(redis, serverPid)
  // CPU is taken over the last day alone, from after the previous day's key sampling (SCAN, MEMORY USAGE).
  let dayStart = previous
  mqttBytes.up = 0; mqttBytes.down = 0
  for (let day = 0; day < DAYS; day++) {
    if (day > 0) dayStart = await snapshot(redis, serverPid)
    await Promise.all(Array.from({ length: PAIRS }, async (_, i) => {
      const a = chatUsers[2 * i]!
      const b = chatUsers[2 * i + 1]!
      for (let round = 0; round < EXCHANGES; round++) {
        for (const [from, to] of [[a, b], [b, a]] as const) {
          const expected = to.incoming + BURST
          await Promise.all(Array.from({ length: BURST }, (_, k) => {
            const payload = profile.encode(`d${day}-${round}-${k}`, 'x'.repeat(BODY))
            mqttBytes.up += publishBytes(profile.inbox(to.user), payload) + 4
            return from.client.publish(profile.inbox(to.user), payload)
          }))
          while (to.incoming < expected) await sleep(5)
          await sleep(300) // the burst's delivered receipt (coalesced over 250 ms) is written alone
          const response = await fetch(`${server.httpUrl}/v1/conversations/${from.user}/read`, {
            method: 'POST',
            headers: { authorization: `Bearer ${to.token}`, 'content-type': 'application/json' },
            body: JSON.stringify({ seq: to.lastSeq })
          })
          if (response.status !== 200) throw new Error(`read: ${response.status} ${await response.text()}`)
        }
      }
    }))
    await sleep(1_500) // coalesced cursor (200 ms) and receipt (250 ms) writes land
    const now = await snapshot(redis, serverPid)
    const keys = new Map<string, number>()
    const sample = chatUsers.slice(0, 10)
    for (const { user } of sample) for (const [name, bytes] of await keyBytes(redis, user)) keys.set(name, (keys.get(name) ?? 0) + bytes / sample.length)
    const users = PAIRS * 2
    days.push({
      day: day + 1,
      redisUsedMemoryBytesPerUser: Math.round((now.usedMemory - previous.usedMemory) / users),
      keysOfOneUserAfterDay: Object.fromEntries([...keys].map(([k, v]) => [k, Math.round(v)])),
      keyBytesOfOneUserAfterDay: Math.round([...keys.values()].reduce((s, v) => s + v, 0))
    })
    log(`day ${day + 1}: ${JSON.stringify(days.at(-1))}`)
    previous = now
  }
  const messages = PAIRS * 2 * EXCHANGES * BURST // in the last day
  const sample = chatUsers[0]!.user
  const events = await redis.hvals(`inboxd:h:${sample}:ev`)
  const metas = await redis.zrange(`inboxd:h:${sample}:log`, 0, -1)
  const byType = new Map<string, number[]>()
  for (const event of events) {
    const type = (JSON.parse(event) as { type: string }).type
    byType.set(type, [...(byType.get(type) ?? []), Buffer.byteLength(event)])
  }
  results.chat = {
    users: PAIRS * 2,
    days: DAYS,
    perUserPerDay: { sent: EXCHANGES * BURST, received: EXCHANGES * BURST, bodyBytes: BODY },
    eventsInOneUsersLog: events.length,
    eventBytesByType: Object.fromEntries([...byType].map(([type, sizes]) => [type, { count: sizes.length, meanBytes: Math.round(sizes.reduce((s, v) => s + v, 0) / sizes.length) }])),
    logMetaMeanBytes: Math.round(metas.reduce((s, m) => s + Buffer.byteLength(m), 0) / Math.max(1, metas.length)),
    mqttBytesPerMessage: { up: Math.round(mqttBytes.up / (messages * DAYS)), down: Math.round(mqttBytes.down / (messages * DAYS)) },
    perDay: days,
    idleCpuPercent: { server: Number((idleCpuPerSecond.server * 100).toFixed(1)), redis: Number((idleCpuPerSecond.redis * 100).toFixed(1)) },
    cpu: perMessage(dayStart, previous, messages),
    // The same, less what the server and Redis spent meanwhile with nothing sent.
    cpuNetOfIdle: {
      serverCpuUsPerMessage: Number((((previous.serverCpu - dayStart.serverCpu) - idleCpuPerSecond.server * (previous.at - dayStart.at) / 1000) * 1e6 / messages).toFixed(1)),
      redisCpuUsPerMessage: Number((((previous.redisCpu - dayStart.redisCpu) - idleCpuPerSecond.redis * (previous.at - dayStart.at) / 1000) * 1e6 / messages).toFixed(1))
    }
  }
  log(`chat: ${JSON.stringify(results.chat)}`)
  for (const { client } of chatUsers) client.end()

  // ---- 3. saturated 1:1 --------------------------------------------------------
  const pairs = 20
  let delivered = 0
  const receivers = await Promise.all(Array.from({ length: pairs }, async (_, i) => {
    const user = `sr${i}-${run}`
    const client = await RawClient.connect({ port: server.mqttPort, ...profile.credentials(user, 'd'), onMessage: () => { delivered++ } })
    await client.subscribe(profile.inbox(user))
    return { user, client }
  }))
  const senders = await Promise.all(receivers.map((_, i) => RawClient.connect({ port: server.mqttPort, ...profile.credentials(`ss${i}-${run}`, 'd') })))
  await sleep(2_000)
  const before = await snapshot(redis, serverPid)
  await Promise.all(senders.map(async (sender, i) => {
    const inflight = new Set<Promise<void>>()
    for (let n = i; n < SATURATED; n += pairs) {
      const p = sender.publish(profile.inbox(receivers[i]!.user), profile.encode(`s${n}`, 'x'.repeat(BODY))).then(() => { inflight.delete(p) })
      inflight.add(p)
      if (inflight.size >= 50) await Promise.race(inflight)
    }
    await Promise.all(inflight)
  }))
  while (delivered < SATURATED) await sleep(10)
  const deliveredAt = performance.now()
  await sleep(1_500)
  const after = await snapshot(redis, serverPid)
  results.saturated = { deliveredPerSecond: Math.round(SATURATED / ((deliveredAt - before.at) / 1000)), ...perMessage(before, after, SATURATED) }
  log(`saturated: ${JSON.stringify(results.saturated)}`)
  for (const { client } of receivers) client.end()
  for (const sender of senders) sender.end()
} finally {
  redis.disconnect()
  await server.stop()
  await ownRedis.kill()
  rmSync(redisDir, { recursive: true, force: true })
}
results.loadAverageAtEnd = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')
process.stdout.write(JSON.stringify(results, null, 1) + '\n')
process.exit(0)
