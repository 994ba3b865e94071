// Scenario 2: offline drain. `count` messages are queued for one device
// while it is away; reports how long it takes, from the start of its
// reconnect, until all of them have arrived.
import { RawClient } from '../raw-client.ts'
import { loadArgs, profileFor, report, sleep, timedBody } from '../profile.ts'

const { kind, port, run, count: countArg, timeoutMs: timeoutArg } = loadArgs()
const count = Number(countArg ?? 10_000)
const timeoutMs = Number(timeoutArg ?? 120_000)
const profile = profileFor(kind)
const user = `drain-${run}`

let received = 0
const away = await RawClient.connect({ port, ...profile.credentials(user, 'd') })
await away.subscribe(profile.inbox(user))
away.end()
await sleep(200)

const sender = await RawClient.connect({ port, ...profile.credentials(`sender-${run}`, 'd') })
const fillStart = performance.now()
const inflight = new Set<Promise<void>>()
for (let i = 0; i < count; i++) {
  const p = sender.publish(profile.inbox(user), profile.encode(`q${i}`, timedBody(i))).then(() => { inflight.delete(p) })
  inflight.add(p)
  if (inflight.size >= 500) await Promise.race(inflight)
}
await Promise.all(inflight)
const fillMs = performance.now() - fillStart
sender.end()

const start = performance.now()
let doneAt: number | undefined
let lastArrival = start
await RawClient.connect({
  port,
  ...profile.credentials(user, 'd'),
  onMessage: () => {
    lastArrival = performance.now()
    if (++received === count) doneAt = lastArrival
  }
})
// Stop at the last message, at the timeout, or when nothing has come for 5 s
// (a broker that dropped part of the queue will not send the rest).
while (doneAt === undefined && performance.now() - start < timeoutMs && performance.now() - lastArrival < 5_000) await sleep(5)
// Anything beyond `count` would be a duplicate; give it a moment to show.
await sleep(300)
report({ count, received, drainMs: doneAt === undefined ? null : Math.round(doneAt - start), fillMsgPerSec: Math.round(count / (fillMs / 1000)) })
