// Scenario 3: idle connections. Connects `count` persistent, subscribed,
// idle clients, prints a "ready" line, and holds them until killed; the
// orchestrator measures the server's memory meanwhile.
import { loadArgs, profileFor } from '../profile.ts'
import { connectMany } from './connections.ts'

const { kind, port, run, count: countArg } = loadArgs()
const count = Number(countArg ?? 10_000)
const profile = profileFor(kind)
const started = performance.now()
const { failed } = await connectMany(port, profile, Array.from({ length: count }, (_, i) => `idle${i}-${run}`))
process.stdout.write(JSON.stringify({ ready: true, connected: count - failed, failed, connectMs: Math.round(performance.now() - started) }) + '\n')
setInterval(() => {}, 60_000)
