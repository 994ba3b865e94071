// The systems under test, each in its own process: our server in Redis and
// embedded mode (started exactly as `npm start` starts it), bare Aedes, and
// two Mosquittos: the packaged one on 127.0.0.1:1883 (the reference for
// throughput, latency, memory and the storm, as in earlier runs), and one the
// harness starts on a spare port with an unlimited queue and no persistence
// (the packaged one keeps only 1,000 queued messages per client), the
// reference for the drain. The Redis-mode server runs on a Redis the harness
// starts itself, with AOF as docker-compose.yml configures it (appendfsync
// everysec; always for DURABILITY=disk), not on the machine's shared Redis,
// which keeps nothing on disk. The cluster target runs on a Redis Cluster the
// harness starts (3 primaries, 3 replicas) with the same AOF settings.
// Issue #21: `inboxd-redis-pg` is the Redis-mode target with DATABASE_URL (a
// database of its own on the machine's PostgreSQL, created for each run and
// dropped after it), so the archiver follows the logs into PostgreSQL;
// `inboxd-embedded-base` (only with BENCH_BASE_TREE) is embedded mode run from
// another checkout, the commit before the archive, for an A/B.
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { createConnection } from 'node:net'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { once } from 'node:events'
import { Redis } from 'ioredis'
import { startServerProcess, freePort } from '../test/helpers/server-process.ts'
import { startRedisServer, type OwnRedis } from '../test/helpers/redis-server.ts'
import { startRedisCluster, type OwnCluster } from '../test/helpers/redis-cluster.ts'
import { createTestDatabase } from '../test/helpers/postgres.ts'
import type { TargetKind } from './profile.ts'
import { natsAvailable, rabbitmqAvailable, startNats, startRabbitmq } from './peers.ts'

/** The Redis-mode target's persistence, as docker-compose.yml runs Redis. */
export const BENCH_REDIS_ARGS = ['--appendonly', 'yes', '--appendfsync', 'everysec']
let benchRedis: OwnRedis | undefined

/** Starts the harness's own Redis (spare port, its own data directory); resolves with its URL. */
export async function startBenchRedis (): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-redis-'))
  benchRedis = await startRedisServer(await freePort(), dir, BENCH_REDIS_ARGS)
  const started = benchRedis
  process.once('exit', () => { started.child.kill('SIGKILL'); rmSync(dir, { recursive: true, force: true }) })
  return `${started.url}/0`
}

export async function stopBenchRedis (): Promise<void> {
  await benchRedis?.kill()
}

/** Empties the bench Redis and sets its fsync policy for the next run (DURABILITY=disk needs `always`). */
async function prepareBenchRedis (appendfsync: 'everysec' | 'always'): Promise<string> {
  if (benchRedis === undefined) throw new Error('startBenchRedis() first')
  const redis = new Redis(`${benchRedis.url}/0`)
  try {
    await redis.flushall()
    await redis.call('CONFIG', 'SET', 'appendfsync', appendfsync)
  } finally {
    redis.disconnect()
  }
  return `${benchRedis.url}/0`
}

let benchCluster: OwnCluster | undefined

/** Starts the harness's own Redis Cluster (3 primaries, 3 replicas, AOF as BENCH_REDIS_ARGS on every node). */
export async function startBenchCluster (): Promise<void> {
  // Later arguments win, so this AOF setting replaces the helper's `--appendonly no`.
  benchCluster = await startRedisCluster(BENCH_REDIS_ARGS)
  const started = benchCluster
  process.once('exit', () => { for (const node of started.nodes) node.child.kill('SIGKILL') })
}

export async function stopBenchCluster (): Promise<void> {
  await benchCluster?.stop()
}

/** Runs `fn` on a plain connection to each node of the bench cluster (primaries only, or every node). */
async function onNodes<T> (which: 'primaries' | 'all', fn: (redis: Redis, port: number) => Promise<T>): Promise<Array<[number, T]>> {
  if (benchCluster === undefined) throw new Error('startBenchCluster() first')
  const ports = which === 'all' ? benchCluster.nodes.map((node) => node.port) : (await benchCluster.primaries()).sort((a, b) => a - b)
  return Promise.all(ports.map(async (port) => {
    const redis = new Redis({ port, host: '127.0.0.1' })
    try { return [port, await fn(redis, port)] as [number, T] } finally { redis.disconnect() }
  }))
}

/** Empties the cluster, sets every node's fsync policy and zeroes the primaries' command counts for the next run. */
async function prepareBenchCluster (appendfsync: 'everysec' | 'always'): Promise<string> {
  await onNodes('primaries', async (redis) => { await redis.flushall(); await redis.call('CONFIG', 'RESETSTAT') })
  await onNodes('all', async (redis) => redis.call('CONFIG', 'SET', 'appendfsync', appendfsync))
  return benchCluster!.seeds
}

