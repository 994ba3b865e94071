// `npm run bench`: runs every scenario against every target, each load in
// its own process, repeats the light scenarios and quotes medians, and
// writes BENCHMARKS.md. BENCH_REPEATS (default 3) and BENCH_ONLY
// (comma-separated target kinds) narrow a run; BENCH_QUICK=1 shrinks sizes.
// Issue #21's targets: BENCH_BASE_TREE (a checkout of the commit before the
// archive, for the embedded A/B), BENCH_ARCHIVE_ROWS (default 1,000,000),
// BENCH_APPEND=1 (add runs to the file's rather than replace them).
import { spawn } from 'node:child_process'
import { writeFileSync, readFileSync } from 'node:fs'
import { cpus, totalmem, release, tmpdir } from 'node:os'
import { execFileSync, spawnSync } from 'node:child_process'
import { natsVersion, rabbitmqVersion } from './peers.ts'
import { BENCH_REDIS_ARGS, OPT_IN_TARGETS, TARGETS, clusterSpread, mosquittoAvailable, peerAvailable, rssKb, startBenchCluster, startBenchRedis, startTarget, stopBenchCluster, stopBenchRedis } from './targets.ts'
import type { TargetKind } from './profile.ts'
import { sleep } from './profile.ts'
import { archiveReport } from './report-archive.ts'

type Result = Record<string, number | null | boolean | string | Record<string, unknown>>

const quick = process.env.BENCH_QUICK === '1'
const repeats = Number(process.env.BENCH_REPEATS ?? (quick ? 1 : 3))
const only = process.env.BENCH_ONLY?.split(',')
/** BENCH_SCENARIOS=idle10k,idle50k: only these scenarios (for re-measuring one part). */
const onlyScenarios = process.env.BENCH_SCENARIOS?.split(',')
// The Redis-mode target's own Redis, with AOF (bench/targets.ts).
const BENCH_REDIS_URL = only === undefined || only.includes('inboxd-redis') || only.includes('inboxd-redis-pg') ? await startBenchRedis() : undefined
// The cluster target's own Redis Cluster (3 primaries, 3 replicas, the same AOF).
if (only === undefined || only.includes('inboxd-cluster')) await startBenchCluster()

interface Scenario {
  id: string
  script: string
  args: Record<string, unknown>
  repeats: number
  timeoutMs: number
  /** Only for these targets (default: all but OPT_IN_TARGETS). */
  targets?: TargetKind[]
  /** Our server's settings for this scenario. */
  env?: Record<string, string>
}

