// Limits: one user flooding is throttled with an error event (never a silent
// drop, and nothing of the excess is stored) while others go on; too many
// devices, too many CONNECTs from one address, too many REST requests.
import t from 'tap'
import { startServerProcess, flushRedisDb } from './helpers/server-process.ts'
import { connackRefusal, connectDevice } from './helpers/devices.ts'
import { uniqueUser } from './helpers/tokens.ts'
import { apiFor } from './helpers/rest.ts'

const REDIS_DB = 6

const refusedCode = (url: string, user: string, deviceId: string): Promise<number | undefined> =>
  connackRefusal({ url, userId: user, deviceId })

t.test('embedded: publish rate, devices per user, connect rate, REST rate', async (t) => {
  const server = await startServerProcess({
    mode: 'embedded',
    env: { PUBLISH_RATE: '5', PUBLISH_BURST: '5', MAX_DEVICES_PER_USER: '2', CONNECT_RATE: '1', CONNECT_BURST: '12', REST_RATE_PER_MINUTE: '4' }
  })
  t.teardown(() => server.stop())
  const [flooder, bob, carol] = [uniqueUser('flooder'), uniqueUser('bob'), uniqueUser('carol')]
  const receiver = await connectDevice({ url: server.mqttUrl, userId: bob, deviceId: 'phone' })
  const sender = await connectDevice({ url: server.mqttUrl, userId: flooder, deviceId: 'phone' })
  const calm = await connectDevice({ url: server.mqttUrl, userId: carol, deviceId: 'phone', subscribe: false })
  t.teardown(() => Promise.all([receiver, sender, calm].map((device) => device.end(true))))

  const floodStarted = Date.now()
  const flood = Promise.all(Array.from({ length: 20 }, (_, i) => sender.send(bob, { id: `f${i}`, body: i })))
  await calm.send(bob, { id: 'calm', body: 'still here' })
  await flood
  t.ok(Date.now() - floodStarted >= 1_000, 'the refusals (their PUBACKs) are held back 1 s: a flooder is slowed by its own connection')
  const errors = await sender.waitForErrors(14)
  t.ok(errors.every((event) => event.code === 'rate_limited' && (event.retryAfterMs as number) > 0 && typeof event.id === 'string'), 'each throttled publish is explained, with retryAfterMs and its id')
  // Every publish is answered, so what was stored is in bob's log: a message after it reaches his device after them.
  await calm.send(bob, { id: 'calm-after', body: 'after the flood' })
  await receiver.waitForMatching((event) => event.id === 'calm-after', 1)
  const stored = receiver.inbox.filter((event) => event.from === flooder).length
  t.equal(stored + sender.errors.length, 20, 'every publish is either stored or refused, none silently dropped')
  t.ok(stored >= 5 && stored <= 6, `the burst went through (${stored})`)
  t.ok(receiver.inbox.some((event) => event.id === 'calm'), 'another user is not throttled')

  const second = await connectDevice({ url: server.mqttUrl, userId: flooder, deviceId: 'laptop', subscribe: false })
  t.teardown(() => second.end(true))
  t.equal(await refusedCode(server.mqttUrl, flooder, 'tablet'), 5, 'a third device of one user is refused')
  t.equal(await refusedCode(server.mqttUrl, flooder, 'laptop'), undefined, 'reconnecting a connected device is not a new device')

  const codes: Array<number | undefined> = []
  // 6 CONNECTs so far and 16 more, against a burst of 12 plus 1 a second: refused unless this test took over 10 s so far
  // (with 8 more it failed whenever the flood above took 2 s, as it sometimes does on a loaded machine).
  for (let i = 0; i < 16; i++) codes.push(await refusedCode(server.mqttUrl, uniqueUser('burst'), 'd'))
  t.ok(codes.includes(3), `too many CONNECTs from one address get CONNACK 3 (${codes.join(',')})`)

  const api = apiFor(server.httpUrl, carol)
  const statuses: number[] = []
  for (let i = 0; i < 5; i++) statuses.push((await api.get('/v1/conversations')).status)
  t.same(statuses, [200, 200, 200, 200, 429], 'the fifth REST request in a minute is refused')
  const response = await fetch(`${server.httpUrl}/v1/conversations`, { headers: { authorization: `Bearer ${(await import('./helpers/tokens.ts')).token(carol)}` } })
  t.match(await response.json(), { error: 'rate_limited' })
  t.ok(Number(response.headers.get('retry-after')) > 0, 'with retry-after')
  t.equal((await fetch(`${server.httpUrl}/healthz`)).status, 200, 'health is not limited')
})

t.test('redis: the REST limit holds across processes', async (t) => {
  await flushRedisDb(REDIS_DB)
  const env = { REST_RATE_PER_MINUTE: '4', WORKERS: '1' }
  const nodeA = await startServerProcess({ mode: 'redis', redisDb: REDIS_DB, env })
  const nodeB = await startServerProcess({ mode: 'redis', redisDb: REDIS_DB, env })
  t.teardown(async () => { await nodeA.stop(); await nodeB.stop() })
  const user = uniqueUser('dave')
  const statuses: number[] = []
  for (let i = 0; i < 5; i++) statuses.push((await apiFor(i % 2 === 0 ? nodeA.httpUrl : nodeB.httpUrl, user).get('/v1/conversations')).status)
  t.same(statuses, [200, 200, 200, 200, 429])
})