/**
 * How a run's commands spread over the primaries (`INFO commandstats` since
 * the run's RESETSTAT): script calls (EVALSHA + EVAL) and all calls, per
 * primary port, and each primary's share of the script calls in percent.
 */
export async function clusterSpread (): Promise<Record<string, number | Record<string, number>>> {
  const stats = await onNodes('primaries', async (redis) => {
    const calls = new Map<string, number>()
    for (const match of (await redis.info('commandstats')).matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls.set(match[1]!, Number(match[2]))
    const total = [...calls.values()].reduce((sum, n) => sum + n, 0)
    return { scripts: (calls.get('evalsha') ?? 0) + (calls.get('eval') ?? 0), total }
  })
  const scripts = stats.reduce((sum, [, s]) => sum + s.scripts, 0)
  const total = stats.reduce((sum, [, s]) => sum + s.total, 0)
  const shares = stats.map(([, s]) => scripts === 0 ? 0 : (100 * s.scripts) / scripts)
  const callShares = stats.map(([, s]) => total === 0 ? 0 : (100 * s.total) / total)
  return {
    scriptCalls: Object.fromEntries(stats.map(([port, s]) => [String(port), s.scripts])),
    allCalls: Object.fromEntries(stats.map(([port, s]) => [String(port), s.total])),
    scriptShareMin: Number(Math.min(...shares).toFixed(1)),
    scriptShareMax: Number(Math.max(...shares).toFixed(1)),
    callShareMin: Number(Math.min(...callShares).toFixed(1)),
    callShareMax: Number(Math.max(...callShares).toFixed(1))
  }
}

export interface RunningTarget {
  kind: TargetKind
  port: number
  /** Our server's REST port (group scenarios create groups over REST). */
  httpPort?: number
  pid: number
  /** inboxd-redis-pg: the archive's database. */
  databaseUrl?: string | undefined
  stop (): Promise<void>
}

/** BENCH_BASE_TREE: a checkout whose embedded server is the `inboxd-embedded-base` target (its commit, short). */
export const BASE_TREE = process.env.BENCH_BASE_TREE
export const BASE_COMMIT = BASE_TREE === undefined ? undefined : safeGit(BASE_TREE)
function safeGit (tree: string): string {
  try { return execFileSync('git', ['-C', tree, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim() } catch { return 'unknown' }
}

export const TARGETS: Array<{ kind: TargetKind, label: string }> = [
  { kind: 'inboxd-redis', label: 'inboxd, Redis mode' },
  { kind: 'inboxd-redis-pg', label: 'inboxd, Redis mode, DATABASE_URL (archive on PostgreSQL)' },
  { kind: 'inboxd-cluster', label: 'inboxd, Redis mode on a 3-primary Redis Cluster' },
  { kind: 'inboxd-embedded', label: 'inboxd, embedded mode (LevelDB)' },
  ...(BASE_TREE === undefined ? [] : [{ kind: 'inboxd-embedded-base' as const, label: `inboxd, embedded mode at ${BASE_COMMIT} (before the archive)` }]),
  { kind: 'aedes-memory', label: 'bare Aedes, in-memory' },
  { kind: 'mosquitto', label: 'Mosquitto (C), packaged configuration' },
  { kind: 'mosquitto-unlimited', label: 'Mosquitto (C), unlimited queue, no persistence' },
  { kind: 'nats-jetstream', label: 'NATS with JetStream (Go), its MQTT listener' },
  { kind: 'rabbitmq', label: 'RabbitMQ (Erlang), rabbitmq_mqtt, durable queues' },
  { kind: 'archive-pg', label: 'archive on PostgreSQL' },
  { kind: 'archive-level', label: 'archive on LevelDB (embedded mode)' }
]
/** Targets that run only the scenarios that name them (issue #21's). */
export const OPT_IN_TARGETS: ReadonlySet<TargetKind> = new Set(['inboxd-redis-pg', 'inboxd-embedded-base', 'archive-pg', 'archive-level'])

/** Resident memory of a process and all its descendants (WORKERS forks server processes). */
export function rssKb (pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  let children: number[] = []
  try {
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)
  } catch { /* no children file: no children */ }
  return (match === null ? NaN : Number(match[1])) + children.reduce((sum, child) => sum + rssKb(child), 0)
}

function reachable (port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection(port, '127.0.0.1')
    socket.once('connect', () => { socket.destroy(); resolve(true) })
    socket.once('error', () => resolve(false))
  })
}

