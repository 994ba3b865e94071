// Redis commands per message on the durable path. MONITOR shows every
// command the server processes send; commands run inside our Lua scripts
// appear as `[<db> lua]` and are part of the one EVALSHA that ran them, so
// they are not counted. 20 senders send `count` QoS 1 messages to 20
// receivers; counting starts after connecting and ends after every message
// is delivered and the coalesced writes (cursors, receipts) have happened.
import { Redis } from 'ioredis'
import { RawClient } from '../raw-client.ts'
import { loadArgs, profileFor, report, sleep, timedBody } from '../profile.ts'

const { kind, port, run, redisUrl, count: countArg } = loadArgs()
const count = Number(countArg ?? 10_000)
const pairs = 20
const profile = profileFor(kind)

let delivered = 0
const receivers = await Promise.all(Array.from({ length: pairs }, async (_, i) => {
  const user = `cr${i}-${run}`
  const client = await RawClient.connect({ port, ...profile.credentials(user, 'd'), onMessage: () => { delivered++ } })
  await client.subscribe(profile.inbox(user))
  return user
}))
const senders = await Promise.all(receivers.map((_, i) => RawClient.connect({ port, ...profile.credentials(`cs${i}-${run}`, 'd') })))
await sleep(1_000)

const byCommand = new Map<string, number>()
let commands = 0
const monitor = await new Redis(String(redisUrl)).monitor()
monitor.on('monitor', (_time: string, args: string[], source: string) => {
  if (source.endsWith('lua')) return
  commands++
  const name = String(args[0]).toLowerCase()
  byCommand.set(name, (byCommand.get(name) ?? 0) + 1)
})
await sleep(200)

await Promise.all(senders.map(async (sender, i) => {
  const inflight = new Set<Promise<void>>()
  for (let n = i; n < count; n += pairs) {
    const p = sender.publish(profile.inbox(receivers[i]!), profile.encode(`c${n}`, timedBody(n))).then(() => { inflight.delete(p) })
    inflight.add(p)
    if (inflight.size >= 50) await Promise.race(inflight)
  }
  await Promise.all(inflight)
}))
while (delivered < count) await sleep(10)
await sleep(1_000) // cursor writes (200 ms) and delivered receipts (250 ms) land
monitor.disconnect()
report({
  messages: count,
  commands,
  perMessage: Number((commands / count).toFixed(2)),
  top: Object.fromEntries([...byCommand].sort((a, b) => b[1] - a[1]).slice(0, 6))
})
