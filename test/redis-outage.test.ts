// Redis dies (kill -9) in the middle of a stream of messages and comes back.
// What must hold: the server stays up; a send during the outage gets no
// PUBACK (the client keeps it and sends it again); every acknowledged
// message is in the log and reaches the receiver; and delivery resumes
// without restarting the server. A Redis of this test's own, with
// `appendfsync always`, on a spare port, so killing it harms no one else.
import t from 'tap'
import mqtt from 'mqtt'
import { startServerProcess, freePort, tempDataDir } from './helpers/server-process.ts'
import { startRedisServer } from './helpers/redis-server.ts'
import { connectDevice } from './helpers/devices.ts'
import { token, uniqueUser } from './helpers/tokens.ts'
import { apiFor } from './helpers/rest.ts'

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

const AOF = ['--appendonly', 'yes', '--appendfsync', 'always']

t.test('redis: kill -9 of Redis mid-stream loses no acknowledged message and recovers', async (t) => {
  const port = await freePort()
  const dir = tempDataDir()
  let redis = await startRedisServer(port, dir, AOF)
  t.teardown(() => redis.kill())
  const server = await startServerProcess({ mode: 'redis', env: { REDIS_URL: `redis://127.0.0.1:${port}/0`, WORKERS: '1', PUBLISH_RATE: '0' } }) // 2,000 from one sender: no publish limit
  t.teardown(() => server.kill())

  const alice = uniqueUser('alice')
  const bob = uniqueUser('bob')
  const receiver = await connectDevice({ url: server.mqttUrl, userId: bob, deviceId: 'phone' })
  await receiver.end()

  // A sender as an app would be: persistent session, reconnecting (also after CONNACK 3,
  // "server unavailable, retry later"), resending what was not acknowledged.
  const sender = mqtt.connect(server.mqttUrl, { clientId: `${alice}:phone`, username: alice, password: token(alice), clean: false, reconnectPeriod: 300, connectTimeout: 5_000, reconnectOnConnackError: true } as mqtt.IClientOptions)
  t.teardown(() => { sender.end(true) })
  await new Promise<void>((resolve) => sender.once('connect', () => resolve()))
  const TOTAL = 2000
  const acknowledged = new Set<string>()
  const sending = (async () => {
    for (let i = 0; i < TOTAL; i += 20) {
      await Promise.all(Array.from({ length: 20 }, (_, j) => {
        const id = `o${i + j}`
        return sender.publishAsync(`user/${bob}/inbox`, JSON.stringify({ id, body: i + j }), { qos: 1 }).then(() => { acknowledged.add(id) })
      }))
    }
  })()

  while (acknowledged.size < 500) await sleep(5)
  await redis.kill()
  const duringOutage = acknowledged.size
  await sleep(2_000)
  t.ok(acknowledged.size - duringOutage <= 20, `no PUBACK while Redis is down (${acknowledged.size - duringOutage} landed as it died)`)
  t.equal(server.child.exitCode, null, 'the server is still running')
  const during = await fetch(`${server.httpUrl}/v1/messages`, { method: 'POST', headers: { authorization: `Bearer ${token(alice)}`, 'content-type': 'application/json' }, body: JSON.stringify({ to: bob, id: 'rest-outage', body: 1 }) })
  t.equal(during.status, 503, 'a REST send during the outage gets 503')
  t.match(await during.json(), { error: 'storage_unavailable' })
  t.equal(during.headers.get('retry-after'), '5', 'with retry-after')
  t.equal((await fetch(`${server.httpUrl}/readyz`)).status, 503, 'and /readyz says not ready')
  redis = await startRedisServer(port, dir, AOF)

  const giveUp = new Promise<void>((resolve) => setTimeout(resolve, 60_000).unref())
  await Promise.race([sending, giveUp])
  t.equal(acknowledged.size, TOTAL, 'every message was acknowledged in the end')

  // Every acknowledged message is in bob's log, once.
  const events = await apiFor(server.httpUrl, bob).syncAll(0, 1000)
  const ids = events.map((event) => event.id as string)
  t.equal(new Set(ids).size, ids.length, 'each message once in the log')
  t.same([...new Set(ids)].sort(), [...acknowledged].sort(), 'the log holds exactly the acknowledged messages')

  // And the device gets all of it on its next connection.
  const back = await connectDevice({ url: server.mqttUrl, userId: bob, deviceId: 'phone', subscribe: false })
  t.teardown(() => back.end())
  await back.waitForInbox(TOTAL, 30_000)
  t.equal(new Set(back.inbox.map((event) => event.id)).size, TOTAL, 'the receiver gets every message after the outage')
})
