// DURABILITY=process|disk: what a PUBACK promises, done and said.
// Embedded mode: strace, attached to the real server, sees whether LevelDB
// fsyncs the history log between a message's PUBLISH and its PUBACK (and
// the revocation, key and device stores on their REST writes). A power cut
// itself cannot be staged here (it needs a disk whose unsynced writes can be
// dropped), so what is checked is that the fsync happens, and before the
// answer. Redis mode: the one log line at start says what a PUBACK survives
// on the Redis it found, and DURABILITY=disk refuses a Redis that does not
// fsync every write.
import t from 'tap'
import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { startServerProcess, freePort, tempDataDir, type ServerHandle } from './helpers/server-process.ts'
import { startRedisServer } from './helpers/redis-server.ts'
import { connectDevice } from './helpers/devices.ts'
import { apiFor } from './helpers/rest.ts'
import { uniqueUser } from './helpers/tokens.ts'

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
const MESSAGES = 10

/** strace present and allowed to attach (ptrace) here? */
function straceProblem (): string | undefined {
  const probe = spawnSync('strace', ['-f', '-e', 'trace=fdatasync', '-o', '/dev/null', 'true'])
  if (probe.error !== undefined) return 'strace is not installed (apt-get install strace)'
  if (probe.status !== 0) return `strace cannot trace here: ${probe.stderr.toString().trim()}`
  return undefined
}

interface Sync { at: number, end: number, path: string }