/** Whether a peer broker can be benchmarked here (its binary is installed). */
export function peerAvailable (kind: 'nats-jetstream' | 'rabbitmq'): boolean {
  return kind === 'nats-jetstream' ? natsAvailable() : rabbitmqAvailable()
}

/** Whether a Mosquitto of this kind can be benchmarked here. */
export async function mosquittoAvailable (kind: 'mosquitto' | 'mosquitto-unlimited'): Promise<boolean> {
  return kind === 'mosquitto' ? reachable(1883) : spawnSync('mosquitto', ['-h']).error === undefined
}

async function startMosquitto (): Promise<RunningTarget> {
  const port = await freePort()
  const config = join(mkdtempSync(join(tmpdir(), 'bench-mosquitto-')), 'mosquitto.conf')
  writeFileSync(config, `listener ${port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\npersistence false\n`)
  const child = spawn('mosquitto', ['-c', config], { stdio: 'ignore' })
  const started = Date.now()
  while (!(await reachable(port))) {
    if (child.exitCode !== null || Date.now() - started > 5_000) throw new Error('could not start mosquitto')
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return { kind: 'mosquitto-unlimited', port, pid: child.pid!, stop: async () => { child.kill('SIGTERM'); await once(child, 'exit') } }
}

/** `env`: our server's settings for one scenario (e.g. PUBLISH_RATE); the other targets have none. */
export async function startTarget (kind: TargetKind, env: Record<string, string> = {}): Promise<RunningTarget> {
  if (kind === 'archive-pg' || kind === 'archive-level') {
    // Not a server: the load process opens the store itself.
    return { kind, port: 0, pid: process.pid, stop: async () => {} }
  }
  if (kind === 'inboxd-redis' || kind === 'inboxd-redis-pg' || kind === 'inboxd-cluster' || kind === 'inboxd-embedded' || kind === 'inboxd-embedded-base') {
    const mode = kind === 'inboxd-embedded' || kind === 'inboxd-embedded-base' ? 'embedded' : 'redis'
    const appendfsync = env.DURABILITY === 'disk' ? 'always' : 'everysec'
    const redisEnv: Record<string, string> = kind === 'inboxd-redis' || kind === 'inboxd-redis-pg'
      ? { REDIS_URL: await prepareBenchRedis(appendfsync) }
      // REDIS_URL empty counts as unset (the server process helper sets it for Redis mode).
      : kind === 'inboxd-cluster' ? { REDIS_URL: '', REDIS_CLUSTER_NODES: await prepareBenchCluster(appendfsync) } : {}
    // Large groups need MAX_GROUP_MEMBERS above its default. Each load generator's sender sends far
    // faster than a person, so the per-user publish limit (on by default) is off unless a scenario sets it;
    // the other limits stay at their defaults.
    // The archive's database: a fresh one per run, dropped when the run's server has stopped.
    const database = kind === 'inboxd-redis-pg' ? await createTestDatabase('inboxd_bench') : undefined
    const pgEnv: Record<string, string> = database === undefined ? {} : { DATABASE_URL: database.url }
    const cwd = kind === 'inboxd-embedded-base' ? BASE_TREE : undefined
    const server = await startServerProcess({ mode, env: { MAX_GROUP_MEMBERS: '10000', PUBLISH_RATE: '0', ...redisEnv, ...pgEnv, ...env }, ...(cwd === undefined ? {} : { cwd }) })
    return {
      kind,
      port: server.mqttPort,
      httpPort: server.httpPort,
      pid: server.child.pid!,
      databaseUrl: database?.url,
      stop: async () => { await server.stop(); await database?.drop() }
    }
  }
  if (kind === 'aedes-memory') {
    const port = await freePort()
    const child = spawn(process.execPath, ['--import', 'tsx', 'bench/bare-aedes.ts', String(port)], { stdio: ['ignore', 'pipe', 'inherit'] })
    await once(child.stdout!, 'data')
    child.stdout!.resume()
    return { kind, port, pid: child.pid!, stop: async () => { child.kill('SIGTERM'); await once(child, 'exit') } }
  }
  if (kind === 'mosquitto-unlimited') return startMosquitto()
  if (kind === 'nats-jetstream' || kind === 'rabbitmq') {
    const peer = kind === 'nats-jetstream' ? await startNats() : await startRabbitmq()
    return { kind, ...peer }
  }
  const pid = Number(execFileSync('pgrep', ['-o', '-x', 'mosquitto'], { encoding: 'utf8' }).trim())
  return { kind, port: 1883, pid, stop: async () => {} }
}
