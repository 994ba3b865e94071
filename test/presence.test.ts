// Presence that tells the truth (issue 4): aggregated over devices, driven
// by connections, takeover-safe, and quick to notice every kind of loss.
// Timings are measured here and asserted with the margins the contract gives.
import t from 'tap'
import { createConnection } from 'node:net'
import mqttPacket from 'mqtt-packet'
import { startServerProcess, flushRedisDb, modesUnderTest, tempDataDir, freePort, type ServerHandle } from './helpers/server-process.ts'
import { connectDevice, type Device } from './helpers/devices.ts'
import { apiFor } from './helpers/rest.ts'
import { token, uniqueUser } from './helpers/tokens.ts'
import { metricsUntil, sample, scrape } from './helpers/metrics.ts'

await flushRedisDb(9)

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
// The test server accepts keepalives from 1 s, so silent loss is quick to see.
// These tests are about how presence is computed, watched by users who never
// talked, so everyone may see everyone here; who may see whom is test/privacy.test.ts.
const ENV = { KEEPALIVE_MIN_SECONDS: '1', PRESENCE_VISIBILITY: 'all' }

interface Seen { status: string, ts: number, lastSeen: number, at: number }

/** Another user's device watching `user`'s presence topic. */
async function watch (url: string, user: string): Promise<{ device: Device, seen: Seen[], next: (status: string, timeoutMs?: number) => Promise<Seen> }> {
  const device = await connectDevice({ url, userId: uniqueUser('watcher'), deviceId: 'w', subscribe: false, clean: true })
  const seen: Seen[] = []
  device.client.on('message', (topic, payload) => {
    if (topic === `presence/${user}`) seen.push({ ...JSON.parse(payload.toString()), at: Date.now() })
  })
  await device.client.subscribeAsync(`presence/${user}`, { qos: 1 })
  let cursor = 0
  return {
    device,
    seen,
    /** The first state with `status` not yet consumed by an earlier call. */
    async next (status, timeoutMs = 15_000) {
      const started = Date.now()
      for (;;) {
        const index = seen.findIndex((s, i) => i >= cursor && s.status === status)
        if (index >= 0) {
          cursor = index + 1
          return seen[index]!
        }
        if (Date.now() - started > timeoutMs) throw new Error(`no "${status}" within ${timeoutMs} ms; saw ${JSON.stringify(seen)}`)
        await sleep(10)
      }
    }
  }
}

/** A bare TCP MQTT client: CONNECT, then nothing at all (not even PINGREQ). */
function silentClient (port: number, user: string, keepalive: number): Promise<ReturnType<typeof createConnection>> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(port, '127.0.0.1')
    socket.once('error', reject)
    socket.once('data', (data) => (data[0] === 0x20 && data[3] === 0 ? resolve(socket) : reject(new Error('CONNACK refused'))))
    socket.write(mqttPacket.generate({
      cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: false, keepalive,
      clientId: `${user}:silent`, username: user, password: Buffer.from(token(user))
    }))
  })
}

/** MQTT connections the server holds (inboxd_connections over both transports). */
async function connections (server: Pick<ServerHandle, 'httpUrl'>): Promise<number> {
  return sample(await scrape(server), 'inboxd_connections')
}

/**
 * Until the server holds `count` connections: the gauge moves in the same clientDisconnect event that hands
 * a connection's end to presence, so after this every disconnect counted has been given to presence.
 */
async function connectionsUntil (server: Pick<ServerHandle, 'httpUrl'>, count: number): Promise<void> {
  await metricsUntil(server, `${count} connections`, (text) => sample(text, 'inboxd_connections') === count, { timeoutMs: 10_000, prefix: 'inboxd_connections' })
}

function refusalCode (url: string, user: string, options: Record<string, unknown>): Promise<number | undefined> {
  return connectDevice({ url, userId: user, deviceId: 'x', extra: options }).then(
    async (device) => { await device.end(); return undefined },
    (error: { code?: number }) => error.code)
}

