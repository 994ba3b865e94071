// The durable MQTT peers of the benchmark (issue #23), each started by the
// harness on spare ports with a data directory of its own, and removed after:
//   - NATS 2.9 with JetStream and its MQTT listener (`server_name` is required
//     for MQTT). A QoS 1 message for a persistent session is a JetStream
//     file-store message; NATS does not fsync each write: it syncs its file
//     store every 60 s by default (`sync_interval` is not settable in 2.9), so a
//     PUBACKed message survives a process crash (the OS has it), not a power cut
//     inside that minute.
//   - RabbitMQ 3.10 with the rabbitmq_mqtt plugin: a persistent session's queue
//     is durable and a QoS 1 message persistent; the PUBACK waits for the
//     queue's confirm, which classic queues give once the message store has
//     written it to disk (fsync in batches): durable at the PUBACK, a power cut
//     included. Debian's /usr/sbin wrapper switches to the rabbitmq user, so the
//     node is started from /usr/lib/rabbitmq/bin as the harness's own user.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createConnection } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { once } from 'node:events'
import { freePort } from '../test/helpers/server-process.ts'

export interface RunningPeer {
  /** The MQTT port. */
  port: number
  pid: number
  stop (): Promise<void>
}

const RABBITMQ_SERVER = '/usr/lib/rabbitmq/bin/rabbitmq-server'

export const natsAvailable = (): boolean => spawnSync('nats-server', ['--version']).error === undefined
export const rabbitmqAvailable = (): boolean => existsSync(RABBITMQ_SERVER)

export function natsVersion (): string {
  return /v([\d.]+)/.exec(spawnSync('nats-server', ['--version'], { encoding: 'utf8' }).stdout ?? '')?.[1] ?? 'unknown'
}

export function rabbitmqVersion (): string {
  return /rabbitmq-server\s+([\d.]+)/.exec(spawnSync('dpkg-query', ['-W', 'rabbitmq-server'], { encoding: 'utf8' }).stdout ?? '')?.[1] ?? 'unknown'
}

function reachable (port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection(port, '127.0.0.1')
    socket.once('connect', () => { socket.destroy(); resolve(true) })
    socket.once('error', () => resolve(false))
  })
}

async function listening (child: ChildProcess, port: number, what: string, timeoutMs: number): Promise<void> {
  const started = Date.now()
  while (!(await reachable(port))) {
    if (child.exitCode !== null) throw new Error(`${what} exited with ${child.exitCode} before listening`)
    if (Date.now() - started > timeoutMs) throw new Error(`${what} did not listen on ${port} within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

function stopper (child: ChildProcess, dir: string): () => Promise<void> {
  return async () => {
    if (child.exitCode === null) {
      child.kill('SIGTERM')
      const killer = setTimeout(() => child.kill('SIGKILL'), 15_000)
      await once(child, 'exit')
      clearTimeout(killer)
    }
    rmSync(dir, { recursive: true, force: true })
  }
}

export async function startNats (): Promise<RunningPeer> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-nats-'))
  const [port, clientPort] = [await freePort(), await freePort()]
  const config = join(dir, 'nats.conf')
  writeFileSync(config, [
    'server_name: inboxd_bench',
    `listen: 127.0.0.1:${clientPort}`,
    `jetstream { store_dir: "${join(dir, 'jetstream')}" }`,
    `mqtt { listen: 127.0.0.1:${port} }`
  ].join('\n') + '\n')
  const child = spawn('nats-server', ['-c', config], { stdio: 'ignore' })
  process.once('exit', () => child.kill('SIGKILL'))
  await listening(child, port, 'nats-server', 15_000)
  return { port, pid: child.pid!, stop: stopper(child, dir) }
}

export async function startRabbitmq (): Promise<RunningPeer> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-rabbitmq-'))
  const [port, amqpPort, distPort] = [await freePort(), await freePort(), await freePort()]
  writeFileSync(join(dir, 'rabbitmq.conf'), [
    `listeners.tcp.default = ${amqpPort}`,
    `mqtt.listeners.tcp.default = ${port}`,
    'mqtt.allow_anonymous = true',
    'mqtt.default_user = guest',
    'mqtt.default_pass = guest'
  ].join('\n') + '\n')
  writeFileSync(join(dir, 'enabled_plugins'), '[rabbitmq_mqtt].\n')
  const child = spawn(RABBITMQ_SERVER, [], {
    stdio: 'ignore',
    env: {
      ...process.env,
      // Its Erlang cookie goes in HOME: the harness's own, not the machine's node's.
      HOME: dir,
      RABBITMQ_NODENAME: `inboxd_bench_${port}@localhost`,
      RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
      RABBITMQ_NODE_PORT: String(amqpPort),
      RABBITMQ_DIST_PORT: String(distPort),
      RABBITMQ_MNESIA_BASE: join(dir, 'mnesia'),
      RABBITMQ_LOG_BASE: join(dir, 'log'),
      RABBITMQ_CONFIG_FILE: join(dir, 'rabbitmq.conf'),
      RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, 'enabled_plugins'),
      RABBITMQ_PID_FILE: join(dir, 'pid')
    }
  })
  process.once('exit', () => child.kill('SIGKILL'))
  // An Erlang node takes seconds to boot (half a minute on a loaded machine).
  await listening(child, port, 'rabbitmq-server', 120_000)
  return { port, pid: child.pid!, stop: stopper(child, dir) }
}