const SCENARIOS: Scenario[] = [
  { id: 'throughput', script: 'pairs', args: { mode: 'throughput', pairs: 20, window: 50, durationMs: quick ? 3_000 : 10_000, warmupMs: 2_000 }, repeats, timeoutMs: 60_000 },
  // The same, with every PUBACK after an fsync: DURABILITY=disk (embedded: LevelDB sync per batch; Redis: appendfsync always).
  { id: 'throughputDisk', script: 'pairs', args: { mode: 'throughput', pairs: 20, window: 50, durationMs: quick ? 3_000 : 10_000, warmupMs: 2_000 }, repeats, timeoutMs: 60_000, targets: ['inboxd-redis', 'inboxd-embedded'], env: { DURABILITY: 'disk' } },
  { id: 'latency', script: 'pairs', args: { mode: 'latency', pairs: 20, rate: 5_000, durationMs: quick ? 3_000 : 10_000, warmupMs: 1_000 }, repeats, timeoutMs: 60_000 },
  { id: 'drain10k', script: 'drain', args: { count: 10_000 }, repeats, timeoutMs: 180_000 },
  { id: 'drain100k', script: 'drain', args: { count: quick ? 20_000 : 100_000 }, repeats: 1, timeoutMs: 400_000 },
  { id: 'idle10k', script: 'idle', args: { count: quick ? 2_000 : 10_000 }, repeats: 1, timeoutMs: 300_000 },
  { id: 'idle50k', script: 'idle', args: { count: quick ? 5_000 : 50_000 }, repeats: 1, timeoutMs: 600_000 },
  { id: 'storm10k', script: 'storm', args: { count: quick ? 2_000 : 10_000 }, repeats: 1, timeoutMs: 300_000 },
  { id: 'groupFanout', script: 'groups', args: { mode: 'fanout', members: 100, durationMs: quick ? 3_000 : 5_000 }, repeats: 1, timeoutMs: 120_000, targets: ['inboxd-redis', 'inboxd-embedded', 'aedes-memory', 'mosquitto'] },
  { id: 'group1k', script: 'groups', args: { mode: 'large', members: 1_000, redisUrl: BENCH_REDIS_URL }, repeats: 1, timeoutMs: 300_000, targets: ['inboxd-redis', 'inboxd-embedded'] },
  { id: 'group10k', script: 'groups', args: { mode: 'large', members: 10_000, redisUrl: BENCH_REDIS_URL }, repeats: 1, timeoutMs: 900_000, targets: ['inboxd-redis', 'inboxd-embedded'] },
  // The publish limit set above its default (20/s) so the 10 calm senders (100 msg/s each) stay under it; bursts of 200.
  { id: 'flood', script: 'flood', args: { phaseMs: quick ? 3_000 : 6_000 }, repeats: 1, timeoutMs: 120_000, targets: ['inboxd-redis', 'inboxd-embedded'], env: { PUBLISH_RATE: '100', PUBLISH_BURST: '200' } },
  { id: 'floodUnlimited', script: 'flood', args: { phaseMs: quick ? 3_000 : 6_000 }, repeats: 1, timeoutMs: 120_000, targets: ['inboxd-redis', 'inboxd-embedded'], env: { PUBLISH_RATE: '0' } },
  { id: 'commands', script: 'commands', args: { count: 10_000, redisUrl: BENCH_REDIS_URL }, repeats: 1, timeoutMs: 120_000, targets: ['inboxd-redis'] },
  // WAIT before every acknowledged write: one replica of the writer's slot holds it (issue #20: "measure its cost").
  { id: 'throughputWait', script: 'pairs', args: { mode: 'throughput', pairs: 20, window: 50, durationMs: quick ? 3_000 : 10_000, warmupMs: 2_000 }, repeats, timeoutMs: 60_000, targets: ['inboxd-cluster'], env: { REDIS_WAIT_REPLICAS: '1' } },
  // The sender's PUBACK to the recipient's delivery (the relay, in Redis mode), paced and at saturation.
  { id: 'relayLag1k', script: 'pairs', args: { mode: 'latency', lag: true, pairs: 20, rate: 1_000, durationMs: quick ? 3_000 : 10_000, warmupMs: 1_000 }, repeats, timeoutMs: 60_000, targets: ['inboxd-redis', 'inboxd-cluster', 'inboxd-embedded'] },
  // The same paced run with WAIT before every acknowledged write (and before the relay marks a copy done).
  { id: 'relayLag1kWait', script: 'pairs', args: { mode: 'latency', lag: true, pairs: 20, rate: 1_000, durationMs: quick ? 3_000 : 10_000, warmupMs: 1_000 }, repeats, timeoutMs: 60_000, targets: ['inboxd-cluster'], env: { REDIS_WAIT_REPLICAS: '1' } },
  { id: 'relayLagMax', script: 'pairs', args: { mode: 'throughput', lag: true, pairs: 20, window: 50, durationMs: quick ? 3_000 : 10_000, warmupMs: 2_000 }, repeats, timeoutMs: 60_000, targets: ['inboxd-redis', 'inboxd-cluster', 'inboxd-embedded'] },
  // Issue #21. Scenario 1's throughput with and without the archive, the targets taking turns (paired):
  // Redis mode without and with DATABASE_URL; embedded mode (which always archives now) and, with
  // BENCH_BASE_TREE, the commit before the archive.
  { id: 'throughputArchive', script: 'pairs', args: { mode: 'throughput', pairs: 20, window: 50, durationMs: quick ? 3_000 : 10_000, warmupMs: 2_000 }, repeats, timeoutMs: 60_000, targets: ['inboxd-redis', 'inboxd-redis-pg', 'inboxd-embedded', 'inboxd-embedded-base'] },
  // The same run, sampling the archive's lag every 200 ms while it runs, then until it is 0.
  { id: 'archiveLag', script: 'pairs', args: { mode: 'throughput', archiveLag: true, redisUrl: BENCH_REDIS_URL, pairs: 20, window: 50, durationMs: quick ? 3_000 : 10_000, warmupMs: 2_000 }, repeats, timeoutMs: 90_000, targets: ['inboxd-redis-pg', 'inboxd-embedded'] },
  // A user's search and history pages over 1,000,000 archived rows (BENCH_ARCHIVE_ROWS), on each store.
  { id: 'archiveSearch', script: 'archive-search', args: { rows: Number(process.env.BENCH_ARCHIVE_ROWS ?? (quick ? 50_000 : 1_000_000)), users: quick ? 1_000 : 10_000, queries: 200 }, repeats: 1, timeoutMs: 7_200_000, targets: ['archive-pg', 'archive-level'] },
  // bench/search-corpus.ts: recall and precision of the corpus's queries, per approach.
  { id: 'searchCorpus', script: 'search-corpus', args: {}, repeats: 1, timeoutMs: 600_000, targets: ['archive-pg'] }
]
/** The cluster target runs the 1:1 scenarios only (section 7); the rest of the product on a cluster is covered by the tests. */
const CLUSTER_SCENARIOS = new Set(['throughput', 'throughputWait', 'latency', 'relayLag1k', 'relayLag1kWait', 'relayLagMax'])

/** Runs one load process; resolves with its JSON report (the last line it prints). */
function runLoad (script: string, args: Record<string, unknown>, timeoutMs: number, onLine?: (line: string) => void): { done: Promise<Result>, kill: () => void } {
  const child = spawn(process.execPath, ['--import', 'tsx', `bench/load/${script}.ts`, JSON.stringify(args)], { stdio: ['ignore', 'pipe', 'inherit'] })
  let last = ''
  let buffer = ''
  child.stdout.on('data', (chunk: Buffer) => {
    buffer += chunk.toString()
    let newline: number
    while ((newline = buffer.indexOf('\n')) >= 0) {
      last = buffer.slice(0, newline)
      buffer = buffer.slice(newline + 1)
      onLine?.(last)
    }
  })
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  const done = new Promise<Result>((resolve) => {
    child.on('exit', () => {
      clearTimeout(timer)
      try { resolve(JSON.parse(last) as Result) } catch { resolve({ error: true }) }
    })
  })
  return { done, kill: () => child.kill('SIGKILL') }
}

async function runScenario (kind: TargetKind, scenario: Scenario, run: string): Promise<Result> {
  const target = await startTarget(kind, scenario.env)
  try {
    const args = { ...scenario.args, kind, port: target.port, httpPort: target.httpPort, run, ...(kind.startsWith('archive-') ? { store: kind === 'archive-level' ? 'level' : 'pg' } : {}) }
    if (scenario.script !== 'idle') {
      const result = await runLoad(scenario.script, args, scenario.timeoutMs).done
      // How this run's commands spread over the primaries (their counts were reset when it started).
      return kind === 'inboxd-cluster' ? { ...result, ...await clusterSpread() } : result
    }
    // Idle memory: the server's RSS before, and once every client is connected and things settle.
    await sleep(1_000)
    const before = rssKb(target.pid)
    let ready: Result | undefined
    const load = runLoad('idle', args, scenario.timeoutMs, (line) => { if (line.includes('"ready"')) ready = JSON.parse(line) as Result })
    const started = Date.now()
    while (ready === undefined && Date.now() - started < scenario.timeoutMs) await sleep(100)
    await sleep(5_000)
    const after = rssKb(target.pid)
    load.kill()
    await load.done
    if (ready === undefined) return { error: true }
    const connected = Number(ready.connected)
    return { ...ready, rssBeforeMb: Math.round(before / 1024), rssAfterMb: Math.round(after / 1024), kbPerConnection: connected > 0 ? Number(((after - before) / connected).toFixed(2)) : null }
  } finally {
    await target.stop()
  }
}