for (const mode of modesUnderTest()) {
  t.test(`${mode} mode`, async (t) => {
    const server = await startServerProcess({ mode, redisDb: 9, env: ENV })
    t.teardown(() => server.stop())
    const url = server.mqttUrl

    t.test('online while any device is connected, offline when the last one goes', async (t) => {
      const alice = uniqueUser('alice')
      const watcher = await watch(url, alice)
      t.teardown(() => watcher.device.end())
      const phone = await connectDevice({ url, userId: alice, deviceId: 'phone' })
      const online = await watcher.next('online')
      t.ok(online.lastSeen > 0 && online.ts > 0)
      const laptop = await connectDevice({ url: server.wsUrl, userId: alice, deviceId: 'laptop' })
      const held = await connections(server)
      await phone.end()
      await connectionsUntil(server, held - 1)
      const rest = await apiFor(server.httpUrl, uniqueUser('bob')).get(`/v1/presence/${alice}`)
      t.match(rest.body, { user: alice, status: 'online' })

      // The phone's disconnect is with presence: anything it published comes before the laptop's offline.
      const closedAt = Date.now()
      await laptop.end()
      const offline = await watcher.next('offline')
      t.ok(offline.ts >= closedAt, 'the offline is the laptop\'s leaving')
      t.same(watcher.seen.map((s) => s.status), ['online', 'offline'], 'one device leaving is not offline')
      t.ok(offline.at - closedAt < 1_000, `clean close: offline after ${offline.at - closedAt} ms (< 1 s)`)
      t.equal(offline.lastSeen, offline.ts)

      // A late subscriber gets the retained state at once.
      const late = await watch(url, alice)
      t.teardown(() => late.device.end())
      t.equal((await late.next('offline', 2_000)).lastSeen, offline.lastSeen)
    })

    t.test('an abrupt close (FIN or RST) shows offline within 1 s', async (t) => {
      for (const how of ['FIN', 'RST'] as const) {
        const alice = uniqueUser('alice')
        const watcher = await watch(url, alice)
        const phone = await connectDevice({ url, userId: alice, deviceId: 'phone' })
        await watcher.next('online')
        const socket = phone.client.stream as import('node:net').Socket
        const closedAt = Date.now()
        if (how === 'RST') socket.resetAndDestroy()
        else socket.end()
        phone.client.end(true)
        const offline = await watcher.next('offline')
        t.ok(offline.at - closedAt < 1_000, `${how}: offline after ${offline.at - closedAt} ms (< 1 s)`)
        await watcher.device.end()
      }
    })

    t.test('a silent loss shows offline within 1.5 × keepalive + 1 s', async (t) => {
      const alice = uniqueUser('alice')
      const watcher = await watch(url, alice)
      t.teardown(() => watcher.device.end())
      const keepalive = 2
      const socket = await silentClient(server.mqttPort, alice, keepalive)
      const lastPacketAt = Date.now()
      t.teardown(() => socket.destroy())
      await watcher.next('online')
      const offline = await watcher.next('offline')
      const after = offline.at - lastPacketAt
      t.ok(after <= 1.5 * keepalive * 1000 + 1000, `offline ${after} ms after the last packet (bound ${1.5 * keepalive + 1} s)`)
      t.ok(after >= 1.5 * keepalive * 1000 - 100, 'and not before the keepalive ran out')
    })

    t.test('a session takeover never shows a false offline', async (t) => {
      const alice = uniqueUser('alice')
      const watcher = await watch(url, alice)
      t.teardown(() => watcher.device.end())
      let current = await connectDevice({ url, userId: alice, deviceId: 'phone' })
      await watcher.next('online')
      const held = await connections(server)
      for (let i = 0; i < 5; i++) {
        const closed = new Promise<void>((resolve) => current.client.once('close', () => resolve()))
        const next = await connectDevice({ url: i % 2 === 0 ? server.wsUrl : url, userId: alice, deviceId: 'phone' })
        await closed
        current.client.end(true)
        current = next
      }
      // Every replaced connection's disconnect has been given to presence; then the last one goes.
      await connectionsUntil(server, held)
      const closedAt = Date.now()
      await current.end()
      const offline = await watcher.next('offline')
      t.ok(offline.ts >= closedAt, 'the only offline is the last connection closing')
      t.same(watcher.seen.map((s) => s.status), ['online', 'offline'], 'five takeovers, no offline')
    })

    t.test('keepalive is bounded; a will may only target your own presence', async (t) => {
      const alice = uniqueUser('alice')
      t.equal(await refusalCode(url, alice, { keepalive: 0 }), 2, 'keepalive 0 (no heartbeat) is refused')
      t.equal(await refusalCode(url, alice, { keepalive: 1201 }), 2, 'above KEEPALIVE_MAX_SECONDS is refused')
      const will = (topic: string) => ({ will: { topic, payload: Buffer.from('{"status":"online"}'), qos: 1 as const, retain: true } })
      t.equal(await refusalCode(url, alice, will(`presence/${uniqueUser('bob')}`)), 5, 'a will on another user\'s presence is refused')
      t.equal(await refusalCode(url, alice, will(`user/${uniqueUser('bob')}/inbox`)), 5, 'a will on an inbox is refused')

      // A will on your own presence is accepted, and ignored: the server says what is true.
      const watcher = await watch(url, alice)
      t.teardown(() => watcher.device.end())
      const phone = await connectDevice({ url, userId: alice, deviceId: 'phone', extra: will(`presence/${alice}`) })
      await watcher.next('online')
      ;(phone.client.stream as import('node:net').Socket).destroy()
      phone.client.end(true)
      await watcher.next('offline')
      // The phone back: its "online" comes after anything the disconnect published (the will included), on the same topic.
      const again = await connectDevice({ url, userId: alice, deviceId: 'phone' })
      t.teardown(() => again.client.end(true))
      await watcher.next('online')
      // The will's payload is {"status":"online"}; the server's states carry ts and lastSeen. (The server may repeat a state.)
      t.ok(watcher.seen.every((s) => typeof s.ts === 'number' && typeof s.lastSeen === 'number'), 'the will\'s forged "online" never appears')
      t.same(watcher.seen.map((s) => s.status).filter((status, i, all) => status !== all[i - 1]), ['online', 'offline', 'online'], 'online, offline at the disconnect, online again')
    })

    t.test('clients cannot publish presence', async (t) => {
      const alice = uniqueUser('alice')
      const bob = uniqueUser('bob')
      const watcher = await watch(url, bob)
      t.teardown(() => watcher.device.end())
      const phone = await connectDevice({ url, userId: alice, deviceId: 'phone' })
      t.teardown(() => phone.end())
      await phone.sendRaw(`presence/${bob}`, '{"status":"online","ts":1,"lastSeen":1}')
      const [error] = await phone.waitForErrors(1)
      t.equal(error!.code, 'forbidden_topic')
      // Bob coming online is published after the refused publish was handled: the forged state would come first.
      const bobPhone = await connectDevice({ url, userId: bob, deviceId: 'phone' })
      t.teardown(() => bobPhone.end())
      await watcher.next('online')
      t.equal(watcher.seen.length, 1, 'bob\'s presence is untouched: only the server\'s own online')
      t.ok(watcher.seen[0]!.ts > 1, 'and it is not the forged state')
      // Nor one's own: only the server says what is true (a will there is accepted and ignored).
      await phone.sendRaw(`presence/${alice}`, '{"status":"online","ts":1,"lastSeen":1}')
      const [, own] = await phone.waitForErrors(2)
      t.match(own, { code: 'forbidden_topic', topic: `presence/${alice}` }, 'a publish to your own presence is refused too')
    })

    t.test('typing indicators are ephemeral', async (t) => {
      const alice = uniqueUser('alice')
      const bob = uniqueUser('bob')
      const phone = await connectDevice({ url, userId: alice, deviceId: 'phone' })
      const bobPhone = await connectDevice({ url, userId: bob, deviceId: 'phone' })
      t.teardown(() => phone.end())
      await phone.send(bob, { type: 'typing' }, 0)
      const [typing] = await bobPhone.waitForInbox(1)
      t.match(typing, { type: 'typing', from: alice, to: bob, active: true })
      t.notOk('seq' in typing!, 'no seq: not part of the log')

      await bobPhone.end()
      await phone.send(bob, { type: 'typing', active: false }, 1)
      await phone.send(bob, { id: 'after', body: 'real message' })
      const back = await connectDevice({ url, userId: bob, deviceId: 'phone' })
      t.teardown(() => back.end())
      await back.waitForInbox(1)
      // A message sent now reaches the device after anything queued for it while it was away.
      await phone.send(bob, { id: 'later', body: 'now' })
      await back.waitForInbox(2)
      t.same(back.inbox.map((e) => e.id ?? e.type), ['after', 'later'], 'typing is never queued for an offline device')
      t.same((await apiFor(server.httpUrl, bob).syncAll()).map((e) => e.id), ['after', 'later'], 'nor logged')
      await phone.send(bob, { type: 'typing', active: 'yes' }, 0)
      t.equal((await phone.waitForErrors(1))[0]!.code, 'invalid_message')
    })

    t.test('GET /v1/presence: one user and a batch', async (t) => {
      const alice = uniqueUser('alice')
      const never = uniqueUser('never')
      const phone = await connectDevice({ url, userId: alice, deviceId: 'phone' })
      t.teardown(() => phone.end())
      const api = apiFor(server.httpUrl, uniqueUser('bob'))
      const batch = await api.get(`/v1/presence?users=${alice},${never}`)
      t.equal(batch.status, 200)
      t.match(batch.body.presence, [{ user: alice, status: 'online' }, { user: never, status: 'offline', ts: 0, lastSeen: 0 }])
      const tooMany = await api.get(`/v1/presence?users=${Array.from({ length: 101 }, (_, i) => `u${i}`).join(',')}`)
      t.match(tooMany, { status: 400, body: { error: 'invalid_request', field: 'querystring.users' } })
      t.match(await api.get('/v1/presence?users=a,b%2Fc'), { status: 400, body: { field: 'querystring.users' } })
      t.match(await api.get('/v1/presence'), { status: 400, body: { field: 'querystring.users' } })
      t.match(await api.get('/v1/presence/a%2Fb'), { status: 400, body: { field: 'params.user' } })
      t.equal((await apiFor(server.httpUrl, alice, { token: 'x.y.z' }).get(`/v1/presence/${alice}`)).status, 401)
    })
  })
}

