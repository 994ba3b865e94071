// Scenario 4: reconnect storm. `count` persistent clients are connected and
// subscribed, then all dropped at once (no DISCONNECT); one message is
// queued for each; then all reconnect at once. Reports the time until every
// client is back and has its message.
import { loadArgs, profileFor, report, sleep, timedBody } from '../profile.ts'
import { RawClient } from '../raw-client.ts'
import { connectMany } from './connections.ts'

const { kind, port, run, count: countArg, timeoutMs: timeoutArg } = loadArgs()
const count = Number(countArg ?? 10_000)
const timeoutMs = Number(timeoutArg ?? 120_000)
const profile = profileFor(kind)
const users = Array.from({ length: count }, (_, i) => `storm${i}-${run}`)

const first = await connectMany(port, profile, users)
for (const client of first.clients) client?.destroy()
await sleep(2_000)

const sender = await RawClient.connect({ port, ...profile.credentials(`storm-sender-${run}`, 'd') })
const inflight = new Set<Promise<void>>()
for (let i = 0; i < count; i++) {
  const p = sender.publish(profile.inbox(users[i]!), profile.encode(`s${i}`, timedBody(i))).then(() => { inflight.delete(p) })
  inflight.add(p)
  if (inflight.size >= 500) await Promise.race(inflight)
}
await Promise.all(inflight)

const got = new Uint8Array(count)
let received = 0
const start = performance.now()
// "At once": every reconnect is started without waiting for the others.
const again = await connectMany(port, profile, users, count, (i) => { if (got[i] === 0) { got[i] = 1; received++ } })
const reconnectedMs = performance.now() - start
while (received < count - again.failed && performance.now() - start < timeoutMs) await sleep(10)
report({
  count,
  initialFailed: first.failed,
  reconnected: count - again.failed,
  received,
  allBackMs: Math.round(reconnectedMs),
  allReceivedMs: received === count ? Math.round(performance.now() - start) : null
})
