// Scenario 1: 1:1 QoS 1 over persistent sessions, N senders to N receivers,
// 200-byte payloads.
//   mode "throughput": each sender keeps `window` messages in flight; reports
//     delivered msg/s over `durationMs` after a warm-up.
//   mode "latency": all senders together offer `rate` msg/s; reports the
//     end-to-end latency distribution (send → delivery, same process clock).
import { RawClient } from '../raw-client.ts'
import { loadArgs, percentile, profileFor, readTimedBody, report, sleep, timedBody } from '../profile.ts'

const args = loadArgs()
const { kind, port, run } = args
const pairs = Number(args.pairs ?? 20)
const mode = String(args.mode ?? 'throughput')
const durationMs = Number(args.durationMs ?? 10_000)
const warmupMs = Number(args.warmupMs ?? 2_000)
const window = Number(args.window ?? 50)
const rate = Number(args.rate ?? 5_000)
const profile = profileFor(kind)

let measuring = false
let delivered = 0
let sent = 0
const latencies: number[] = []

const receivers = await Promise.all(Array.from({ length: pairs }, async (_, i) => {
  const user = `r${i}-${run}`
  const client = await RawClient.connect({
    port,
    ...profile.credentials(user, 'd'),
    onMessage: (_topic, payload) => {
      if (!measuring) return
      delivered++
      if (mode === 'latency') latencies.push(performance.now() - readTimedBody(profile.decode(payload)).sentAt)
    }
  })
  await client.subscribe(profile.inbox(user))
  return { user, client }
}))
const senders = await Promise.all(receivers.map(async (_, i) => RawClient.connect({ port, ...profile.credentials(`s${i}-${run}`, 'd') })))

let stop = false
let counter = 0
function sendOne (i: number): Promise<void> {
  const n = counter++
  sent++
  return senders[i]!.publish(profile.inbox(receivers[i]!.user), profile.encode(`m${n}`, timedBody(n)))
}

if (mode === 'throughput') {
  const loops = senders.map(async (_, i) => {
    const inflight = new Set<Promise<void>>()
    while (!stop) {
      while (inflight.size < window) {
        const p = sendOne(i).then(() => { inflight.delete(p) })
        inflight.add(p)
      }
      await Promise.race(inflight)
    }
    await Promise.all(inflight)
  })
  await sleep(warmupMs)
  measuring = true
  const start = performance.now()
  await sleep(durationMs)
  measuring = false
  const elapsed = performance.now() - start
  stop = true
  await Promise.race([Promise.all(loops), sleep(5_000)])
  report({ msgPerSec: Math.round(delivered / (elapsed / 1000)) })
} else {
  // Paced: every 2 ms, send what is due at `rate` msg/s, round-robin over senders.
  let due = 0
  let next = 0
  const start = performance.now()
  measuring = true
  const timer = setInterval(() => {
    const shouldHaveSent = Math.floor(((performance.now() - start) / 1000) * rate)
    for (; due < shouldHaveSent; due++) void sendOne(next++ % pairs)
  }, 2)
  await sleep(durationMs)
  clearInterval(timer)
  await sleep(3_000) // let the tail arrive
  measuring = false
  // The first `warmupMs` of samples are discarded (connection warm-up, JIT).
  const skip = Math.floor((warmupMs / 1000) * rate)
  const sorted = latencies.slice(skip).sort((a, b) => a - b)
  report({
    offered: rate,
    sent,
    delivered,
    p50: Number(percentile(sorted, 0.5).toFixed(2)),
    p99: Number(percentile(sorted, 0.99).toFixed(2)),
    max: Number((sorted.at(-1) ?? NaN).toFixed(2))
  })
}