t.test('embedded: a crash leaves no stale "online" behind', async (t) => {
  const dataDir = tempDataDir()
  const ports = { mqttPort: await freePort(), httpPort: await freePort() }
  let server = await startServerProcess({ mode: 'embedded', dataDir, env: ENV, ...ports })
  const alice = uniqueUser('alice')
  const phone = await connectDevice({ url: server.mqttUrl, userId: alice, deviceId: 'phone', extra: { reconnectPeriod: 0 } })
  phone.client.on('error', () => {})
  // Killed once the retained "online" is out.
  const before = await watch(server.mqttUrl, alice)
  before.device.client.on('error', () => {})
  await before.next('online')
  await server.kill()
  before.device.client.end(true)
  phone.client.end(true)
  server = await startServerProcess({ mode: 'embedded', dataDir, env: ENV, ...ports })
  t.teardown(() => server.stop())
  const watcher = await watch(server.mqttUrl, alice)
  t.teardown(() => watcher.device.end())
  const retained = await watcher.next('offline', 2_000)
  t.ok(retained.lastSeen > 0, 'the retained state was corrected to offline')
  t.match((await apiFor(server.httpUrl, uniqueUser('bob')).get(`/v1/presence/${alice}`)).body, { status: 'offline' })
})

if (modesUnderTest().includes('redis')) {
  t.test('redis: two processes', async (t) => {
    const nodeA = await startServerProcess({ mode: 'redis', redisDb: 9, env: ENV })
    const nodeB = await startServerProcess({ mode: 'redis', redisDb: 9, env: ENV })
    t.teardown(async () => { await nodeA.kill(); await nodeB.stop() })

    t.test('a takeover on the other process never shows a false offline', async (t) => {
      const alice = uniqueUser('alice')
      const watcher = await watch(nodeB.mqttUrl, alice)
      t.teardown(() => watcher.device.end())
      const onA = await connectDevice({ url: nodeA.mqttUrl, userId: alice, deviceId: 'phone' })
      await watcher.next('online')
      const closed = new Promise<void>((resolve) => onA.client.once('close', () => resolve()))
      const onB = await connectDevice({ url: nodeB.mqttUrl, userId: alice, deviceId: 'phone' })
      await closed
      onA.client.end(true)
      // A has given the replaced connection's disconnect to presence (its gauge shows it), and B's state read says online.
      await connectionsUntil(nodeA, 0)
      t.match((await apiFor(nodeA.httpUrl, uniqueUser('bob')).get(`/v1/presence/${alice}`)).body, { status: 'online' })
      // Then the phone leaves B: the one offline must be that, not an earlier one from A.
      const closedAt = Date.now()
      await onB.end()
      const offline = await watcher.next('offline')
      t.ok(offline.ts >= closedAt, 'the offline is the phone leaving B')
      t.same(watcher.seen.map((s) => s.status), ['online', 'offline'], 'the takeover showed no offline')
    })

    t.test('when a process dies, its users show offline within 10 s', async (t) => {
      const alice = uniqueUser('alice')
      const bob = uniqueUser('bob')
      const watcher = await watch(nodeB.mqttUrl, alice)
      t.teardown(() => watcher.device.end())
      const onA = await connectDevice({ url: nodeA.mqttUrl, userId: alice, deviceId: 'phone' })
      onA.client.on('error', () => {})
      // Bob is on both: his device on B keeps him online.
      const bobOnA = await connectDevice({ url: nodeA.mqttUrl, userId: bob, deviceId: 'a' })
      bobOnA.client.on('error', () => {})
      const bobOnB = await connectDevice({ url: nodeB.mqttUrl, userId: bob, deviceId: 'b' })
      t.teardown(() => bobOnB.end())
      await watcher.next('online')
      const killedAt = Date.now()
      await nodeA.kill()
      onA.client.end(true)
      bobOnA.client.end(true)
      const offline = await watcher.next('offline', 15_000)
      t.ok(offline.at - killedAt <= 10_000, `offline ${offline.at - killedAt} ms after kill -9 (<= 10 s)`)
      t.match((await apiFor(nodeB.httpUrl, alice).get(`/v1/presence?users=${alice},${bob}`)).body.presence,
        [{ status: 'offline' }, { status: 'online' }], 'a user with a device on a live process stays online')
    })
  })
}