function median (values: number[]): number | null {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b)
  if (sorted.length === 0) return null
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/** Medians of every numeric field over the repeats. */
function summarise (results: Result[]): Result {
  const summary: Result = {}
  for (const key of Object.keys(results[0] ?? {})) {
    const values = results.map((r) => r[key]).filter((v): v is number => typeof v === 'number')
    summary[key] = values.length === results.length ? median(values) : results[0]![key] ?? null
  }
  return summary
}

/** The 1-minute load average (this machine is shared): kept with every run. */
const loadAverage = (): number => Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0])

const results = new Map<string, Result>() // `${kind}/${scenario}`
const raw: Record<string, Result[]> = {}
const remeasured: string[] = []
/** In merge mode: the previous file's "Measured ..." line and its "Re-measured ..." and "Note ..." lines, kept. */
let measuredLine: string | undefined
const remeasuredBefore: string[] = []
// BENCH_MERGE=1: start from the runs in the current BENCHMARKS.md and replace
// only what this run measures (to re-measure one part without redoing all).
if (process.env.BENCH_MERGE === '1') {
  const file = readFileSync(process.env.BENCH_OUT ?? 'BENCHMARKS.md', 'utf8')
  measuredLine = /^Measured .*$/m.exec(file)?.[0]
  remeasuredBefore.push(...file.match(/^- (Re-measured|Note) .*$/gm) ?? [])
  const previous = /```json\n([\s\S]*?)\n```/.exec(file)?.[1]
  for (const [key, runs] of Object.entries(JSON.parse(previous ?? '{}') as Record<string, Result[]>)) {
    raw[key] = runs
    results.set(key, summarise(runs))
  }
}
const targets = TARGETS.filter((t) => only === undefined || only.includes(t.kind))
const haveMosquitto = await mosquittoAvailable('mosquitto')
const haveUnlimited = await mosquittoAvailable('mosquitto-unlimited')
const haveNats = peerAvailable('nats-jetstream')
const haveRabbitmq = peerAvailable('rabbitmq')
const available = (kind: TargetKind): boolean => kind === 'mosquitto' ? haveMosquitto : kind === 'mosquitto-unlimited' ? haveUnlimited
  : kind === 'nats-jetstream' ? haveNats : kind === 'rabbitmq' ? haveRabbitmq : true

// One scenario at a time, its repeats taking the targets in turn (A B C, A B C, …), so a
// shared machine whose load drifts during the run slows every target of a comparison alike.
for (const scenario of SCENARIOS) {
  if (onlyScenarios !== undefined && !onlyScenarios.includes(scenario.id)) continue
  const kinds = targets.map((t) => t.kind).filter((kind) => available(kind) &&
    (scenario.targets === undefined ? !OPT_IN_TARGETS.has(kind) : scenario.targets.includes(kind)) && (kind !== 'inboxd-cluster' || CLUSTER_SCENARIOS.has(scenario.id)))
  const runs = new Map<TargetKind, Result[]>(kinds.map((kind) => [kind, []]))
  for (let r = 0; r < scenario.repeats; r++) {
    for (const kind of kinds) {
      const run = `${Date.now().toString(36)}${r}`
      process.stderr.write(`${kind} ${scenario.id} run ${r + 1}/${scenario.repeats} (load ${loadAverage()})... `)
      const result = { ...await runScenario(kind, scenario, run), load: loadAverage() }
      process.stderr.write(`${JSON.stringify(result)}\n`)
      runs.get(kind)!.push(result)
    }
  }
  for (const [kind, fresh] of runs) {
    // BENCH_APPEND=1 (with BENCH_MERGE=1): add these runs to the file's instead of replacing them (more pairs).
    const list = process.env.BENCH_APPEND === '1' ? [...(raw[`${kind}/${scenario.id}`] ?? []), ...fresh] : fresh
    raw[`${kind}/${scenario.id}`] = list
    if (process.env.BENCH_MERGE === '1') remeasured.push(`${kind}/${scenario.id}`)
    results.set(`${kind}/${scenario.id}`, summarise(list))
  }
}

// ---- BENCHMARKS.md -------------------------------------------------------------

