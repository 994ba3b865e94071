// A redis-server of a test's (or the benchmark's) own, on a spare port with
// its own data directory, so killing or reconfiguring it harms no one else.
// Never the shared Redis on 6379.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { Redis } from 'ioredis'

export interface OwnRedis {
  port: number
  url: string
  child: ChildProcess
  /** SIGKILL and wait for exit. */
  kill (): Promise<void>
}

/**
 * `persistence`: extra redis-server arguments, e.g. `['--appendonly', 'yes', '--appendfsync', 'everysec']`.
 * Resolves once the server answers PING.
 */
export async function startRedisServer (port: number, dir: string, persistence: string[] = []): Promise<OwnRedis> {
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', ...persistence], { stdio: 'ignore' })
  const exited = once(child, 'exit')
  await waitForPing(port, 10_000)
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    child,
    async kill () {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill('SIGKILL')
      await exited
    }
  }
}

/** Resolves with the time (Date.now()) of the first PONG from Redis on this port. */
export async function waitForPing (port: number, timeoutMs: number): Promise<number> {
  const probe = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => 10, maxRetriesPerRequest: null })
  probe.on('error', () => {})
  try {
    const pong = probe.ping()
    await Promise.race([pong, new Promise((_resolve, reject) => setTimeout(() => reject(new Error(`redis on ${port} did not answer PING in ${timeoutMs} ms`)), timeoutMs).unref())])
    return Date.now()
  } finally {
    probe.disconnect()
  }
}
