// Stopping the server the documented ways (README: `npm start`, `docker stop`):
// the signal reaches the server, which drains (connected devices are
// disconnected, "server stopped" is logged) and every process of the tree exits.
import t, { type Test } from 'tap'
import { readFileSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'
import { startServerProcess, SERVER_ARGS, type ServerHandle, type StartOptions, freePort, tempDataDir } from './helpers/server-process.ts'
import { startRedisServer } from './helpers/redis-server.ts'
import { connectDevice } from './helpers/devices.ts'
import { uniqueUser } from './helpers/tokens.ts'

// Redis mode on a redis-server of this file's own: no shared database to pick or flush.
const ownRedis = await startRedisServer(await freePort(), tempDataDir())
t.teardown(() => ownRedis.kill())

const packageJson = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { scripts: Record<string, string> }
const dockerCmd = JSON.parse(/^CMD (\[.*\])$/m.exec(readFileSync(new URL('../Dockerfile', import.meta.url), 'utf8'))![1]!) as string[]

/** True while any process of the group `pgid` exists (a zombie counts: it is not reaped yet). */
function groupAlive (pgid: number): boolean {
  try { process.kill(-pgid, 0); return true } catch { return false }
}

/** Waits until the process group is gone: what the test asserts, so it polls for it rather than sleeping once. */
async function groupGone (pgid: number, timeoutMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (groupAlive(pgid)) {
    if (Date.now() > deadline) return false
    await sleep(50)
  }
  return true
}

/** A device connected and subscribed; resolves `closed` when the server ends its connection. */
async function connected (server: ServerHandle): Promise<{ closed: Promise<void> }> {
  const device = await connectDevice({ url: server.mqttUrl, userId: uniqueUser('stop'), deviceId: 'phone' })
  return { closed: new Promise<void>((resolve) => device.client.once('close', () => resolve())) }
}

async function drains (t: Test, options: StartOptions, signal: NodeJS.Signals, target: (server: ServerHandle) => number): Promise<void> {
  const server = await startServerProcess(options)
  t.teardown(async () => { if (groupAlive(server.child.pid!)) process.kill(-server.child.pid!, 'SIGKILL') })
  const device = await connected(server)
  const code = await server.signal(signal, target(server))
  // Bounded: with a signal that does not reach the server, the device stays connected (the server is orphaned).
  t.ok(await Promise.race([device.closed.then(() => true), sleep(10_000).then(() => false)]), 'the connected device is disconnected')
  t.match(server.output(), new RegExp(`"signal":"${signal}".*"msg":"shutting down`), `the server logs that ${signal} started its drain`)
  t.match(server.output(), /"msg":"server stopped"/, 'and that it finished')
  t.equal(code, 0, 'the started process exits with 0')
  t.ok(await groupGone(server.child.pid!), 'no process of the tree is left')
}

t.test('the documented commands run the server\'s own node command, with nothing in between', async (t) => {
  t.equal(packageJson.scripts.start, `exec node ${SERVER_ARGS.join(' ')}`, 'npm start execs node (npm signals its child; a shell there would die and orphan the server)')
  t.same(dockerCmd, ['node', ...SERVER_ARGS], 'the Dockerfile runs node as PID 1 (exec form, no npm)')
})

const npmStart = ['npm', 'start']

t.test('npm start, SIGTERM to npm\'s process: drains and exits', async (t) => {
  await drains(t, { mode: 'embedded', command: npmStart }, 'SIGTERM', (server) => server.child.pid!)
})

t.test('npm start in Redis mode with two workers, Ctrl-C (SIGINT to the whole process group, npm\'s included): drains and exits', async (t) => {
  // Each process gets the terminal's SIGINT, and npm and the supervisor pass one on: repeats must not kill a draining worker.
  await drains(t, { mode: 'redis', command: npmStart, env: { REDIS_URL: ownRedis.url, WORKERS: '2' } }, 'SIGINT', (server) => -server.child.pid!)
})

// `docker stop` sends SIGTERM to the container's PID 1: the Dockerfile's CMD, run as PID 1 of a new PID namespace.
const unshare = spawnSync('unshare', ['--pid', '--fork', '--kill-child', 'true'])
t.test('the Dockerfile\'s CMD as PID 1 (a container), SIGTERM to it (docker stop): drains and exits', { skip: unshare.status === 0 ? false : 'needs unshare --pid (root on Linux)' }, async (t) => {
  await drains(t, { mode: 'embedded', command: ['unshare', '--pid', '--fork', '--kill-child', ...dockerCmd] }, 'SIGTERM', (server) => {
    // unshare's one child is PID 1 inside the namespace.
    const children = readFileSync(`/proc/${server.child.pid!}/task/${server.child.pid!}/children`, 'utf8').trim().split(' ')
    t.equal(children.length, 1, 'unshare has one child, the container\'s PID 1')
    return Number(children[0])
  })
})