const version = (pkg: string): string => (JSON.parse(readFileSync(`node_modules/${pkg}/package.json`, 'utf8')) as { version: string }).version
const safe = (f: () => string): string => { try { return f() } catch { return 'unknown' } }
// `mosquitto -h` prints its version and exits non-zero.
const mosquittoVersion = safe(() => /mosquitto version ([\d.]+)/.exec(spawnSync('mosquitto', ['-h'], { encoding: 'utf8' }).stdout)?.[1] ?? 'unknown')
const redisVersion = safe(() => /v=(\S+)/.exec(execFileSync('redis-server', ['--version'], { encoding: 'utf8' }))?.[1] ?? 'unknown')
const dataDirFs = safe(() => execFileSync('df', ['--output=fstype', tmpdir()], { encoding: 'utf8' }).trim().split('\n').pop() ?? 'unknown')
const mosquittoPersistence = safe(() => /^persistence\s+(\S+)/m.exec(readFileSync('/etc/mosquitto/mosquitto.conf', 'utf8'))?.[1] ?? 'false')
const get = (kind: TargetKind, scenario: string, field: string): number | null => {
  const value = results.get(`${kind}/${scenario}`)?.[field]
  return typeof value === 'number' ? value : null
}
// Sections 1–7: the targets they were written for (issue #21's targets have section 8).
const shown = TARGETS.filter((t) => available(t.kind) && !OPT_IN_TARGETS.has(t.kind) && [...results.keys()].some((key) => key.startsWith(`${t.kind}/`)))
const fmt = (value: number | null, digits = 0): string => (value === null ? 'n/a' : value.toLocaleString('en-US', { maximumFractionDigits: digits }))
const ratio = (value: number | null, reference: number | null, lowerIsBetter = false): string => {
  if (value === null || reference === null || reference === 0 || value === 0) return 'n/a'
  return `${Number((lowerIsBetter ? reference / value : value / reference).toPrecision(2))}×`
}
const cell = (kind: TargetKind, scenario: string, field: string, lowerIsBetter = false, digits = 0): string => {
  const value = get(kind, scenario, field)
  // Drains are compared with the Mosquitto that keeps a whole backlog; the rest with the packaged one.
  const referenceKind: TargetKind = scenario.startsWith('drain') ? 'mosquitto-unlimited' : 'mosquitto'
  const reference = available(referenceKind) ? get(referenceKind, scenario, field) : null
  return kind.startsWith('mosquitto') || reference === null ? fmt(value, digits) : `${fmt(value, digits)} (${ratio(value, reference, lowerIsBetter)})`
}
/** The durable peers (issue #23): inboxd's figures against theirs. */
const PEERS = [['nats-jetstream', 'NATS JetStream'], ['rabbitmq', 'RabbitMQ']] as const

const lines: string[] = []
lines.push('# Benchmarks', '')
lines.push(measuredLine ?? `Measured ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC with \`npm run bench\`${process.env.BENCH_REPEATS !== undefined ? ` (BENCH_REPEATS=${process.env.BENCH_REPEATS})` : ''}${quick ? ' (BENCH_QUICK=1)' : ''}.`, '')
lines.push(`- Machine: ${cpus().length} × ${cpus()[0]?.model.trim()}, ${Math.round(totalmem() / 2 ** 30)} GiB, Linux ${release()}. Load generators run in their own processes on the same machine; all traffic is on loopback.`)
lines.push(`- Node ${process.version}; aedes ${version('aedes')}, aedes-persistence-redis ${version('aedes-persistence-redis')}, aedes-persistence-level ${version('aedes-persistence-level')}, mqemitter-redis ${version('mqemitter-redis')}; Redis ${redisVersion}; Mosquitto ${haveMosquitto ? mosquittoVersion : 'not reachable, skipped'}; NATS ${haveNats ? safe(natsVersion) : 'not installed, skipped'}; RabbitMQ ${haveRabbitmq ? safe(rabbitmqVersion) : 'not installed, skipped'}.`)
lines.push('- This container caps every process at 20,000 open files (hard limit; it cannot be raised here), so no target can hold 50k connections on this machine: the 50k column shows how far each got. The harness raises the limit itself where it is allowed to.')
lines.push(`- Figures are medians of ${repeats} runs for throughput, latency and the 10k drain; the 100k drain, idle memory and the reconnect storm run once. A fresh server process is started for every run. In brackets: the ratio to Mosquitto (above 1× is better than Mosquitto).`)
lines.push('- "inboxd" is the whole product: JWT auth, stamping, the history log write (per-user seq, idempotency), delivery from the log with per-device cursors, delivered receipts and presence. Bare Aedes and Mosquitto only move packets.')
lines.push('- Persistence of each target, and so what a PUBACK survives there:')
lines.push(`  - inboxd, Redis mode: a Redis ${redisVersion} that the harness starts on a spare port with its own data directory and \`${BENCH_REDIS_ARGS.join(' ')}\` (as docker-compose.yml), \`DURABILITY=process\`: a crash or restart of the server or of Redis; a power cut can lose about the last second. Its \`DURABILITY=disk\` row: the same Redis with \`appendfsync always\`, which survives a power cut too.`)
lines.push(`  - inboxd, Redis mode on a Redis Cluster: 3 primaries and 3 replicas (\`redis-cli --cluster create … --cluster-replicas 1\`) that the harness starts on spare ports, every node with \`${BENCH_REDIS_ARGS.join(' ')}\`, \`DURABILITY=process\`: a PUBACK survives what it survives on one Redis, on the primary of the writer's slot; replication is asynchronous, so a primary that dies and is replaced by its replica can lose the last writes, unless \`REDIS_WAIT_REPLICAS=1\` (its row in section 7), where a PUBACK also waits until a replica holds the write.`)
lines.push(`  - inboxd, embedded mode: LevelDB in a fresh \`DATA_DIR\` (${dataDirFs}), \`DURABILITY=process\`: each batch written to the OS, not fsynced: a crash of the server, not a power cut. Its \`DURABILITY=disk\` row: one fsync per group-commit batch, which survives a power cut too.`)
lines.push('  - bare Aedes: none, everything is in memory.')
lines.push(`  - Mosquitto, packaged configuration: \`persistence ${mosquittoPersistence}\`${mosquittoPersistence === 'true' ? ': in memory, saved to disk every 30 minutes (the default autosave_interval) and at a clean stop, so a PUBACKed message survives neither a crash nor a power cut' : ': memory only'}.`)
lines.push('  - Mosquitto, unlimited queue: `persistence false`: memory only.')
lines.push('  - NATS with JetStream: its own server on spare ports with its own store directory (`jetstream { store_dir }`, `mqtt { listen }`, `server_name`); a QoS 1 message for a persistent session is a file-store message, written to the OS at once and fsynced every 60 s (NATS 2.9\'s default, not settable there): it survives a crash of the server, not a power cut within the minute.')
lines.push('  - RabbitMQ: a node of its own (spare ports, its own data directory and Erlang cookie, the `rabbitmq_mqtt` plugin); a persistent session\'s queue is durable and QoS 1 messages persistent; the PUBACK waits for the queue\'s confirm, given once the message store has written it to disk (fsync in batches): it survives a power cut.', '')

