// Scenario 6: one client floods, the others should not notice.
// `pairs` senders offer `rate` msg/s in total to as many receivers (QoS 1,
// persistent sessions); their end-to-end latency is measured for `phaseMs`
// with nobody else sending (idle), then for `phaseMs` while one more client
// publishes QoS 1 as fast as it can (`window` in flight) to one victim.
// With PUBLISH_RATE set (the harness sets 0 for "unlimited") the server refuses the flood beyond the rate with
// `rate_limited` error events and stores none of it; without, it is stored.
import { RawClient } from '../raw-client.ts'
import { loadArgs, percentile, profileFor, readTimedBody, report, sleep, timedBody } from '../profile.ts'

const args = loadArgs()
const { kind, port, run } = args
const pairs = Number(args.pairs ?? 10)
const rate = Number(args.rate ?? 1_000)
const phaseMs = Number(args.phaseMs ?? 6_000)
const window = Number(args.window ?? 200)
const profile = profileFor(kind)

let phase: 'warmup' | 'idle' | 'flood' | 'done' = 'warmup'
const latencies: Record<'idle' | 'flood', number[]> = { idle: [], flood: [] }
const receivers = await Promise.all(Array.from({ length: pairs }, async (_, i) => {
  const user = `fr${i}-${run}`
  const client = await RawClient.connect({
    port,
    ...profile.credentials(user, 'd'),
    onMessage: (_topic, payload) => {
      if (phase === 'idle' || phase === 'flood') latencies[phase].push(performance.now() - readTimedBody(profile.decode(payload)).sentAt)
    }
  })
  await client.subscribe(profile.inbox(user))
  return user
}))
const senders = await Promise.all(receivers.map(async (_, i) => RawClient.connect({ port, ...profile.credentials(`fs${i}-${run}`, 'd') })))

let victimReceived = 0
const victim = `victim-${run}`
const victimClient = await RawClient.connect({ port, ...profile.credentials(victim, 'd'), onMessage: () => { victimReceived++ } })
await victimClient.subscribe(profile.inbox(victim))
let refusals = 0
const flooderUser = `flooder-${run}`
const flooder = await RawClient.connect({ port, ...profile.credentials(flooderUser, 'd'), onMessage: (topic) => { if (topic.endsWith('/errors')) refusals++ } })
await flooder.subscribe(`user/${flooderUser}/device/d/errors`)

// The paced load, all phases.
let counter = 0
const start = performance.now()
let due = 0
const pacer = setInterval(() => {
  const shouldHaveSent = Math.floor(((performance.now() - start) / 1000) * rate)
  for (; due < shouldHaveSent; due++) {
    const n = counter++
    void senders[n % pairs]!.publish(profile.inbox(receivers[n % pairs]!), profile.encode(`m${n}`, timedBody(n)))
  }
}, 2)

await sleep(2_000)
phase = 'idle'
await sleep(phaseMs)
phase = 'flood'
let flooding = true
let flooded = 0
const floodStart = performance.now()
const flood = (async () => {
  const inflight = new Set<Promise<void>>()
  while (flooding) {
    while (inflight.size < window) {
      const n = flooded++
      const p = flooder.publish(profile.inbox(victim), profile.encode(`f${n}`, timedBody(n))).then(() => { inflight.delete(p) })
      inflight.add(p)
    }
    await Promise.race(inflight)
  }
  await Promise.race([Promise.all(inflight), sleep(5_000)])
})()
await sleep(phaseMs)
flooding = false
const floodSeconds = (performance.now() - floodStart) / 1000
phase = 'done'
clearInterval(pacer)
await flood
await sleep(1_000)

const stats = (samples: number[]): { p50: number, p99: number } => {
  const sorted = [...samples].sort((a, b) => a - b)
  return { p50: Number(percentile(sorted, 0.5).toFixed(2)), p99: Number(percentile(sorted, 0.99).toFixed(2)) }
}
const idle = stats(latencies.idle)
const flooding_ = stats(latencies.flood)
report({
  offered: rate,
  idleP50: idle.p50,
  idleP99: idle.p99,
  floodP50: flooding_.p50,
  floodP99: flooding_.p99,
  p99Ratio: Number((flooding_.p99 / idle.p99).toFixed(2)),
  flooderPerSec: Math.round(flooded / floodSeconds),
  victimReceived,
  refusals
})
