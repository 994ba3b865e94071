// Where the server's time goes with the archive on (issue #21):
// `npx tsx bench/profile-archive.ts [inboxd-embedded|inboxd-redis-pg]` starts
// the target as the harness does, with `node --cpu-prof` on every server
// process, runs scenario 1's throughput load against it, stops
// it (the profiles are written at exit) and prints each process's busy time by
// module group: the archive (archive/, search/ and jieba), the LevelDB and
// PostgreSQL drivers, the hot log, the broker, GC. Only the groups' shares are
// meant to be read: the profiler itself slows everything.
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawn } from 'node:child_process'
import pg from 'pg'
import { once } from 'node:events'
import { startBenchRedis, stopBenchRedis } from './targets.ts'
import { SERVER_ARGS, serverEnv } from '../test/helpers/server-process.ts'
import { createTestDatabase } from '../test/helpers/postgres.ts'
import type { TargetKind } from './profile.ts'

const kind = (process.argv[2] ?? 'inboxd-embedded') as TargetKind
const dir = mkdtempSync(join(tmpdir(), 'bench-prof-'))
// As startTarget does, but with --cpu-prof on the command line (Node refuses it in NODE_OPTIONS); WORKERS forks inherit it.
const redisUrl = kind.startsWith('inboxd-redis') ? await startBenchRedis() : undefined
const database = kind === 'inboxd-redis-pg' ? await createTestDatabase('inboxd_bench') : undefined
const env = serverEnv({ mode: redisUrl === undefined ? 'embedded' : 'redis', env: { PUBLISH_RATE: '0', ...(redisUrl === undefined ? {} : { REDIS_URL: redisUrl }), ...(database === undefined ? {} : { DATABASE_URL: database.url }) } })
const server = spawn(process.execPath, [`--cpu-prof`, `--cpu-prof-dir=${dir}`, ...SERVER_ARGS], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] })
const ports = await new Promise<{ mqttPort: number, httpPort: number }>((resolve, reject) => {
  let buffer = ''
  server.stdout.on('data', (chunk: Buffer) => {
    buffer += chunk.toString()
    const line = buffer.split('\n').find((l) => l.includes('"server ready"'))
    if (line !== undefined) resolve(JSON.parse(line) as { mqttPort: number, httpPort: number })
  })
  server.once('exit', (code) => reject(new Error(`server exited with ${code}`)))
})
server.stdout.resume()
const target = {
  port: ports.mqttPort,
  httpPort: ports.httpPort,
  databaseUrl: database?.url,
  stop: async () => { server.kill('SIGTERM'); await once(server, 'exit'); await database?.drop() }
}
const load = spawn(process.execPath, ['--import', 'tsx', 'bench/load/pairs.ts', JSON.stringify({ kind, port: target.port, httpPort: target.httpPort, run: Date.now().toString(36), mode: 'throughput', pairs: 20, window: 50, durationMs: 10_000, warmupMs: 2_000 })], { stdio: ['ignore', 'pipe', 'inherit'] })
let out = ''
load.stdout.on('data', (chunk: Buffer) => { out += chunk.toString() })
await new Promise((resolve) => load.on('exit', resolve))
// The archiver catches up before the server stops, so its whole share is in the profile.
await new Promise((resolve) => setTimeout(resolve, 5_000))
// PostgreSQL's side: the CPU time of the backends serving the archive's database (its pool), from /proc.
if (target.databaseUrl !== undefined) {
  const client = new pg.Client({ connectionString: target.databaseUrl })
  await client.connect()
  const { rows } = await client.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()')
  await client.end()
  const ticks = rows.reduce((sum, { pid }) => {
    try {
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
      return sum + Number(fields[11]) + Number(fields[12]) // utime + stime, after the pid and name
    } catch { return sum }
  }, 0)
  process.stdout.write(`PostgreSQL backends of the archive's database: ${rows.length}, CPU ${(ticks / 100).toFixed(1)} s (utime + stime)\n`)
}
await target.stop()
await stopBenchRedis()
process.stdout.write(`load: ${out.trim().split('\n').pop()}\n`)

interface Node { id: number, callFrame: { functionName: string, url: string }, children?: number[] }
const GROUPS: Array<[string, RegExp]> = [
  ['archive (archive/)', /\/archive\//],
  ['search tokens (search/, jieba)', /\/search\/|jieba/],
  ['LevelDB (abstract-level, classic-level)', /abstract-level|classic-level|level-transcoder|module-error/],
  ['PostgreSQL driver (pg)', /node_modules\/pg/],
  ['hot log (history/)', /\/history\//],
  ['Redis client (ioredis)', /ioredis|redis-parser/],
  ['broker and MQTT (broker/, aedes, mqtt-packet)', /\/broker\/|aedes|mqtt-packet|bl\/|readable-stream/],
  ['messaging/, protocol/', /\/messaging\/|\/protocol\//]
]
for (const file of readdirSync(dir).filter((name) => name.endsWith('.cpuprofile'))) {
  const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as { nodes: Node[], samples: number[], timeDeltas: number[] }
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const parent = new Map<number, number>()
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id)
  // A sample counts for the innermost of our groups on its stack (so a LevelDB call made by the archive is LevelDB).
  const groupOf = new Map<number, string>()
  const classify = (id: number): string => {
    const known = groupOf.get(id)
    if (known !== undefined) return known
    const node = byId.get(id)!
    const name = node.callFrame.functionName
    let group: string
    if (name === '(garbage collector)') group = 'GC'
    else if (name === '(idle)') group = 'idle'
    else if (name === '(program)') group = 'other'
    else {
      const own = GROUPS.find(([, pattern]) => pattern.test(node.callFrame.url))?.[0]
      const up = parent.get(id)
      group = own ?? (up === undefined ? 'other' : classify(up))
    }
    groupOf.set(id, group)
    return group
  }
  // The archive's callers: any sample with the archiver on its stack.
  const underArchive = new Map<number, boolean>()
  const archived = (id: number): boolean => {
    const known = underArchive.get(id)
    if (known !== undefined) return known
    const node = byId.get(id)!
    const up = parent.get(id)
    const result = /\/archive\/|\/search\//.test(node.callFrame.url) || (up !== undefined && archived(up))
    underArchive.set(id, result)
    return result
  }
  const totals = new Map<string, number>()
  const underTotals = new Map<string, number>()
  let busy = 0
  let archiveStack = 0
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0
    const group = classify(id)
    totals.set(group, (totals.get(group) ?? 0) + dt)
    if (group !== 'idle') busy += dt
    if (group !== 'idle' && archived(id)) { archiveStack += dt; underTotals.set(group, (underTotals.get(group) ?? 0) + dt) }
  })
  if (busy < 1e6) continue // the supervisor: nearly idle
  process.stdout.write(`\n${file}: busy ${(busy / 1e6).toFixed(1)} s; with archive/ or search/ on the stack: ${(100 * archiveStack / busy).toFixed(1)}%\n`)
  for (const [group, us] of [...totals].filter(([group]) => group !== 'idle').sort((a, b) => b[1] - a[1])) {
    process.stdout.write(`  ${(100 * us / busy).toFixed(1).padStart(5)}%  ${group}${underTotals.has(group) ? ` (${(100 * underTotals.get(group)! / busy).toFixed(1)}% under the archiver)` : ''}\n`)
  }
}
process.stdout.write(`\nprofiles: ${dir}\n`)