lines.push('## 1. Durable 1:1 QoS 1 (20 senders → 20 receivers, persistent sessions, 200-byte payloads)', '')
lines.push('| target | sustained delivered msg/s | latency at 5k msg/s offered: p50 ms | p99 ms | max ms | delivered / sent |', '|---|---|---|---|---|---|')
for (const t of shown) {
  lines.push(`| ${t.label} | ${cell(t.kind, 'throughput', 'msgPerSec')} | ${cell(t.kind, 'latency', 'p50', true, 2)} | ${cell(t.kind, 'latency', 'p99', true, 2)} | ${cell(t.kind, 'latency', 'max', true, 1)} | ${fmt(get(t.kind, 'latency', 'delivered'))} / ${fmt(get(t.kind, 'latency', 'sent'))} |`)
}
if (shown.some((t) => results.has(`${t.kind}/throughputDisk`))) {
  lines.push('', 'The same throughput with `DURABILITY` both ways (with `disk`, every PUBACK waits for an fsync):', '')
  lines.push('| target | DURABILITY=process: msg/s | storage | DURABILITY=disk: msg/s | storage | disk / process |', '|---|---|---|---|---|---|')
  for (const t of shown) {
    if (!results.has(`${t.kind}/throughputDisk`)) continue
    const [asProcess, asDisk] = t.kind === 'inboxd-redis' ? ['AOF, appendfsync everysec', 'AOF, appendfsync always'] : ['LevelDB, no fsync', 'LevelDB, fsync per batch']
    lines.push(`| ${t.label} | ${cell(t.kind, 'throughput', 'msgPerSec')} | ${asProcess} | ${fmt(get(t.kind, 'throughputDisk', 'msgPerSec'))} | ${asDisk} | ${ratio(get(t.kind, 'throughputDisk', 'msgPerSec'), get(t.kind, 'throughput', 'msgPerSec'))} |`)
  }
}
if (PEERS.some(([kind]) => results.has(`${kind}/throughput`))) {
  lines.push('', 'Against the peers that also keep a QoS 1 message for an offline session (issue #23; above 1× is better than the peer):', '')
  lines.push(`| target | ${PEERS.map(([, name]) => `throughput vs ${name}`).join(' | ')} | ${PEERS.map(([, name]) => `p99 vs ${name}`).join(' | ')} |`, `|---|${PEERS.map(() => '---|---|').join('')}`)
  for (const t of shown.filter((t) => t.kind.startsWith('inboxd-'))) {
    lines.push(`| ${t.label} | ${PEERS.map(([peer]) => ratio(get(t.kind, 'throughput', 'msgPerSec'), get(peer, 'throughput', 'msgPerSec'))).join(' | ')} | ${PEERS.map(([peer]) => ratio(get(t.kind, 'latency', 'p99'), get(peer, 'latency', 'p99'), true)).join(' | ')} |`)
  }
}
lines.push('', '## 2. Offline drain (messages queued for one device; time from its reconnect to the last message)', '')
lines.push('| target | 10k: ms | 10k: received | 100k: ms | 100k: received | queue fill rate, msg/s |', '|---|---|---|---|---|---|')
for (const t of shown.filter((t) => t.kind !== 'inboxd-cluster')) {
  lines.push(`| ${t.label} | ${cell(t.kind, 'drain10k', 'drainMs', true)} | ${fmt(get(t.kind, 'drain10k', 'received'))} | ${cell(t.kind, 'drain100k', 'drainMs', true)} | ${fmt(get(t.kind, 'drain100k', 'received'))} / ${fmt(get(t.kind, 'drain100k', 'count'))} | ${fmt(get(t.kind, 'drain10k', 'fillMsgPerSec'))} |`)
}
lines.push('', '## 3. Idle connections (persistent, subscribed, idle; 8 source addresses 127.0.0.1–8)', '')
lines.push('| target | 10k: KB per connection | connected / failed | 50k: KB per connection | connected / failed | server RSS at 50k, MB |', '|---|---|---|---|---|---|')
for (const t of shown.filter((t) => t.kind !== 'inboxd-cluster')) {
  lines.push(`| ${t.label} | ${cell(t.kind, 'idle10k', 'kbPerConnection', true, 2)} | ${fmt(get(t.kind, 'idle10k', 'connected'))} / ${fmt(get(t.kind, 'idle10k', 'failed'))} | ${cell(t.kind, 'idle50k', 'kbPerConnection', true, 2)} | ${fmt(get(t.kind, 'idle50k', 'connected'))} / ${fmt(get(t.kind, 'idle50k', 'failed'))} | ${fmt(get(t.kind, 'idle50k', 'rssAfterMb'))} |`)
}
lines.push('', '## 4. Reconnect storm (10k persistent clients dropped at once, one message queued for each, all reconnect at once)', '')
lines.push('| target | all reconnected, ms | all messages received, ms | received / clients |', '|---|---|---|---|')
for (const t of shown.filter((t) => t.kind !== 'inboxd-cluster')) {
  lines.push(`| ${t.label} | ${cell(t.kind, 'storm10k', 'allBackMs', true)} | ${cell(t.kind, 'storm10k', 'allReceivedMs', true)} | ${fmt(get(t.kind, 'storm10k', 'received'))} / ${fmt(get(t.kind, 'storm10k', 'count'))} |`)
}
if (shown.some((t) => results.has(`${t.kind}/groupFanout`))) {
  lines.push('', '## 5. Groups', '')
  lines.push('Fan-out: one sender, QoS 1, 20 publishes in flight, 200-byte bodies, for 5 s; inboxd: a 100-member group, one connected device per member (each delivery is a member\'s own log entry); Mosquitto and bare Aedes: 100 subscribers of one topic.', '')
  lines.push('| target | member deliveries/s while sending | messages sent | delivered / expected |', '|---|---|---|---|')
  for (const t of shown) {
    if (!results.has(`${t.kind}/groupFanout`)) continue
    const sent = get(t.kind, 'groupFanout', 'sent')
    lines.push(`| ${t.label} | ${cell(t.kind, 'groupFanout', 'sustainedDuringSend')} | ${fmt(sent)} | ${fmt(get(t.kind, 'groupFanout', 'delivered'))} / ${fmt(sent === null ? null : sent * (get(t.kind, 'groupFanout', 'members') ?? 0))} |`)
  }
  lines.push('', 'Large groups: members offline except 100 connected; 50 messages one after another. PUBACK: the sender\'s publish to its PUBACK (the group append and every member\'s log entry are written by then). Last delivery: to the 100th connected member. Redis memory per message: `used_memory` growth over 100 messages (Redis mode).', '')
  lines.push('| target | members | PUBACK p50 / p99 ms | last connected member p50 / p99 ms | Redis bytes per message, 200 B body | 4 KB body |', '|---|---|---|---|---|---|')
  for (const t of shown) {
    for (const scenario of ['group1k', 'group10k']) {
      if (!results.has(`${t.kind}/${scenario}`)) continue
      const v = (field: string, digits = 1): string => fmt(get(t.kind, scenario, field), digits)
      lines.push(`| ${t.label} | ${v('members', 0)} | ${v('pubackP50')} / ${v('pubackP99')} | ${v('lastDeliveryP50')} / ${v('lastDeliveryP99')} | ${v('bytesPerMessage200', 0)} | ${v('bytesPerMessage4k', 0)} |`)
    }
  }
}

