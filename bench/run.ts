// `npm run bench`: runs every scenario against every target, each load in
// its own process, repeats the light scenarios and quotes medians, and
// writes BENCHMARKS.md. BENCH_REPEATS (default 3) and BENCH_ONLY
// (comma-separated target kinds) narrow a run; BENCH_QUICK=1 shrinks sizes.
import { spawn } from 'node:child_process'
import { writeFileSync, readFileSync } from 'node:fs'
import { cpus, totalmem, release } from 'node:os'
import { execFileSync, spawnSync } from 'node:child_process'
import { TARGETS, mosquittoAvailable, rssKb, startTarget } from './targets.ts'
import type { TargetKind } from './profile.ts'
import { sleep } from './profile.ts'

type Result = Record<string, number | null | boolean>

const quick = process.env.BENCH_QUICK === '1'
const repeats = Number(process.env.BENCH_REPEATS ?? (quick ? 1 : 3))
const only = process.env.BENCH_ONLY?.split(',')

interface Scenario {
  id: string
  script: string
  args: Record<string, unknown>
  repeats: number
  timeoutMs: number
}

const SCENARIOS: Scenario[] = [
  { id: 'throughput', script: 'pairs', args: { mode: 'throughput', pairs: 20, window: 50, durationMs: quick ? 3_000 : 10_000, warmupMs: 2_000 }, repeats, timeoutMs: 60_000 },
  { id: 'latency', script: 'pairs', args: { mode: 'latency', pairs: 20, rate: 5_000, durationMs: quick ? 3_000 : 10_000, warmupMs: 1_000 }, repeats, timeoutMs: 60_000 },
  { id: 'drain10k', script: 'drain', args: { count: 10_000 }, repeats, timeoutMs: 180_000 },
  { id: 'drain100k', script: 'drain', args: { count: quick ? 20_000 : 100_000 }, repeats: 1, timeoutMs: 400_000 },
  { id: 'idle10k', script: 'idle', args: { count: quick ? 2_000 : 10_000 }, repeats: 1, timeoutMs: 300_000 },
  { id: 'idle50k', script: 'idle', args: { count: quick ? 5_000 : 50_000 }, repeats: 1, timeoutMs: 600_000 },
  { id: 'storm10k', script: 'storm', args: { count: quick ? 2_000 : 10_000 }, repeats: 1, timeoutMs: 300_000 }
]

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
  const target = await startTarget(kind)
  try {
    const args = { ...scenario.args, kind, port: target.port, run }
    if (scenario.script !== 'idle') return await runLoad(scenario.script, args, scenario.timeoutMs).done
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

const results = new Map<string, Result>() // `${kind}/${scenario}`
const raw: Record<string, Result[]> = {}
const targets = TARGETS.filter((t) => only === undefined || only.includes(t.kind))
const haveMosquitto = await mosquittoAvailable()

for (const target of targets) {
  if (target.kind === 'mosquitto' && !haveMosquitto) continue
  for (const scenario of SCENARIOS) {
    const runs: Result[] = []
    for (let r = 0; r < scenario.repeats; r++) {
      const run = `${Date.now().toString(36)}${r}`
      process.stderr.write(`${target.kind} ${scenario.id} run ${r + 1}/${scenario.repeats}... `)
      const result = await runScenario(target.kind, scenario, run)
      process.stderr.write(`${JSON.stringify(result)}\n`)
      runs.push(result)
    }
    raw[`${target.kind}/${scenario.id}`] = runs
    results.set(`${target.kind}/${scenario.id}`, summarise(runs))
  }
}

// ---- BENCHMARKS.md -------------------------------------------------------------

const version = (pkg: string): string => (JSON.parse(readFileSync(`node_modules/${pkg}/package.json`, 'utf8')) as { version: string }).version
const safe = (f: () => string): string => { try { return f() } catch { return 'unknown' } }
// `mosquitto -h` prints its version and exits non-zero.
const mosquittoVersion = safe(() => /mosquitto version ([\d.]+)/.exec(spawnSync('mosquitto', ['-h'], { encoding: 'utf8' }).stdout)?.[1] ?? 'unknown')
const redisVersion = safe(() => /redis_version:(\S+)/.exec(execFileSync('redis-cli', ['INFO', 'server'], { encoding: 'utf8' }))?.[1] ?? 'unknown')
const get = (kind: TargetKind, scenario: string, field: string): number | null => {
  const value = results.get(`${kind}/${scenario}`)?.[field]
  return typeof value === 'number' ? value : null
}
const shown = targets.filter((t) => t.kind !== 'mosquitto' || haveMosquitto)
const fmt = (value: number | null, digits = 0): string => (value === null ? 'n/a' : value.toLocaleString('en-US', { maximumFractionDigits: digits }))
const ratio = (value: number | null, reference: number | null, lowerIsBetter = false): string => {
  if (value === null || reference === null || reference === 0 || value === 0) return 'n/a'
  return `${Number((lowerIsBetter ? reference / value : value / reference).toPrecision(2))}×`
}
const cell = (kind: TargetKind, scenario: string, field: string, lowerIsBetter = false, digits = 0): string => {
  const value = get(kind, scenario, field)
  const reference = haveMosquitto ? get('mosquitto', scenario, field) : null
  return kind === 'mosquitto' || !haveMosquitto ? fmt(value, digits) : `${fmt(value, digits)} (${ratio(value, reference, lowerIsBetter)})`
}

const lines: string[] = []
lines.push('# Benchmarks', '')
lines.push(`Measured ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC with \`npm run bench\`${process.env.BENCH_REPEATS !== undefined ? ` (BENCH_REPEATS=${process.env.BENCH_REPEATS})` : ''}${quick ? ' (BENCH_QUICK=1)' : ''}.`, '')
lines.push(`- Machine: ${cpus().length} × ${cpus()[0]?.model.trim()}, ${Math.round(totalmem() / 2 ** 30)} GiB, Linux ${release()}. Load generators run in their own processes on the same machine; all traffic is on loopback.`)
lines.push(`- Node ${process.version}; aedes ${version('aedes')}, aedes-persistence-redis ${version('aedes-persistence-redis')}, aedes-persistence-level ${version('aedes-persistence-level')}, mqemitter-redis ${version('mqemitter-redis')}; Redis ${redisVersion}; Mosquitto ${haveMosquitto ? mosquittoVersion : 'not reachable, skipped'}.`)
lines.push('- This container caps every process at 20,000 open files (hard limit; it cannot be raised here), so no target can hold 50k connections on this machine: the 50k column shows how far each got. The harness raises the limit itself where it is allowed to.')
lines.push(`- Figures are medians of ${repeats} runs for throughput, latency and the 10k drain; the 100k drain, idle memory and the reconnect storm run once. A fresh server process is started for every run. In brackets: the ratio to Mosquitto (above 1× is better than Mosquitto).`)
lines.push('- "inboxd" is the whole product: JWT auth, stamping, the history log write (per-user seq, idempotency), the broker queue, delivered receipts and presence. Bare Aedes and Mosquitto only move packets.', '')

lines.push('## 1. Durable 1:1 QoS 1 (20 senders → 20 receivers, persistent sessions, 200-byte payloads)', '')
lines.push('| target | sustained delivered msg/s | latency at 5k msg/s offered: p50 ms | p99 ms | max ms | delivered / sent |', '|---|---|---|---|---|---|')
for (const t of shown) {
  lines.push(`| ${t.label} | ${cell(t.kind, 'throughput', 'msgPerSec')} | ${cell(t.kind, 'latency', 'p50', true, 2)} | ${cell(t.kind, 'latency', 'p99', true, 2)} | ${cell(t.kind, 'latency', 'max', true, 1)} | ${fmt(get(t.kind, 'latency', 'delivered'))} / ${fmt(get(t.kind, 'latency', 'sent'))} |`)
}
lines.push('', '## 2. Offline drain (messages queued for one device; time from its reconnect to the last message)', '')
lines.push('| target | 10k: ms | 10k: received | 100k: ms | 100k: received | queue fill rate, msg/s |', '|---|---|---|---|---|---|')
for (const t of shown) {
  lines.push(`| ${t.label} | ${cell(t.kind, 'drain10k', 'drainMs', true)} | ${fmt(get(t.kind, 'drain10k', 'received'))} | ${cell(t.kind, 'drain100k', 'drainMs', true)} | ${fmt(get(t.kind, 'drain100k', 'received'))} / ${fmt(get(t.kind, 'drain100k', 'count'))} | ${fmt(get(t.kind, 'drain10k', 'fillMsgPerSec'))} |`)
}
lines.push('', '## 3. Idle connections (persistent, subscribed, idle; 8 source addresses 127.0.0.1–8)', '')
lines.push('| target | 10k: KB per connection | connected / failed | 50k: KB per connection | connected / failed | server RSS at 50k, MB |', '|---|---|---|---|---|---|')
for (const t of shown) {
  lines.push(`| ${t.label} | ${cell(t.kind, 'idle10k', 'kbPerConnection', true, 2)} | ${fmt(get(t.kind, 'idle10k', 'connected'))} / ${fmt(get(t.kind, 'idle10k', 'failed'))} | ${cell(t.kind, 'idle50k', 'kbPerConnection', true, 2)} | ${fmt(get(t.kind, 'idle50k', 'connected'))} / ${fmt(get(t.kind, 'idle50k', 'failed'))} | ${fmt(get(t.kind, 'idle50k', 'rssAfterMb'))} |`)
}
lines.push('', '## 4. Reconnect storm (10k persistent clients dropped at once, one message queued for each, all reconnect at once)', '')
lines.push('| target | all reconnected, ms | all messages received, ms | received / clients |', '|---|---|---|---|')
for (const t of shown) {
  lines.push(`| ${t.label} | ${cell(t.kind, 'storm10k', 'allBackMs', true)} | ${cell(t.kind, 'storm10k', 'allReceivedMs', true)} | ${fmt(get(t.kind, 'storm10k', 'received'))} / ${fmt(get(t.kind, 'storm10k', 'count'))} |`)
}

const targetsMet = [
  ['Durable (Redis) QoS 1 throughput ≥ Mosquitto QoS 1', haveMosquitto ? (get('inboxd-redis', 'throughput', 'msgPerSec') ?? 0) >= (get('mosquitto', 'throughput', 'msgPerSec') ?? Infinity) : null,
    `${fmt(get('inboxd-redis', 'throughput', 'msgPerSec'))} vs ${fmt(get('mosquitto', 'throughput', 'msgPerSec'))} msg/s`],
  ['p99 ≤ 5 ms at 5k msg/s, durable', (get('inboxd-redis', 'latency', 'p99') ?? Infinity) <= 5, `p99 ${fmt(get('inboxd-redis', 'latency', 'p99'), 2)} ms`],
  ['10k backlog drained in ≤ 1 s', (get('inboxd-redis', 'drain10k', 'drainMs') ?? Infinity) <= 1000, `${fmt(get('inboxd-redis', 'drain10k', 'drainMs'))} ms (Redis), ${fmt(get('inboxd-embedded', 'drain10k', 'drainMs'))} ms (embedded)`],
  ['≤ 10 KB server memory per idle connection', (get('inboxd-redis', 'idle10k', 'kbPerConnection') ?? Infinity) <= 10, `${fmt(get('inboxd-redis', 'idle10k', 'kbPerConnection'), 2)} KB at 10k (Redis)`]
] as const
if (!only || only.includes('inboxd-redis')) {
  lines.push('', '## Targets (inboxd, Redis mode)', '', '| target | met? | measured |', '|---|---|---|')
  for (const [name, met, measured] of targetsMet) lines.push(`| ${name} | ${met === null ? 'n/a' : met ? 'yes' : '**no**'} | ${measured} |`)
}
lines.push('', '## Reading these figures', '')
lines.push('- Mosquitto runs with its packaged configuration here, whose `max_queued_messages` is 1000: it keeps 1,000 messages for an offline client and drops the rest, so its drain rows show what arrived, not a time.')
lines.push('- A latency run offers 5k msg/s whatever the target sustains. Where that is above the target\'s throughput (both inboxd modes here), messages queue up and the latency measures the backlog, not the path.')
lines.push('- What was profiled and changed on the durable path, with before/after figures: [bench/OPTIMISATIONS.md](bench/OPTIMISATIONS.md).')
lines.push('', '## Raw results', '', '<details><summary>every run, as reported by the load processes</summary>', '', '```json', JSON.stringify(raw, null, 1), '```', '', '</details>', '')

const out = process.env.BENCH_OUT ?? 'BENCHMARKS.md'
writeFileSync(out, lines.join('\n'))
process.stderr.write(`wrote ${out}\n`)
