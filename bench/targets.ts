// The systems under test, each in its own process: our server in Redis and
// embedded mode (started exactly as `npm start` starts it), bare Aedes, and
// two Mosquittos: the packaged one on 127.0.0.1:1883 (the reference for
// throughput, latency, memory and the storm, as in earlier runs), and one the
// harness starts on a spare port with an unlimited queue and no persistence
// (the packaged one keeps only 1,000 queued messages per client), the
// reference for the drain. The Redis-mode server runs on a Redis the harness
// starts itself, with AOF as docker-compose.yml configures it (appendfsync
// everysec; always for DURABILITY=disk), not on the machine's shared Redis,
// which keeps nothing on disk.
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { createConnection } from 'node:net'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { once } from 'node:events'
import { Redis } from 'ioredis'
import { startServerProcess, freePort } from '../test/helpers/server-process.ts'
import { startRedisServer, type OwnRedis } from '../test/helpers/redis-server.ts'
import type { TargetKind } from './profile.ts'

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

export interface RunningTarget {
  kind: TargetKind
  port: number
  /** Our server's REST port (group scenarios create groups over REST). */
  httpPort?: number
  pid: number
  stop (): Promise<void>
}

export const TARGETS: Array<{ kind: TargetKind, label: string }> = [
  { kind: 'inboxd-redis', label: 'inboxd, Redis mode' },
  { kind: 'inboxd-embedded', label: 'inboxd, embedded mode (LevelDB)' },
  { kind: 'aedes-memory', label: 'bare Aedes, in-memory' },
  { kind: 'mosquitto', label: 'Mosquitto (C), packaged configuration' },
  { kind: 'mosquitto-unlimited', label: 'Mosquitto (C), unlimited queue, no persistence' }
]

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
  if (kind === 'inboxd-redis' || kind === 'inboxd-embedded') {
    const mode = kind === 'inboxd-redis' ? 'redis' : 'embedded'
    const redisEnv: Record<string, string> = mode === 'redis' ? { REDIS_URL: await prepareBenchRedis(env.DURABILITY === 'disk' ? 'always' : 'everysec') } : {}
    // Large groups need MAX_GROUP_MEMBERS above its default. Each load generator's sender sends far
    // faster than a person, so the per-user publish limit (on by default) is off unless a scenario sets it;
    // the other limits stay at their defaults.
    const server = await startServerProcess({ mode, env: { MAX_GROUP_MEMBERS: '10000', PUBLISH_RATE: '0', ...redisEnv, ...env } })
    return { kind, port: server.mqttPort, httpPort: server.httpPort, pid: server.child.pid!, stop: async () => { await server.stop() } }
  }
  if (kind === 'aedes-memory') {
    const port = await freePort()
    const child = spawn(process.execPath, ['--import', 'tsx', 'bench/bare-aedes.ts', String(port)], { stdio: ['ignore', 'pipe', 'inherit'] })
    await once(child.stdout!, 'data')
    child.stdout!.resume()
    return { kind, port, pid: child.pid!, stop: async () => { child.kill('SIGTERM'); await once(child, 'exit') } }
  }
  if (kind === 'mosquitto-unlimited') return startMosquitto()
  const pid = Number(execFileSync('pgrep', ['-o', '-x', 'mosquitto'], { encoding: 'utf8' }).trim())
  return { kind, port: 1883, pid, stop: async () => {} }
}