if (shown.some((t) => results.has(`${t.kind}/flood`))) {
  lines.push('', '## 6. One client floods', '')
  lines.push('10 senders offer 1,000 msg/s in total to 10 receivers (QoS 1, 200 B); their end-to-end latency for 6 s with nobody else sending, then for 6 s while one more client publishes QoS 1 as fast as it can (200 in flight) to one victim. "Limited": `PUBLISH_RATE=100 PUBLISH_BURST=200` (the flood beyond it is refused with `rate_limited` and not stored); "unlimited": `PUBLISH_RATE=0` (the limit off).', '')
  lines.push('| target | publish limit | others idle: p50 / p99 ms | during the flood: p50 / p99 ms | p99 ratio | flood offered, msg/s | stored for the victim | rate_limited events |', '|---|---|---|---|---|---|---|---|')
  for (const t of shown) {
    for (const [scenario, label] of [['flood', 'limited'], ['floodUnlimited', 'unlimited']] as const) {
      if (!results.has(`${t.kind}/${scenario}`)) continue
      const v = (field: string, digits = 0): string => fmt(get(t.kind, scenario, field), digits)
      lines.push(`| ${t.label} | ${label} | ${v('idleP50', 2)} / ${v('idleP99', 2)} | ${v('floodP50', 2)} / ${v('floodP99', 2)} | ${v('p99Ratio', 2)}× | ${v('flooderPerSec')} | ${v('victimReceived')} | ${v('refusals')} |`)
    }
  }
}

if (shown.some((t) => results.has(`${t.kind}/relayLag1k`) || results.has(`${t.kind}/throughputWait`))) {
  lines.push('', '## 7. Redis Cluster and the relay (issue #20)', '')
  lines.push('Scenario 1 on one Redis and on a 3-primary cluster (`REDIS_CLUSTER_NODES`, the same 2 server processes). Everything shares the 2 cores, so the cluster cannot be faster here; what it shows is that the work spreads over the primaries. Spread: each primary\'s share of the run\'s script calls (EVALSHA + EVAL) and of all its commands (those run inside scripts included), from `INFO commandstats` (reset before each run); 40 users hash to 3 primaries, so even is 33% give or take the luck of the draw (about ±7 points for 40 users). Load average: the machine\'s 1-minute load average (2 cores, shared) after the runs, median, without / with WAIT.', '')
  lines.push('| target | msg/s | with `REDIS_WAIT_REPLICAS=1`: msg/s | WAIT / no WAIT | send → delivery at 1k msg/s: p50 / p99 ms | script calls per primary, % (min–max) | all commands per primary, % (min–max) | load average |', '|---|---|---|---|---|---|---|---|')
  for (const t of shown) {
    if (t.kind !== 'inboxd-redis' && t.kind !== 'inboxd-cluster') continue
    const share = (field: string): string => t.kind === 'inboxd-cluster' ? `${fmt(get(t.kind, 'throughput', `${field}Min`), 1)}–${fmt(get(t.kind, 'throughput', `${field}Max`), 1)}` : 'one Redis'
    const wait = get(t.kind, 'throughputWait', 'msgPerSec')
    lines.push(`| ${t.label} | ${fmt(get(t.kind, 'throughput', 'msgPerSec'))} | ${wait === null ? 'n/a (no replica)' : fmt(wait)} | ${ratio(wait, get(t.kind, 'throughput', 'msgPerSec'))} | ${fmt(get(t.kind, 'relayLag1k', 'p50'), 2)} / ${fmt(get(t.kind, 'relayLag1k', 'p99'), 2)} | ${share('scriptShare')} | ${share('callShare')} | ${fmt(get(t.kind, 'throughput', 'load'), 1)} / ${fmt(get(t.kind, 'throughputWait', 'load'), 1)} |`)
  }
  lines.push('', 'The one new thing a user can observe in Redis mode: a 1:1 message is durable in the sender\'s log at its PUBACK, and the recipient\'s copy follows through the relay (history/redis-relay.ts). Lag: from the sender\'s PUBACK to the recipient\'s device receiving the message, both seen by the load process (one clock), every message after the warm-up; negative when the delivery arrived first (PUBACK and delivery travel on different connections). Paced: 20 senders offer 1,000 msg/s in total; saturated: scenario 1\'s throughput run (50 in flight per sender). Embedded mode has no relay (both copies are in one batch): its row is the floor the transport alone gives.', '')
  lines.push('| target | load | delivered msg/s | PUBACK → delivery: p50 ms | p99 ms | max ms | delivered before the PUBACK | not delivered | send → delivery p50 / p99 ms | load average |', '|---|---|---|---|---|---|---|---|---|---|')
  for (const t of shown) {
    for (const [scenario, label] of [['relayLag1k', 'paced, 1k msg/s'], ['relayLag1kWait', 'paced, 1k msg/s, `REDIS_WAIT_REPLICAS=1`'], ['relayLagMax', 'saturated']] as const) {
      if (!results.has(`${t.kind}/${scenario}`)) continue
      const v = (field: string, digits = 2): string => fmt(get(t.kind, scenario, field), digits)
      const paced = scenario !== 'relayLagMax'
      const rate = paced ? `${v('offered', 0)} offered` : v('msgPerSec', 0)
      const endToEnd = paced ? `${v('p50')} / ${v('p99')}` : 'n/a'
      lines.push(`| ${t.label} | ${label} | ${rate} | ${v('lagP50')} | ${v('lagP99')} | ${v('lagMax', 1)} | ${v('lagNegative', 0)} of ${v('lagCount', 0)} | ${v('lagMissing', 0)} | ${endToEnd} | ${v('load', 1)} |`)
    }
  }
}

