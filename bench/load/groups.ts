// Scenario 5: groups.
//   mode "fanout": one sender to a group of `members` with one connected device
//     each (inboxd), or to `members` subscribers of one topic (Mosquitto, bare
//     Aedes), QoS 1, a window of in-flight publishes; reports member
//     deliveries per second.
//   mode "large": a group of `members` of whom 100 are connected (inboxd only):
//     time to PUBACK and to the last connected member's delivery, p50/p99 over
//     sequential messages, and Redis memory per message for 200 B and 4 KB
//     bodies (Redis mode; it must not grow with body size × members).
import { Redis } from 'ioredis'
import { createSigner } from 'fast-jwt'
import { RawClient } from '../raw-client.ts'
import { loadArgs, percentile, profileFor, report, sleep, timedBody } from '../profile.ts'
import { SECRET } from '../../test/helpers/tokens.ts'

const args = loadArgs()
const { kind, port, run } = args
const mode = String(args.mode ?? 'fanout')
const members = Number(args.members ?? 100)
const durationMs = Number(args.durationMs ?? 5_000)
const profile = profileFor(kind)
const ours = kind.startsWith('inboxd-')
const sign = createSigner({ key: SECRET, algorithm: 'HS256' })

async function call (owner: string, path: string, body: unknown, expected: number): Promise<unknown> {
  const response = await fetch(`http://127.0.0.1:${String(args.httpPort)}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${sign({ sub: owner })}`, 'content-type': 'application/json' },
    body: JSON.stringify(body)
  })
  if (response.status !== expected) throw new Error(`${path} answered ${response.status}: ${await response.text()}`)
  return response.json()
}

/** Creates the group with the first thousand, then adds the rest a thousand at a time (a request body has a size limit). */
async function createGroup (owner: string, others: string[]): Promise<string> {
  const created = await call(owner, '/v1/groups', { name: 'bench', members: others.slice(0, 1_000) }, 201) as { group: { id: string } }
  for (let i = 1_000; i < others.length; i += 1_000) {
    await call(owner, `/v1/groups/${created.group.id}/members`, { users: others.slice(i, i + 1_000) }, 200)
  }
  return created.group.id
}

// Large groups have exactly `members` members, the owner included; fan-out has `members` receivers besides the sender.
const users = Array.from({ length: mode === 'large' ? members - 1 : members }, (_, i) => `gm${i}-${run}`)
const owner = `gowner-${run}`
const topic = ours ? `group/${await createGroup(owner, users)}` : `bench/group-${run}`
const connected = mode === 'large' ? users.slice(0, 100) : users
let delivered = 0
const arrivals = new Map<number, number>() // message index → deliveries so far
const lastArrival = new Map<number, number>()
await Promise.all(connected.map(async (user) => {
  const client = await RawClient.connect({
    port,
    ...profile.credentials(user, 'd'),
    onMessage: (_topic, payload) => {
      const text = payload.toString()
      if (ours && !text.includes('"type":"message"')) return
      delivered++
      const index = Number(/;(\d+);/.exec(text)?.[1] ?? -1)
      arrivals.set(index, (arrivals.get(index) ?? 0) + 1)
      lastArrival.set(index, performance.now())
    }
  })
  await client.subscribe(ours ? profile.inbox(user) : topic)
}))
const sender = await RawClient.connect({ port, ...profile.credentials(owner, 'd') })
const encode = (i: number, size = 200): string => profile.encode(`g${i}`, timedBody(i, size))

if (mode === 'fanout') {
  await sleep(500)
  let stop = false
  let n = 0
  const start = performance.now()
  const inflight = new Set<Promise<void>>()
  setTimeout(() => { stop = true }, durationMs)
  while (!stop) {
    while (inflight.size < 20) {
      const p = sender.publish(topic, encode(n++)).then(() => { inflight.delete(p) })
      inflight.add(p)
    }
    await Promise.race(inflight)
  }
  await Promise.all(inflight)
  const elapsed = (performance.now() - start) / 1000
  const sentMessages = n
  await sleep(2_000)
  report({ members, sent: sentMessages, delivered, deliveriesPerSec: Math.round(delivered / (elapsed + 2)), sustainedDuringSend: Math.round(delivered / elapsed) })
} else {
  const acks: number[] = []
  const lasts: number[] = []
  for (let i = 0; i < 50; i++) {
    const sentAt = performance.now()
    await sender.publish(topic, encode(i))
    acks.push(performance.now() - sentAt)
    const deadline = performance.now() + 10_000
    while ((arrivals.get(i) ?? 0) < connected.length && performance.now() < deadline) await sleep(1)
    lasts.push((lastArrival.get(i) ?? NaN) - sentAt)
  }
  acks.sort((a, b) => a - b)
  lasts.sort((a, b) => a - b)
  let memory: Record<string, number | null> = { bytesPerMessage200: null, bytesPerMessage4k: null }
  if (kind === 'inboxd-redis') {
    const redis = new Redis(String(args.redisUrl))
    const used = async (): Promise<number> => Number(/used_memory:(\d+)/.exec(await redis.info('memory'))![1])
    // Warm up first: a member's log keys change encoding (compact to hash table)
    // as they pass 128 entries, a one-time cost that is not a per-message one.
    for (let i = 0; i < 100; i++) await sender.publish(topic, encode(500 + i))
    await sleep(500)
    const per = async (size: number, from: number): Promise<number> => {
      const before = await used()
      for (let i = 0; i < 100; i++) await sender.publish(topic, encode(from + i, size))
      await sleep(500)
      return Math.round((await used() - before) / 100)
    }
    memory = { bytesPerMessage200: await per(200, 1000), bytesPerMessage4k: await per(4096, 2000) }
    redis.disconnect()
  }
  report({
    members,
    connected: connected.length,
    pubackP50: Number(percentile(acks, 0.5).toFixed(2)),
    pubackP99: Number(percentile(acks, 0.99).toFixed(2)),
    lastDeliveryP50: Number(percentile(lasts, 0.5).toFixed(2)),
    lastDeliveryP99: Number(percentile(lasts, 0.99).toFixed(2)),
    ...memory
  })
}
