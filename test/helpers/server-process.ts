// Starts the real server as a child process (`node --import tsx server/main.ts`,
// what `npm start` runs), on free ports, and reports its ports from the
// "server ready" log line. A child process is what lets tests kill -9 it.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:net'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { SECRET } from './tokens.ts'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
export const REDIS_BASE = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'

export type Mode = 'redis' | 'embedded'

/** What `npm start` runs (package.json), so tests and benchmarks start the server exactly the same way. */
export const SERVER_ARGS = ['--max-semi-space-size=64', '--import', 'tsx', 'server/main.ts']

/** Both storage modes, or just one with ONLY_MODE=redis|embedded when debugging. */
export function modesUnderTest (): Mode[] {
  const only = process.env.ONLY_MODE
  return only === 'redis' || only === 'embedded' ? [only] : ['embedded', 'redis']
}

export interface ServerHandle {
  mqttUrl: string
  wsUrl: string
  httpUrl: string
  mqttPort: number
  httpPort: number
  child: ChildProcess
  output: () => string
  /** SIGTERM and wait for exit; resolves with the exit code. */
  stop (): Promise<number | null>
  /** SIGKILL and wait for exit. */
  kill (): Promise<void>
  /** Sends `signal` to `pid` (default: the child; negative: a process group) and waits for the child to exit; resolves with its exit code. */
  signal (signal: NodeJS.Signals, pid?: number): Promise<number | null>
}

export async function freePort (): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as { port: number }).port
  await new Promise((resolve) => server.close(resolve))
  return port
}

export function tempDataDir (): string {
  return mkdtempSync(join(tmpdir(), 'inboxd-test-'))
}

export interface StartOptions {
  mode: Mode
  /** Redis logical database for this test file (1-15), so files running in parallel do not share keys. */
  redisDb?: number
  /** Redis mode on a Redis Cluster: its seeds (`OwnCluster.seeds`), set as REDIS_CLUSTER_NODES instead of REDIS_URL. */
  redisCluster?: string
  dataDir?: string
  env?: Record<string, string>
  mqttPort?: number
  httpPort?: number
  /** The checkout to run (another version's tree, e.g. an upgrade test); this one by default. */
  cwd?: string
  /**
   * Run this argv instead of `node SERVER_ARGS` (e.g. `['npm', 'start']`), as the leader of its own
   * process group, so a test can signal it as an operator would and see every process of the tree exit.
   */
  command?: string[]
}

export function serverEnv (options: StartOptions): Record<string, string> {
  const env: Record<string, string> = {
    JWT_SECRET: SECRET,
    LOG_LEVEL: 'info',
    HOST: '127.0.0.1',
    MQTT_PORT: String(options.mqttPort ?? 0),
    HTTP_PORT: String(options.httpPort ?? 0)
  }
  if (options.mode === 'redis' && options.redisCluster !== undefined) env.REDIS_CLUSTER_NODES = options.redisCluster
  else if (options.mode === 'redis') env.REDIS_URL = `${REDIS_BASE}/${options.redisDb ?? 1}`
  else env.DATA_DIR = options.dataDir ?? tempDataDir()
  return { ...env, ...options.env }
}

const READY_TIMEOUT_MS = 60_000

export async function startServerProcess (options: StartOptions): Promise<ServerHandle> {
  const env: NodeJS.ProcessEnv = { ...process.env, ...serverEnv(options) }
  if (options.mode === 'embedded' || options.redisCluster !== undefined) delete env.REDIS_URL
  const [file, ...args] = options.command ?? [process.execPath, ...SERVER_ARGS]
  const child = spawn(file!, args, { cwd: options.cwd ?? ROOT, env, stdio: ['ignore', 'pipe', 'pipe'], detached: options.command !== undefined })
  let output = ''
  child.stderr!.on('data', (chunk: Buffer) => { output += chunk.toString() })
  // Generous: on a loaded 2-core CI machine two workers compiling with tsx can take a while.
  // A server that never gets ready is killed, so the test fails now instead of hanging on it.
  let notReady: ReturnType<typeof setTimeout> | undefined
  const ready = new Promise<{ mqttPort: number, httpPort: number }>((resolve, reject) => {
    notReady = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`server not ready after ${READY_TIMEOUT_MS / 1000} s:\n${output}`))
    }, READY_TIMEOUT_MS)
    notReady.unref()
    let buffer = ''
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString()
      buffer += chunk.toString()
      let newline: number
      while ((newline = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, newline)
        buffer = buffer.slice(newline + 1)
        try {
          const record = JSON.parse(line) as { msg?: string, mqttPort?: number, httpPort?: number }
          if (record.msg === 'server ready') {
            clearTimeout(notReady)
            resolve({ mqttPort: record.mqttPort!, httpPort: record.httpPort! })
          }
        } catch { /* not a log line */ }
      }
    })
    child.once('exit', (code) => reject(new Error(`server exited with ${code} before ready:\n${output}`)))
  })
  const { mqttPort, httpPort } = await ready
  const exited = once(child, 'exit')
  let expectingExit = false
  // A server that dies on its own is a bug: show why in the test output.
  child.once('exit', (code, signal) => {
    if (!expectingExit) process.stderr.write(`server process exited unexpectedly (${code ?? signal}):\n${output}\n`)
  })
  return {
    mqttUrl: `mqtt://127.0.0.1:${mqttPort}`,
    wsUrl: `ws://127.0.0.1:${httpPort}/mqtt`,
    httpUrl: `http://127.0.0.1:${httpPort}`,
    mqttPort,
    httpPort,
    child,
    output: () => output,
    async stop () {
      if (child.exitCode !== null) return child.exitCode
      expectingExit = true
      child.kill('SIGTERM')
      const [code] = await exited
      return code as number | null
    },
    async signal (signal, pid = child.pid!) {
      if (child.exitCode !== null) return child.exitCode
      expectingExit = true
      process.kill(pid, signal)
      const [code] = await exited
      return code as number | null
    },
    async kill () {
      if (child.exitCode !== null || child.signalCode !== null) return
      expectingExit = true
      child.kill('SIGKILL')
      await exited
    }
  }
}

/** Empties one test file's Redis database before it starts, so runs do not accumulate sessions. */
export async function flushRedisDb (db: number): Promise<void> {
  const { Redis } = await import('ioredis')
  const redis = new Redis(`${REDIS_BASE}/${db}`)
  try { await redis.flushdb() } finally { redis.disconnect() }
}