// Section 8: the archive and search (issue #21).
const archive = archiveReport(raw, (kind) => TARGETS.find((t) => t.kind === kind)?.label ?? kind)
lines.push(...archive.lines)

const mosquitto = (scenario: string, field: string): number | null => get(scenario.startsWith('drain') ? 'mosquitto-unlimited' : 'mosquitto', scenario, field)
const atLeast = (value: number | null, reference: number | null, factor: number): boolean | null =>
  value === null || reference === null ? null : value >= factor * reference
const atMost = (value: number | null, limit: number | null): boolean | null => value === null || limit === null ? null : value <= limit
const commands = results.get('inboxd-redis/commands')
const perMessage = typeof commands?.perMessage === 'number' ? commands.perMessage : null
const targetsMet: Array<readonly [string, boolean | null, string]> = [
  ['Durable 1:1 QoS 1 throughput, Redis mode ≥ 0.6× Mosquitto', atLeast(get('inboxd-redis', 'throughput', 'msgPerSec'), mosquitto('throughput', 'msgPerSec'), 0.6),
    `${fmt(get('inboxd-redis', 'throughput', 'msgPerSec'))} vs ${fmt(mosquitto('throughput', 'msgPerSec'))} msg/s (${ratio(get('inboxd-redis', 'throughput', 'msgPerSec'), mosquitto('throughput', 'msgPerSec'))})`],
  ['The same, embedded mode ≥ 0.6× Mosquitto', atLeast(get('inboxd-embedded', 'throughput', 'msgPerSec'), mosquitto('throughput', 'msgPerSec'), 0.6),
    `${fmt(get('inboxd-embedded', 'throughput', 'msgPerSec'))} msg/s (${ratio(get('inboxd-embedded', 'throughput', 'msgPerSec'), mosquitto('throughput', 'msgPerSec'))})`]
]
for (const [kind, mode] of [['inboxd-redis', 'Redis'], ['inboxd-embedded', 'embedded']] as const) {
  const nats = get('nats-jetstream', 'throughput', 'msgPerSec')
  targetsMet.push([`Durable 1:1 QoS 1 throughput ≥ 1.5× NATS JetStream (${mode}; issue #23)`, atLeast(get(kind, 'throughput', 'msgPerSec'), nats, 1.5),
    `${fmt(get(kind, 'throughput', 'msgPerSec'))} vs ${fmt(nats)} msg/s (${ratio(get(kind, 'throughput', 'msgPerSec'), nats)})`])
}
for (const [scenario, size] of [['drain10k', '10k'], ['drain100k', '100k']] as const) {
  for (const [kind, mode] of [['inboxd-redis', 'Redis'], ['inboxd-embedded', 'embedded']] as const) {
    const reference = mosquitto(scenario, 'drainMs')
    targetsMet.push([`Offline drain ${size}, ${mode} mode ≤ 1.5× Mosquitto's time`, atMost(get(kind, scenario, 'drainMs'), reference === null ? null : 1.5 * reference),
      `${fmt(get(kind, scenario, 'drainMs'))} ms vs ${fmt(reference)} ms`])
  }
}
for (const [kind, mode] of [['inboxd-redis', 'Redis'], ['inboxd-embedded', 'embedded']] as const) {
  const received = get(kind, 'storm10k', 'received')
  targetsMet.push([`10k reconnect storm ≤ 3 s, nothing lost (${mode})`, atMost(get(kind, 'storm10k', 'allReceivedMs'), 3000) === true && received === get(kind, 'storm10k', 'count'),
    `${fmt(get(kind, 'storm10k', 'allReceivedMs'))} ms, ${fmt(received)} / ${fmt(get(kind, 'storm10k', 'count'))} received`])
  targetsMet.push([`p99 ≤ 5 ms at 5k msg/s offered, durable (${mode})`, atMost(get(kind, 'latency', 'p99'), 5), `p99 ${fmt(get(kind, 'latency', 'p99'), 2)} ms`])
}
for (const [kind, mode] of [['inboxd-redis', 'Redis'], ['inboxd-embedded', 'embedded']] as const) {
  targetsMet.push([`Group fan-out (100 members) ≥ 0.5× Mosquitto's deliveries/s (${mode})`, atLeast(get(kind, 'groupFanout', 'sustainedDuringSend'), mosquitto('groupFanout', 'sustainedDuringSend'), 0.5),
    `${fmt(get(kind, 'groupFanout', 'sustainedDuringSend'))} vs ${fmt(mosquitto('groupFanout', 'sustainedDuringSend'))} deliveries/s (${ratio(get(kind, 'groupFanout', 'sustainedDuringSend'), mosquitto('groupFanout', 'sustainedDuringSend'))})`])
}
const body200 = get('inboxd-redis', 'group10k', 'bytesPerMessage200')
const body4k = get('inboxd-redis', 'group10k', 'bytesPerMessage4k')
// A copy per member would add (4096 − 200) × 10,000 B ≈ 39 MB per message between the two sizes;
// allow a tenth of that for measurement noise (used_memory moves as hash tables resize).
targetsMet.push(['Group message memory does not grow with body × members (10k members, Redis)', body200 === null || body4k === null ? null : body4k - body200 < 0.1 * (4096 - 200) * 10_000,
  `${fmt(body200)} B per message at 200 B, ${fmt(body4k)} B at 4 KB: +${fmt(body200 === null || body4k === null ? null : body4k - body200)} B, where a copy per member would add ${fmt((4096 - 200) * 10_000)} B`])
