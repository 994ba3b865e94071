// Persistent sessions per user are bounded (MAX_SESSIONS_PER_USER): a device
// that connects with ever new deviceIds and clean: false cannot pile up cursors
// and stored subscriptions. Beyond the bound the user's session furthest behind
// is evicted, never one whose device is connected (on any process); the evicted
// device comes back to a new session (CONNACK session present 0, no backlog)
// and catches up with GET /v1/sync. Both modes; in Redis mode the connected
// device is on another server process than the sessions that would evict it.
import t from 'tap'
import { connect as connectTcp } from 'node:net'
import mqttPacket from 'mqtt-packet'
import { Redis } from 'ioredis'
import { startServerProcess, modesUnderTest, REDIS_BASE } from './helpers/server-process.ts'
import { connectDevice, errorsOf, inboxOf, type Device, type DeviceOptions } from './helpers/devices.ts'
import { apiFor } from './helpers/rest.ts'
import { token, uniqueUser } from './helpers/tokens.ts'
import { createClient, MemoryStorage, type MessageEvent } from '../client-sdk/src/index.ts'
import { redisKeys } from '../history/redis-group-keys.ts'

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

async function until (check: () => Promise<boolean> | boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const started = Date.now()
  while (!(await check())) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out: ${what}`)
    await sleep(20)
  }
}

/** A persistent session that stays connected and never acknowledges (PUBACK) what it is sent. */
async function stuckDevice (port: number, user: string, deviceId: string): Promise<{ seqs: number[], close: () => void }> {
  const socket = connectTcp(port, '127.0.0.1')
  const parser = mqttPacket.parser()
  const seqs: number[] = []
  const acks: Array<(cmd: string) => void> = []
  parser.on('packet', (packet) => {
    if (packet.cmd === 'publish') seqs.push(JSON.parse(String(packet.payload)).seq)
    else acks.shift()?.(packet.cmd)
  })
  socket.on('data', (data: Buffer) => parser.parse(data))
  const next = (): Promise<string> => new Promise((resolve) => acks.push(resolve))
  let answer = next()
  socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: false, keepalive: 30, clientId: `${user}:${deviceId}`, username: user, password: Buffer.from(token(user)) }))
  if (await answer !== 'connack') throw new Error('no CONNACK')
  answer = next()
  socket.write(mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: inboxOf(user), qos: 1 }] }))
  if (await answer !== 'suback') throw new Error('no SUBACK')
  return { seqs, close: () => socket.destroy() }
}

const seqs = (events: Array<Record<string, unknown>>): unknown[] => events.map((event) => event.seq)

for (const mode of modesUnderTest()) {
  t.test(`${mode}: persistent sessions per user`, async (t) => {
    // MAX_DEVICES_PER_USER may not exceed MAX_SESSIONS_PER_USER: every connected device keeps its session.
    const env = { MAX_SESSIONS_PER_USER: '3', MAX_DEVICES_PER_USER: '2' }
    const server = await startServerProcess({ mode, env: { ...env, WORKERS: '1' } })
    t.teardown(() => server.stop())
    // Redis mode: a second server on the same Redis, so that "connected" must be seen across processes.
    const other = mode === 'redis' ? await startServerProcess({ mode, env: { ...env, WORKERS: '1' } }) : server
    if (other !== server) t.teardown(() => other.stop())
    const alice = uniqueUser('alice')
    let sent = 0
    const sendTo = async (to: string): Promise<string> => {
      const id = `m${++sent}`
      const response = await apiFor(server.httpUrl, alice).post('/v1/messages', { to, id, body: id })
      if (response.status !== 201) throw new Error(`send answered ${response.status}`)
      return id
    }
    const device = (user: string, deviceId: string, options: Partial<DeviceOptions> = {}): Promise<Device> =>
      connectDevice({ url: server.mqttUrl, userId: user, deviceId, ...options })
    /** Waits until none of the user's devices is connected (the server has seen every disconnect). */
    const offline = (user: string): Promise<void> =>
      until(async () => (await apiFor(server.httpUrl, user).get(`/v1/presence/${user}`)).body.status === 'offline', `${user} offline`)
    /** One persistent session: subscribe (its cursor is created at the head), disconnect. */
    const session = async (user: string, deviceId: string): Promise<void> => {
      const d = await device(user, deviceId)
      await d.end()
      await offline(user)
    }

    t.test('five sessions one after another: the two furthest behind are evicted', async (t) => {
      const bob = uniqueUser('bob')
      const ids: string[] = []
      // Cursors d1 0, d2 1, d3 2; d4 (at 3) evicts d1, d5 (at 4) evicts d2. Head 5.
      for (const deviceId of ['d1', 'd2', 'd3', 'd4', 'd5']) {
        await session(bob, deviceId)
        ids.push(await sendTo(bob))
      }

      const d3 = await device(bob, 'd3', { subscribe: false })
      t.equal(d3.sessionPresent, true, 'a session within the bound is kept')
      t.same(seqs(await d3.waitForInbox(3)), [3, 4, 5], 'and gets its backlog')
      await d3.end()
      await offline(bob)

      const d1 = await device(bob, 'd1', { subscribe: false })
      t.equal(d1.sessionPresent, false, 'the evicted session is gone: no stored subscriptions were restored')
      await d1.client.subscribeAsync([inboxOf(bob), errorsOf(bob, 'd1')], { qos: 1 })
      const fresh = await sendTo(bob)
      const [first] = await d1.waitForInbox(1)
      t.match(first, { seq: 6, id: fresh }, 'subscribing again starts a new session at the head: no backlog')
      const synced = await apiFor(server.httpUrl, bob).syncAll(0)
      t.same(synced.map((event) => event.id), [...ids, fresh], 'GET /v1/sync gives what it missed')
      await d1.end()
      await offline(bob)

      const later = await sendTo(bob)
      const back = await device(bob, 'd1', { subscribe: false })
      t.equal(back.sessionPresent, true, 'the new session is a persistent session like any other')
      t.match((await back.waitForInbox(1))[0], { seq: 7, id: later }, 'with its backlog')
      await back.end()
      await offline(bob)

      const d2 = await device(bob, 'd2', { subscribe: false })
      t.equal(d2.sessionPresent, false, 'the second one behind was evicted too')
      await d2.end(true)
      await offline(bob)
    })

    t.test('a connected session is never evicted, whatever its cursor', async (t) => {
      const carol = uniqueUser('carol')
      // c1 stays connected (in Redis mode to another process) and never acknowledges: its cursor stays the lowest (0).
      const c1 = await stuckDevice(other.mqttPort, carol, 'c1')
      t.teardown(() => c1.close())
      /** With MAX_DEVICES_PER_USER 2 and c1 connected, a CONNACK 5 means the last disconnect is not seen yet. */
      const connectWhenRoom = async (deviceId: string, options: Partial<DeviceOptions> = {}): Promise<Device> => {
        const started = Date.now()
        for (;;) {
          try {
            return await device(carol, deviceId, options)
          } catch (error) {
            if ((error as { code?: number }).code !== 5 || Date.now() - started > 10_000) throw error
            await sleep(20)
          }
        }
      }
      await sendTo(carol)
      await until(() => c1.seqs.length === 1, 'c1 received m1 (and did not acknowledge it)')
      for (const deviceId of ['c2', 'c3']) {
        await (await connectWhenRoom(deviceId)).end()
        await sendTo(carol)
      }
      // c1 0 (connected), c2 1, c3 2: the fourth session evicts c2, not c1.
      await (await connectWhenRoom('c4')).end()

      const c2 = await connectWhenRoom('c2', { subscribe: false })
      t.equal(c2.sessionPresent, false, 'the one furthest behind among those not connected was evicted')
      await c2.end()
      const c3 = await connectWhenRoom('c3', { subscribe: false })
      t.equal(c3.sessionPresent, true, 'the others are kept')
      await c3.end()

      c1.close()
      const again = await connectWhenRoom('c1', { subscribe: false })
      t.teardown(() => again.end(true))
      t.equal(again.sessionPresent, true, 'the connected one kept its session')
      t.same(seqs(await again.waitForInbox(3)), [1, 2, 3], 'and gets everything after its cursor again')
      await again.end()
      await offline(carol)
    })

    if (mode === 'redis') {
      t.test('a restored session whose cursor is gone (the server stopped mid-eviction) gets a working inbox', async (t) => {
        const erin = uniqueUser('erin')
        await session(erin, 'e')
        await sendTo(erin)
        // What a process that died between dropping the cursor and removing the subscriptions leaves.
        const redis = new Redis(`${REDIS_BASE}/1`)
        t.teardown(() => redis.disconnect())
        t.equal(await redis.hdel(redisKeys(false).member(erin, 'cur'), 'e'), 1)
        const back = await device(erin, 'e', { subscribe: false })
        t.equal(back.sessionPresent, true, 'its subscriptions were still stored')
        const next = await sendTo(erin)
        t.match((await back.waitForInbox(1))[0], { seq: 2, id: next }, 'a new session from the head: the first event is not the next one, so the device syncs')
        await back.end()
        await offline(erin)
        const later = await sendTo(erin)
        const again = await device(erin, 'e', { subscribe: false })
        t.match((await again.waitForInbox(1))[0], { seq: 3, id: later }, 'and it is kept like any other')
        await again.end()
        await offline(erin)
      })
    }

    t.test('the SDK resumes a session that was evicted through /v1/sync', async (t) => {
      const dave = uniqueUser('dave')
      const storage = new MemoryStorage()
      const received: MessageEvent[] = []
      const start = async () => {
        const client = await createClient({ url: server.wsUrl, deviceId: 'app', getToken: async () => token(dave), storage, reconnect: { minDelayMs: 100, maxDelayMs: 1_000 } })
        client.on('message', (message) => received.push(message))
        client.on('error', () => {})
        return client
      }
      let app = await start()
      await sendTo(dave)
      await until(() => received.length === 1, 'the app received the first message')
      await app.stop()
      await offline(dave)
      // app's cursor 1; e1 2, e2 3: e3 evicts app.
      for (const deviceId of ['e1', 'e2', 'e3']) {
        await sendTo(dave)
        await session(dave, deviceId)
      }
      await sendTo(dave)
      const probe = await device(dave, 'app', { subscribe: false })
      t.equal(probe.sessionPresent, false, 'the app\'s session was evicted')
      await probe.end()
      await offline(dave)

      app = await start()
      t.teardown(() => app.stop())
      await until(() => received.length === 5, 'the app caught up')
      const live = await sendTo(dave)
      await until(() => received.length === 6, 'and goes on live')
      t.same(received.map((message) => message.seq), [1, 2, 3, 4, 5, 6], 'every message once, in order')
      t.equal(received.at(-1)!.id, live)
    })
  })
}
