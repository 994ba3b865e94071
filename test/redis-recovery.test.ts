// Redis dies (kill -9) while messages flow, stays down long enough for a
// growing reconnect backoff to reach a second, and comes back on the same
// port. What must hold: while it is down, sends are refused at once (503,
// no PUBACK), not held; within 1 s of Redis answering PING, a REST send gets
// 201 and an MQTT publish its PUBACK; and live delivery between two server
// processes works again, over the log feed and over the bus (mqemitter-redis),
// both re-subscribed by ioredis after the reconnect. Two server processes on
// one Redis of this test's own, so killing it harms no one else.
import t from 'tap'
import mqtt from 'mqtt'
import { startServerProcess, freePort, tempDataDir } from './helpers/server-process.ts'
import { startRedisServer, waitForPing } from './helpers/redis-server.ts'
import { token, uniqueUser } from './helpers/tokens.ts'

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
const AOF = ['--appendonly', 'yes', '--appendfsync', 'always']
/** Long enough for ioredis' default backoff (50 ms more per attempt, up to 2 s) to reach 1 s. */
const OUTAGE_MS = 10_000
const RECOVERY_MS = 1_000

t.test('redis: after a kill -9 and restart, sends succeed within 1 s of Redis answering', async (t) => {
  const port = await freePort()
  const dir = tempDataDir()
  let redis = await startRedisServer(port, dir, AOF)
  t.teardown(() => redis.kill())
  // Alice sends 40 a second throughout: no publish limit, or her budget (counted during the outage too) runs out and the last send is refused.
  const env = { REDIS_URL: `redis://127.0.0.1:${port}/0`, WORKERS: '1', PUBLISH_RATE: '0' }
  const [a, b] = await Promise.all([startServerProcess({ mode: 'redis', env }), startServerProcess({ mode: 'redis', env })])
  t.teardown(() => a.kill())
  t.teardown(() => b.kill())

  const alice = uniqueUser('alice')
  const bob = uniqueUser('bob')
  const options = { clean: false, reconnectPeriod: 100, connectTimeout: 5_000, reconnectOnConnackError: true } as mqtt.IClientOptions
  // bob reads on server B, alice sends on server A: only the log feed (Redis pub/sub) links them.
  const receiver = mqtt.connect(b.mqttUrl, { ...options, clientId: `${bob}:phone`, username: bob, password: token(bob) })
  t.teardown(() => { receiver.end(true) })
  const received = new Set<string>()
  receiver.on('message', (_topic, payload) => { received.add(String((JSON.parse(payload.toString()) as { id?: string }).id)) })
  await new Promise<void>((resolve) => receiver.once('connect', () => resolve()))
  await receiver.subscribeAsync(`user/${bob}/inbox`, { qos: 1 })
  const sender = mqtt.connect(a.mqttUrl, { ...options, clientId: `${alice}:phone`, username: alice, password: token(alice) })
  t.teardown(() => { sender.end(true) })
  await new Promise<void>((resolve) => sender.once('connect', () => resolve()))
  const waitFor = async (id: string, ms: number): Promise<boolean> => {
    const until = Date.now() + ms
    while (!received.has(id) && Date.now() < until) await sleep(10)
    return received.has(id)
  }
  await sender.publishAsync(`user/${bob}/inbox`, JSON.stringify({ id: 'before', body: 0 }), { qos: 1 })
  t.ok(await waitFor('before', 5_000), 'before the outage, a message from A reaches bob on B')
  // alice watches the presence of carol (a contact: alice wrote to her), who connects only after the
  // outage, to B: B publishes it on the bus, and only A's bus subscription (mqemitter-redis) brings it.
  const carol = uniqueUser('carol')
  await sender.publishAsync(`user/${carol}/inbox`, JSON.stringify({ id: 'hello', body: 0 }), { qos: 1 })
  const presence: string[] = []
  sender.on('message', (topic, payload) => { if (topic === `presence/${carol}`) presence.push(String((JSON.parse(payload.toString()) as { status?: string }).status)) })
  await sender.subscribeAsync(`presence/${carol}`, { qos: 0 })

  // Sends all through the outage: a REST send and an MQTT publish every 50 ms,
  // each issued whatever the earlier ones are still doing.
  let stop = false
  let n = 0
  const rest: Array<{ sent: number, answered: number, status: number, error?: string }> = []
  const pubacks: number[] = []
  const sending = (async () => {
    while (!stop) {
      const sent = Date.now()
      fetch(`${a.httpUrl}/v1/messages`, { method: 'POST', headers: { authorization: `Bearer ${token(alice)}`, 'content-type': 'application/json' }, body: JSON.stringify({ to: bob, id: `rest-${n++}`, body: 1 }) })
        .then(async (response) => { rest.push({ sent, answered: Date.now(), status: response.status, error: (await response.json() as { error?: string }).error }) }, () => {})
      // mqtt.js keeps a QoS 1 publish and sends it again on reconnect until it is acknowledged.
      sender.publishAsync(`user/${bob}/inbox`, JSON.stringify({ id: `mqtt-${n++}`, body: 2 }), { qos: 1 }).then(() => { pubacks.push(Date.now()) }, () => {})
      await sleep(50)
    }
  })()
  await sleep(300)
  await redis.kill()
  const killedAt = Date.now()
  await sleep(OUTAGE_MS)
  // Restart just after a send was refused: for a backoff that grows, the worst moment.
  const refusedBefore = rest.length
  const refusedBy = Date.now() + 10_000
  while (!rest.slice(refusedBefore).some((answer) => answer.status === 503) && Date.now() < refusedBy) await sleep(5)
  const restartAt = Date.now()
  const down = rest.filter((answer) => answer.sent > killedAt + 1_000 && answer.sent < restartAt - RECOVERY_MS)
  t.ok(down.length > 0 && down.every((answer) => answer.status === 503 && answer.error === 'storage_unavailable'), `while Redis is down, every REST send is refused with 503 storage_unavailable (${down.length} sends)`)
  const slowest = Math.max(...down.map((answer) => answer.answered - answer.sent))
  t.ok(slowest <= RECOVERY_MS, `and answered within ${RECOVERY_MS} ms, not held until Redis returns (slowest: ${slowest} ms)`)
  t.equal(pubacks.filter((at) => at > killedAt + 1_000).length, 0, 'no MQTT publish is acknowledged while Redis is down')

  redis = await startRedisServer(port, dir, AOF)
  const answering = await waitForPing(port, 5_000)
  const deadline = answering + 10_000
  const succeeded = (): boolean => rest.some((answer) => answer.status === 201 && answer.answered >= answering) && pubacks.some((at) => at >= answering)
  while (!succeeded() && Date.now() < deadline) await sleep(10)
  stop = true
  await sending
  const firstRest = rest.find((answer) => answer.status === 201 && answer.answered >= answering)?.answered
  const firstPuback = pubacks.find((at) => at >= answering)
  t.ok(firstRest !== undefined && firstRest - answering <= RECOVERY_MS, `a REST send succeeds within ${RECOVERY_MS} ms of Redis answering PING (after ${firstRest === undefined ? 'never' : `${firstRest - answering} ms`})`)
  t.ok(firstPuback !== undefined && firstPuback - answering <= RECOVERY_MS, `an MQTT publish is acknowledged within ${RECOVERY_MS} ms of Redis answering PING (after ${firstPuback === undefined ? 'never' : `${firstPuback - answering} ms`})`)

  // Live delivery across processes again: A's notification reaches B over the re-subscribed feed.
  while (!receiver.connected) await sleep(10)
  await sleep(200)
  await sender.publishAsync(`user/${bob}/inbox`, JSON.stringify({ id: 'after', body: 3 }), { qos: 1 })
  t.ok(await waitFor('after', 5_000), 'after the outage, a message from A reaches bob on B live')
  // And the bus again carries what B publishes to A's subscribers.
  const carolsPhone = mqtt.connect(b.mqttUrl, { clientId: `${carol}:phone`, username: carol, password: token(carol), reconnectPeriod: 0 })
  t.teardown(() => { carolsPhone.end(true) })
  const until = Date.now() + 5_000
  while (!presence.includes('online') && Date.now() < until) await sleep(10)
  t.ok(presence.includes('online'), 'carol coming online on B reaches alice on A')
  t.equal(a.child.exitCode, null, 'server A is still running')
  t.equal(b.child.exitCode, null, 'server B is still running')
})