for (const [kind, mode] of [['inboxd-redis', 'Redis'], ['inboxd-embedded', 'embedded']] as const) {
  targetsMet.push([`Others' p99 within 2× of idle while one client floods, PUBLISH_RATE set (${mode})`, atMost(get(kind, 'flood', 'p99Ratio'), 2),
    `${fmt(get(kind, 'flood', 'idleP99'), 2)} ms idle, ${fmt(get(kind, 'flood', 'floodP99'), 2)} ms during the flood`])
}
targetsMet.push(['Redis commands per 1:1 message ≤ 3', atMost(perMessage, 3),
  perMessage === null ? 'n/a' : `${perMessage} per message (${Object.entries(commands?.top ?? {}).map(([name, calls]) => `${name} ${fmt(Number(calls) / Number(commands?.messages ?? 1), 2)}`).join(', ')})`])
if (results.has('inboxd-cluster/throughput')) {
  targetsMet.push(['Cluster: 1:1 script calls spread evenly over the 3 primaries (none above 1.5× its even share, 50%)', atMost(get('inboxd-cluster', 'throughput', 'scriptShareMax'), 50),
    `${fmt(get('inboxd-cluster', 'throughput', 'scriptShareMin'), 1)}–${fmt(get('inboxd-cluster', 'throughput', 'scriptShareMax'), 1)}% per primary; ${fmt(get('inboxd-cluster', 'throughput', 'msgPerSec'))} msg/s against ${fmt(get('inboxd-redis', 'throughput', 'msgPerSec'))} on one Redis`])
}
for (const [kind, mode] of [['inboxd-redis', 'one Redis'], ['inboxd-cluster', 'cluster']] as const) {
  if (!results.has(`${kind}/relayLag1k`) || !results.has(`${kind}/relayLagMax`)) continue
  const missing = (get(kind, 'relayLag1k', 'lagMissing') ?? 1) + (get(kind, 'relayLagMax', 'lagMissing') ?? 1)
  targetsMet.push([`Recipient's copy follows the PUBACK, measured and bounded, nothing missing (${mode})`, missing === 0,
    `PUBACK → delivery p99 ${fmt(get(kind, 'relayLag1k', 'lagP99'), 2)} ms, max ${fmt(get(kind, 'relayLag1k', 'lagMax'), 1)} ms at 1k msg/s; p99 ${fmt(get(kind, 'relayLagMax', 'lagP99'), 2)} ms, max ${fmt(get(kind, 'relayLagMax', 'lagMax'), 1)} ms saturated`])
}
targetsMet.push(...archive.targets)
if (results.has('inboxd-redis/throughput') && results.has('inboxd-embedded/throughput')) {
  lines.push('', '## Targets', '', '| target | met? | measured |', '|---|---|---|')
  for (const [name, met, measured] of targetsMet) lines.push(`| ${name} | ${met === null ? 'n/a' : met ? 'yes' : '**no**'} | ${measured} |`)
}
lines.push('', '## Reading these figures', '')
lines.push('- Two Mosquittos: the packaged one on 127.0.0.1:1883 is the reference for throughput, latency, memory and the storm (as in earlier runs of this file); it keeps only 1,000 queued messages per client, so its drain rows show what arrived. The harness also starts its own with `max_queued_messages 0` (unlimited) and `persistence false`: that one is the reference for the drain, and is shown in every table.')
lines.push('- inboxd runs every scenario but the flood with `PUBLISH_RATE=0`: the per-user publish limit, on by default (20 msg/s after a burst of 200), is off, as for a server listed in `PUBLISH_RATE_EXEMPT`, since each load generator\'s sender sends far faster than a person. Throughput, latency, drains and groups are measured without it.')
lines.push('- inboxd in Redis mode runs `WORKERS` server processes (default: one per core, here 2) on the same ports; Redis and the load generator share the same 2 cores.')
lines.push('- Redis commands per message: counted with MONITOR while 20 senders send 10,000 QoS 1 messages to 20 connected receivers, until all are delivered and the coalesced cursor and receipt writes are done. Commands run inside our Lua scripts are part of the one EVALSHA that runs them.')
lines.push('- A latency run offers 5k msg/s whatever the target sustains. Where that is above the target\'s throughput, messages queue up and the latency measures the backlog, not the path.')
lines.push('- What was profiled and changed on the durable path, with before/after figures: [bench/OPTIMISATIONS.md](bench/OPTIMISATIONS.md).')
lines.push(...remeasuredBefore)
if (remeasured.length > 0) lines.push(`- Re-measured ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC (BENCH_MERGE=1), the rest kept from the run above: ${remeasured.join(', ')}.`)
lines.push('', '## Raw results', '', '<details><summary>every run, as reported by the load processes</summary>', '', '```json', JSON.stringify(raw, null, 1), '```', '', '</details>', '')

const out = process.env.BENCH_OUT ?? 'BENCHMARKS.md'
writeFileSync(out, lines.join('\n'))
await stopBenchRedis()
await stopBenchCluster()
process.stderr.write(`wrote ${out}\n`)
