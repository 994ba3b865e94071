// The systems under test, each in its own process: our server in Redis and
// embedded mode (started exactly as `npm start` starts it), bare Aedes, and
// the Mosquitto already running at 127.0.0.1:1883 when it is reachable.
import { spawn, execFileSync } from 'node:child_process'
import { createConnection } from 'node:net'
import { readFileSync } from 'node:fs'
import { once } from 'node:events'
import { startServerProcess, flushRedisDb, freePort } from '../test/helpers/server-process.ts'
import type { TargetKind } from './profile.ts'

export const BENCH_REDIS_DB = 15

export interface RunningTarget {
  kind: TargetKind
  port: number
  pid: number
  stop (): Promise<void>
}

export const TARGETS: Array<{ kind: TargetKind, label: string }> = [
  { kind: 'inboxd-redis', label: 'inboxd, Redis mode (durable)' },
  { kind: 'inboxd-embedded', label: 'inboxd, embedded mode (LevelDB)' },
  { kind: 'aedes-memory', label: 'bare Aedes, in-memory' },
  { kind: 'mosquitto', label: 'Mosquitto (C)' }
]

export function rssKb (pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return match === null ? NaN : Number(match[1])
}

function reachable (port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection(port, '127.0.0.1')
    socket.once('connect', () => { socket.destroy(); resolve(true) })
    socket.once('error', () => resolve(false))
  })
}

export async function mosquittoAvailable (): Promise<boolean> {
  return reachable(1883)
}

export async function startTarget (kind: TargetKind): Promise<RunningTarget> {
  if (kind === 'inboxd-redis' || kind === 'inboxd-embedded') {
    const mode = kind === 'inboxd-redis' ? 'redis' : 'embedded'
    if (mode === 'redis') await flushRedisDb(BENCH_REDIS_DB)
    const server = await startServerProcess({ mode, redisDb: BENCH_REDIS_DB })
    return { kind, port: server.mqttPort, pid: server.child.pid!, stop: async () => { await server.stop() } }
  }
  if (kind === 'aedes-memory') {
    const port = await freePort()
    const child = spawn(process.execPath, ['--import', 'tsx', 'bench/bare-aedes.ts', String(port)], { stdio: ['ignore', 'pipe', 'inherit'] })
    await once(child.stdout!, 'data')
    child.stdout!.resume()
    return { kind, port, pid: child.pid!, stop: async () => { child.kill('SIGTERM'); await once(child, 'exit') } }
  }
  const pid = Number(execFileSync('pgrep', ['-o', 'mosquitto'], { encoding: 'utf8' }).trim())
  return { kind, port: 1883, pid, stop: async () => {} }
}
