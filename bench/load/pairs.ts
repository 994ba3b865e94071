// Scenario 1: 1:1 QoS 1 over persistent sessions, N senders to N receivers,
// 200-byte payloads.
//   mode "throughput": each sender keeps `window` messages in flight; reports
//     delivered msg/s over `durationMs` after a warm-up.
//   mode "latency": all senders together offer `rate` msg/s; reports the
//     end-to-end latency distribution (send → delivery, same process clock).
//   `lag: true` (either mode): also the time from the sender's PUBACK to the
//     recipient's delivery, per message. In Redis mode the PUBACK means the
//     message is durable in the sender's log, and the recipient's copy follows
//     through the relay (history/redis-relay.ts); in embedded mode both copies
//     are written in one batch, so this shows what the relay adds.
//   `archiveLag: true` (throughput mode): samples the archive's lag every
//     200 ms while sending (issue #21: the archiver keeps up): the server's
//     `inboxd_archive_lag_seconds` from /metrics (`httpPort`), and in Redis
//     mode (`redisUrl`) the same figure read from the pending index itself
//     (now − the score of its oldest owner); then, once the last PUBACK is in,
//     how long until both are 0, and how many events were archived.
import { RawClient } from '../raw-client.ts'
import { loadArgs, percentile, profileFor, readTimedBody, report, sleep, timedBody } from '../profile.ts'
import { ArchiveLagSampler } from './archive-lag.ts'

const args = loadArgs()
const { kind, port, run } = args
const pairs = Number(args.pairs ?? 20)
const mode = String(args.mode ?? 'throughput')
const durationMs = Number(args.durationMs ?? 10_000)
const warmupMs = Number(args.warmupMs ?? 2_000)
const window = Number(args.window ?? 50)
const rate = Number(args.rate ?? 5_000)
const lag = args.lag === true
const profile = profileFor(kind)
/** With `lag`: when each message's PUBACK and its first delivery reached this process, by index. */
const pubackAt = new Map<number, number>()
const deliveredAt = new Map<number, number>()

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
      if (lag) {
        const { index } = readTimedBody(profile.decode(payload))
        if (!deliveredAt.has(index)) deliveredAt.set(index, performance.now())
      }
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
  const puback = senders[i]!.publish(profile.inbox(receivers[i]!.user), profile.encode(`m${n}`, timedBody(n)))
  return lag ? puback.then(() => { pubackAt.set(n, performance.now()) }) : puback
}

/** PUBACK → delivery over messages [from, to): percentiles in ms, and how many never arrived. */
function lagReport (from: number, to: number): Record<string, number> {
  const lags: number[] = []
  let missing = 0
  for (let n = from; n < to; n++) {
    const acked = pubackAt.get(n)
    const arrived = deliveredAt.get(n)
    if (acked === undefined || arrived === undefined) missing++
    else lags.push(arrived - acked)
  }
  lags.sort((a, b) => a - b)
  const ms = (value: number | undefined): number => Number((value ?? NaN).toFixed(2))
  return {
    lagCount: lags.length,
    lagMissing: missing,
    lagMin: ms(lags[0]),
    lagP50: ms(percentile(lags, 0.5)),
    lagP99: ms(percentile(lags, 0.99)),
    lagMax: ms(lags.at(-1)),
    // Delivered before the sender saw its PUBACK (the two travel on different connections).
    lagNegative: lags.filter((v) => v < 0).length
  }
}

if (mode === 'throughput') {
  const sampler = args.archiveLag === true ? new ArchiveLagSampler(Number(args.httpPort), typeof args.redisUrl === 'string' && kind.startsWith('inboxd-redis') ? args.redisUrl : undefined) : undefined
  sampler?.start()
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
  const first = counter
  const start = performance.now()
  await sleep(durationMs)
  measuring = false
  const elapsed = performance.now() - start
  const last = counter
  stop = true
  await Promise.race([Promise.all(loops), sleep(5_000)])
  const archive = sampler === undefined ? {} : await sampler.finish(sent)
  if (lag) await sleep(3_000) // the last relayed copies arrive
  report({ msgPerSec: Math.round(delivered / (elapsed / 1000)), ...(lag ? lagReport(first, last) : {}), ...archive })
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
    max: Number((sorted.at(-1) ?? NaN).toFixed(2)),
    ...(lag ? lagReport(skip, counter) : {})
  })
}
