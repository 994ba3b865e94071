// Process lifecycle: config errors, health, clean shutdown, embedded store under load.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { startServerProcess, serverEnv, flushRedisDb, modesUnderTest, tempDataDir, SERVER_ARGS } from './helpers/server-process.ts'
import { connectDevice } from './helpers/devices.ts'
import { uniqueUser } from './helpers/tokens.ts'
import { sendMany } from './helpers/backlog.ts'

await flushRedisDb(6)

function startWith (env: Record<string, string>): { status: number | null, stderr: string } {
  const result = spawnSync(process.execPath, SERVER_ARGS, {
    env: { PATH: process.env.PATH ?? '', ...env },
    encoding: 'utf8',
    timeout: 20_000
  })
  return { status: result.status, stderr: result.stderr }
}

t.test('invalid configuration: non-zero exit and one line naming the variable', async (t) => {
  const base = serverEnv({ mode: 'embedded' })
  const cases: Array<[string, Record<string, string>]> = [
    ['JWT_SECRET', { ...base, JWT_SECRET: '' }],
    ['JWT_SECRET', { ...base, JWT_SECRET: 'short' }],
    ['JWT_PUBLIC_KEY', { ...base, JWT_SECRET: '', JWT_PUBLIC_KEY: '-----BEGIN PUBLIC KEY-----\nnonsense\n-----END PUBLIC KEY-----' }],
    ['MQTT_PORT', { ...base, MQTT_PORT: 'eighty' }],
    ['HTTP_PORT', { ...base, HTTP_PORT: '70000' }],
    ['REDIS_URL', { ...base, REDIS_URL: 'localhost:6379' }],
    ['LOG_LEVEL', { ...base, LOG_LEVEL: 'loud' }],
    ['DURABILITY', { ...base, DURABILITY: 'fsync' }],
    ['MAX_PAYLOAD_BYTES', { ...base, MAX_PAYLOAD_BYTES: '-1' }],
    ['BACKLOG_RETENTION_SECONDS', { ...base, BACKLOG_RETENTION_SECONDS: '0' }],
    ['HISTORY_RETENTION_SECONDS', { ...base, HISTORY_RETENTION_SECONDS: 'forever' }],
    ['HOT_RETENTION_SECONDS', { ...base, HOT_RETENTION_SECONDS: '0' }],
    ['DATABASE_URL', { ...base, DATABASE_URL: 'mysql://db.example/inboxd' }],
    ['PUBLISH_RATE_EXEMPT', { ...base, PUBLISH_RATE_EXEMPT: 'bulk-sender,not/an/id' }],
    ['KEEPALIVE_MIN_SECONDS', { ...base, KEEPALIVE_MIN_SECONDS: '100', KEEPALIVE_MAX_SECONDS: '10' }],
    ['MAX_SESSIONS_PER_USER', { ...base, MAX_SESSIONS_PER_USER: '10', MAX_DEVICES_PER_USER: '20' }],
    ['APNS_TEAM_ID', { ...base, APNS_KEY: '/nonexistent.p8', APNS_KEY_ID: 'K', APNS_TOPIC: 'com.example' }],
    ['APNS_KEY', { ...base, APNS_KEY: '/nonexistent.p8', APNS_KEY_ID: 'K', APNS_TEAM_ID: 'T', APNS_TOPIC: 'com.example' }],
    ['APNS_ENV', { ...base, APNS_KEY: '/nonexistent.p8', APNS_KEY_ID: 'K', APNS_TEAM_ID: 'T', APNS_TOPIC: 'com.example', APNS_ENV: 'staging' }]
  ]
  for (const [variable, env] of cases) {
    const { status, stderr } = startWith(env)
    t.not(status, 0, `${variable}: exits non-zero`)
    const lines = stderr.trim().split('\n').filter((line) => !line.includes('ExperimentalWarning'))
    t.equal(lines.length, 1, `${variable}: one line`)
    t.match(lines[0], variable, `${variable}: names the variable`)
  }
})

t.test('a second embedded server on the same DATA_DIR says another process holds it', async (t) => {
  const dataDir = tempDataDir()
  const first = await startServerProcess({ mode: 'embedded', dataDir })
  t.teardown(() => first.stop())
  const { status, stderr } = startWith(serverEnv({ mode: 'embedded', dataDir }))
  t.equal(status, 1, 'exits with 1')
  t.match(stderr, /another process holds DATA_DIR/, 'names the problem')
})

t.test('healthz answers 200 once ready; SIGTERM exits cleanly', async (t) => {
  const server = await startServerProcess({ mode: 'embedded' })
  const response = await fetch(`${server.httpUrl}/healthz`)
  t.equal(response.status, 200)
  t.match(server.output(), /push disabled: set APNS_KEY/, 'says in one line that push is off')
  t.same(await response.json(), { status: 'ok', mode: 'embedded', cluster: false })
  const user = uniqueUser('gina')
  const device = await connectDevice({ url: server.mqttUrl, userId: user, deviceId: 'd' })
  const closed = new Promise<void>((resolve) => device.client.once('close', () => resolve()))
  t.equal(await server.stop(), 0, 'exit code 0 on SIGTERM')
  await closed
  t.pass('clients are disconnected on shutdown')
  await device.end(true)
})

for (const mode of modesUnderTest()) {
  t.test(`${mode} store under sustained QoS 1 load: 20,000 sent, 20,000 delivered live, in order`, async (t) => {
    const server = await startServerProcess({ mode, redisDb: 6, env: { PUBLISH_RATE: '0' } }) // 20,000 from one sender: no publish limit
    t.teardown(() => server.stop())
    const alice = uniqueUser('alice')
    const bob = uniqueUser('bob')
    const receiver = await connectDevice({ url: server.mqttUrl, userId: bob, deviceId: 'phone' })
    const sender = await connectDevice({ url: server.mqttUrl, userId: alice, deviceId: 'phone' })
    const sent = await sendMany(sender, bob, 20_000, 'load', 500)
    await sender.end()
    // Live delivery first; whatever did not arrive live must still be queued.
    await receiver.waitForInbox(20_000, 20_000).catch(() => {})
    const live = receiver.inbox.length
    t.comment(`${mode}: ${live} of 20000 delivered live`)
    t.equal(live, 20_000, 'all delivered live to the connected device')
    const order = receiver.inbox.map((m) => Number(String(m.id).split('-')[1]))
    t.ok(order.every((n, i) => i === 0 || n > order[i - 1]!), 'in the order they were sent')
    await receiver.end()
    const again = await connectDevice({ url: server.mqttUrl, userId: bob, deviceId: 'phone', subscribe: false })
    await again.waitForInbox(20_000 - live, 30_000)
    // One more message reaches the device after anything else still queued for it.
    const last = await connectDevice({ url: server.mqttUrl, userId: alice, deviceId: 'phone', subscribe: false })
    await last.send(bob, { id: 'last', body: 'after the load' })
    await last.end()
    await again.waitForMatching((m) => m.id === 'last', 1, 30_000)
    t.equal(again.inbox.at(-1)!.id, 'last', 'nothing after the last message')
    await again.end()
    const all = [...receiver.inbox, ...again.inbox].map((m) => m.id as string).filter((id) => id !== 'last')
    t.equal(new Set(all).size, 20_000, 'no message lost')
    t.equal(all.length, 20_000, 'none delivered twice')
    t.same(new Set(all), new Set(sent))
  })
}