/** Traces every fsync and fdatasync of `pid`'s threads (LevelDB writes on libuv's pool) until the returned stop. */
async function traceSyncs (pid: number, file: string): Promise<() => Promise<Sync[]>> {
  const threads = readdirSync(`/proc/${pid}/task`).length
  const strace = spawn('strace', ['-f', '-y', '-ttt', '-T', '-e', 'trace=fsync,fdatasync', '-o', file, '-p', String(pid)], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  strace.stderr!.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  // "Process <pid> attached with <n> threads", once it holds them all.
  const until = Date.now() + 10_000
  while (!/attached/.test(stderr) && Date.now() < until) await sleep(10)
  const attached = Number(/attached with (\d+) threads/.exec(stderr)?.[1] ?? (/attached/.test(stderr) ? 1 : 0))
  if (attached < threads) throw new Error(`strace attached to ${attached} of ${threads} threads: ${stderr}`)
  return async () => {
    strace.kill('SIGINT') // detaches, and writes out what it saw
    await once(strace, 'exit')
    // A call another thread's syscall interrupts in strace's output is two lines: `fsync(…<path> <unfinished ...>`
    // then `<... fsync resumed>) = 0 <duration>`, joined here by thread id.
    const unfinished = new Map<string, { at: number, path: string }>()
    return readFileSync(file, 'utf8').split('\n').flatMap((line) => {
      const whole = /^(\d+)\s+(\d+\.\d+) f(?:data)?sync\(\d+<([^>]+)>\)\s+=\s+0 <(\d+\.\d+)>/.exec(line)
      if (whole !== null) {
        const at = Number(whole[2]) * 1000
        return [{ at, end: at + Number(whole[4]) * 1000, path: whole[3]! }]
      }
      const started = /^(\d+)\s+(\d+\.\d+) f(?:data)?sync\(\d+<([^>]+)> <unfinished \.\.\.>/.exec(line)
      if (started !== null) {
        unfinished.set(started[1]!, { at: Number(started[2]) * 1000, path: started[3]! })
        return []
      }
      const resumed = /^(\d+)\s+\d+\.\d+ <\.\.\. f(?:data)?sync resumed>\)\s+=\s+0 <(\d+\.\d+)>/.exec(line)
      const start = resumed === null ? undefined : unfinished.get(resumed[1]!)
      if (resumed === null || start === undefined) return []
      unfinished.delete(resumed[1]!)
      return [{ at: start.at, end: start.at + Number(resumed[2]) * 1000, path: start.path }]
    })
  }
}

/** Ten messages one at a time over MQTT, then a key, a device and a logout over REST. */
async function exercise (server: ServerHandle): Promise<{ messages: Array<{ sent: number, acked: number }>, restAt: number, restDone: number, statuses: number[] }> {
  const alice = uniqueUser('alice')
  const bob = uniqueUser('bob')
  const sender = await connectDevice({ url: server.mqttUrl, userId: alice, deviceId: 'phone', subscribe: false })
  const messages: Array<{ sent: number, acked: number }> = []
  // One at a time: each is its own group-commit batch.
  for (let i = 0; i < MESSAGES; i++) {
    const sent = Date.now()
    await sender.send(bob, { id: `m${i}`, body: i })
    messages.push({ sent, acked: Date.now() })
  }
  await sender.end()
  const api = apiFor(server.httpUrl, alice)
  const restAt = Date.now()
  const statuses = [
    (await api.put('/v1/keys', { publicKey: `${'A'.repeat(43)}=` })).status,
    (await api.post('/v1/devices', { platform: 'android', token: 'f'.repeat(40), deviceId: 'phone' })).status,
    (await api.post('/v1/sessions/logout', {})).status
  ]
  return { messages, restAt, restDone: Date.now(), statuses }
}

const straceMissing = straceProblem()

t.test('embedded, DURABILITY=disk: every PUBACK waits for an fsync of the history log', { skip: straceMissing }, async (t) => {
  const dataDir = tempDataDir()
  const server = await startServerProcess({ mode: 'embedded', dataDir, env: { DURABILITY: 'disk' } })
  t.teardown(() => server.kill())
  t.match(server.output(), /durability disk: LevelDB fsyncs each batch of writes before its PUBACK/, 'the start line says so')
  const stop = await traceSyncs(server.child.pid!, join(tempDataDir(), 'strace.txt'))
  const { messages, restAt, restDone, statuses } = await exercise(server)
  const syncs = await stop()
  t.same(statuses, [200, 201, 200], 'a key published, a device registered, a token revoked')
  const historyLog = syncs.filter((sync) => sync.path.startsWith(join(dataDir, 'history')) && sync.path.endsWith('.log'))
  // 1 ms of slack: the test's clock reads whole milliseconds.
  const covered = messages.filter(({ sent, acked }) => historyLog.some((sync) => sync.at >= sent - 1 && sync.end <= acked + 1))
  t.equal(covered.length, MESSAGES, `each of ${MESSAGES} messages: the history log was fsynced after its PUBLISH and before its PUBACK (${historyLog.length} fsyncs)`)
  for (const store of ['keys', 'devices', 'revocations']) {
    t.ok(syncs.some((sync) => sync.path.startsWith(join(dataDir, store)) && sync.path.endsWith('.log') && sync.at >= restAt - 1 && sync.end <= restDone + 1), `the ${store} store is fsynced before its REST answer`)
  }
})

t.test('embedded, DURABILITY=process (the default): no fsync on the way to a PUBACK', { skip: straceMissing }, async (t) => {
  const dataDir = tempDataDir()
  const server = await startServerProcess({ mode: 'embedded', dataDir })
  t.teardown(() => server.kill())
  t.match(server.output(), /durability process: LevelDB writes without fsync: a PUBACKed message survives a crash \(kill -9\) of the server process, not a power cut/, 'the start line says so')
  const stop = await traceSyncs(server.child.pid!, join(tempDataDir(), 'strace.txt'))
  const { restDone, statuses } = await exercise(server)
  const syncs = await stop()
  t.same(statuses, [200, 201, 200], 'a key published, a device registered, a token revoked')
  // Only the write-ahead logs: a background compaction may fsync the table files it writes, in either setting.
  t.same(syncs.filter((sync) => sync.path.startsWith(dataDir) && sync.path.endsWith('.log') && sync.at <= restDone), [], 'no store under DATA_DIR fsynced its log while answering')
})

t.test('embedded, DURABILITY=disk: what was acknowledged survives kill -9', async (t) => {
  const dataDir = tempDataDir()
  const server = await startServerProcess({ mode: 'embedded', dataDir, env: { DURABILITY: 'disk' } })
  const alice = uniqueUser('alice')
  const bob = uniqueUser('bob')
  const sender = await connectDevice({ url: server.mqttUrl, userId: alice, deviceId: 'phone', subscribe: false })
  await Promise.all(Array.from({ length: 50 }, (_, i) => sender.send(bob, { id: `k${i}`, body: i })))
  await server.kill()
  await sender.end(true)
  const again = await startServerProcess({ mode: 'embedded', dataDir, env: { DURABILITY: 'disk' } })
  t.teardown(() => again.kill())
  const ids = (await apiFor(again.httpUrl, bob).syncAll(0, 100)).map((event) => event.id)
  t.same(ids.sort(), Array.from({ length: 50 }, (_, i) => `k${i}`).sort(), 'all 50 acknowledged messages are in the log after the restart')
})

/** The server's "durability" start lines (one per start, whatever WORKERS is). */
const durabilityLines = (server: ServerHandle): string[] => server.output().split('\n').filter((line) => line.includes('"msg":"durability '))

/** Starting must fail: resolves with what it printed. */
async function refusedStart (env: Record<string, string>): Promise<string> {
  try {
    const server = await startServerProcess({ mode: 'redis', env })
    await server.kill()
    return 'started'
  } catch (error) {
    return (error as Error).message
  }
}

t.test('redis: one start line says what a PUBACK survives; DURABILITY=disk needs appendfsync always', async (t) => {
  const everysecPort = await freePort()
  const everysec = await startRedisServer(everysecPort, tempDataDir(), ['--appendonly', 'yes', '--appendfsync', 'everysec'])
  t.teardown(() => everysec.kill())
  const alwaysPort = await freePort()
  const always = await startRedisServer(alwaysPort, tempDataDir(), ['--appendonly', 'yes', '--appendfsync', 'always'])
  t.teardown(() => always.kill())
  const noConfigPort = await freePort()
  const noConfig = await startRedisServer(noConfigPort, tempDataDir(), ['--rename-command', 'CONFIG', '""'])
  t.teardown(() => noConfig.kill())
  // What the shared Redis really has (the CI one keeps nothing on disk).
  const shared = new Redis(`${process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'}/1`)
  const sharedAof = (await shared.call('CONFIG', 'GET', 'appendonly') as string[])[1]
  shared.disconnect()

  const [onShared, onEverysec, onAlways, onNoConfig, disk, diskEverysec, diskNoConfig] = await Promise.all([
    startServerProcess({ mode: 'redis', env: { WORKERS: '2' } }),
    startServerProcess({ mode: 'redis', env: { REDIS_URL: `${everysec.url}/0`, WORKERS: '1' } }),
    startServerProcess({ mode: 'redis', env: { REDIS_URL: `${always.url}/0`, WORKERS: '1', DURABILITY: 'disk' } }),
    startServerProcess({ mode: 'redis', env: { REDIS_URL: `${noConfig.url}/0`, WORKERS: '1' } }),
    refusedStart({ DURABILITY: 'disk', WORKERS: '1' }),
    refusedStart({ REDIS_URL: `${everysec.url}/0`, WORKERS: '1', DURABILITY: 'disk' }),
    refusedStart({ REDIS_URL: `${noConfig.url}/0`, WORKERS: '1', DURABILITY: 'disk' })
  ])
  for (const server of [onShared, onEverysec, onAlways, onNoConfig]) t.teardown(() => server.kill())

  t.equal(durabilityLines(onShared).length, 1, 'one line, with two workers')
  if (sharedAof === 'no') {
    t.match(durabilityLines(onShared)[0], /"appendonly":"no".*"msg":"durability process: Redis has appendonly no.*a PUBACKed message survives a crash of the server process.*not a Redis restart/, 'the shared Redis (appendonly no): survives a server crash, not a Redis restart')
    t.match(disk, /invalid configuration: DURABILITY is "disk", but Redis has appendonly no/, 'DURABILITY=disk refuses it')
  }
  t.match(durabilityLines(onEverysec), [/"appendonly":"yes","appendfsync":"everysec".*"msg":"durability process: Redis has appendonly yes, appendfsync everysec: a PUBACKed message survives a crash or restart of the server or of Redis; a power cut or kernel crash of the Redis machine can lose about the last second of them \(up to 2 s when its disk is slow\)"/], 'AOF everysec: survives a Redis restart, about 1 s lost to a power cut')
  t.match(diskEverysec, /invalid configuration: DURABILITY is "disk", but Redis has appendonly yes, appendfsync everysec: a PUBACK would not survive a power cut/, 'DURABILITY=disk refuses AOF everysec')
  t.match(durabilityLines(onAlways), [/"durability":"disk".*"msg":"durability disk: Redis has appendonly yes, appendfsync always: .*and a power cut or kernel crash of the Redis machine"/], 'DURABILITY=disk starts on AOF always, and says it survives a power cut')
  t.match(durabilityLines(onNoConfig), [/"appendonly":"unknown".*"msg":"durability process: Redis refused CONFIG GET, so its persistence is unknown/], 'CONFIG renamed: unknown')
  t.match(diskNoConfig, /invalid configuration: DURABILITY is "disk", but Redis refused CONFIG GET/, 'and DURABILITY=disk refuses to guess')

  // The server on AOF always works as usual.
  const alice = uniqueUser('alice')
  const device = await connectDevice({ url: onAlways.mqttUrl, userId: alice, deviceId: 'phone' })
  await device.send(alice, { id: 'self', body: 1 })
  await device.waitForInbox(1)
  await device.end()
})
