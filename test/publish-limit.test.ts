// The per-user publish limit is on by default (issue 19, case 4): one account
// cannot fill another's log without bound. MQTT publishes and REST sends
// spend one budget; users in PUBLISH_RATE_EXEMPT are not counted; the SDK
// sends a backlog larger than the burst completely and in order; and the
// limiter's own memory is bounded.
import t from 'tap'
import { freePort, modesUnderTest, startServerProcess, tempDataDir } from './helpers/server-process.ts'
import { connectDevice } from './helpers/devices.ts'
import { apiFor } from './helpers/rest.ts'
import { token, uniqueUser } from './helpers/tokens.ts'
import { TokenBuckets } from '../broker/rate-limits.ts'
import { createClient, type ChatClient, type MessageEvent } from '../client-sdk/src/index.ts'

// The defaults (config/config.ts), which the servers below do not set.
const RATE = 20
const BURST = 200
const MQTT_SENDS = 2_500
const REST_FIRST = 150
const REST_DURING = 350
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** `count` REST sends from `api`, `concurrency` at a time; resolves with each answer's status and retry-after. */
async function restSends (api: ReturnType<typeof apiFor>, to: string, prefix: string, count: number, concurrency = 10): Promise<Array<{ id: string, status: number, error?: string }>> {
  const answers: Array<{ id: string, status: number, error?: string }> = []
  let next = 0
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < count) {
      const id = `${prefix}-${next++}`
      const answer = await api.post('/v1/messages', { to, id, body: id })
      answers.push({ id, status: answer.status, error: answer.body?.error })
    }
  }))
  return answers
}

/** Ids of the messages in `user`'s log. */
async function storedIds (httpUrl: string, user: string): Promise<string[]> {
  return (await apiFor(httpUrl, user).syncAll(0, 1000)).filter((event) => event.type === 'message').map((event) => event.id as string)
}

for (const mode of modesUnderTest()) {
  t.test(`${mode}: with the default config, a burst of 3,000 sends over MQTT and REST is cut at the burst; an exempted user's all go through`, async (t) => {
    const bulk = uniqueUser('bulk')
    // WORKERS=1: the budget is per server process, and the test's REST and MQTT must reach the same one.
    const server = await startServerProcess({ mode, env: { PUBLISH_RATE_EXEMPT: `someone-else, ${bulk}`, WORKERS: '1' } })
    t.teardown(() => server.stop())
    const [flooder, victim, other] = [uniqueUser('flooder'), uniqueUser('victim'), uniqueUser('other')]
    const api = apiFor(server.httpUrl, flooder)

    const started = Date.now()
    const first = await restSends(api, victim, 'r1', REST_FIRST)
    t.ok(first.every((answer) => answer.status === 201), `the first ${REST_FIRST} REST sends are within the burst`)

    const device = await connectDevice({ url: server.mqttUrl, userId: flooder, deviceId: 'phone' })
    t.teardown(() => device.end(true))
    // Everything at once: 2,500 QoS 1 publishes in flight, and REST sends alongside.
    const [, during] = await Promise.all([
      Promise.all(Array.from({ length: MQTT_SENDS }, (_, i) => device.send(victim, { id: `m-${i}`, body: i }))),
      restSends(api, victim, 'r2', REST_DURING)
    ])
    const elapsed = (Date.now() - started) / 1000

    const stored = new Set(await storedIds(server.httpUrl, victim))
    const storedMqtt = [...stored].filter((id) => id.startsWith('m-')).length
    const refusedMqtt = await device.waitForErrors(MQTT_SENDS - storedMqtt)
    const refusedIds = new Set(refusedMqtt.map((event) => event.id as string))
    t.ok(refusedMqtt.every((event) => event.code === 'rate_limited' && (event.retryAfterMs as number) > 0), 'each refused publish gets rate_limited with retryAfterMs')
    t.equal(refusedIds.size, refusedMqtt.length, 'one refusal per refused publish')
    t.ok([...refusedIds].every((id) => !stored.has(id)), 'a refused publish is not stored')
    t.equal(storedMqtt + refusedIds.size, MQTT_SENDS, 'every MQTT publish is either stored or refused')

    const refusedRest = during.filter((answer) => answer.status === 429)
    t.ok(during.every((answer) => answer.status === 201 || (answer.status === 429 && answer.error === 'rate_limited')), 'every REST send is 201 or 429 rate_limited')
    t.ok(refusedRest.length > 0, `REST sends are refused too (${refusedRest.length} of ${REST_DURING})`)
    t.ok(refusedRest.every((answer) => !stored.has(answer.id)) && during.filter((answer) => answer.status === 201).every((answer) => stored.has(answer.id)), 'a 201 is stored, a 429 is not')
    const response = await fetch(`${server.httpUrl}/v1/messages`, { method: 'POST', headers: { authorization: `Bearer ${token(flooder)}`, 'content-type': 'application/json' }, body: JSON.stringify({ to: victim, id: 'one-more', body: 'x' }) })
    if (response.status === 429) t.ok(Number(response.headers.get('retry-after')) >= 1, 'a 429 says when to retry (retry-after)')
    else t.equal(response.status, 201, 'the next send: 201 or 429')

    const total = stored.size - (stored.has('one-more') ? 1 : 0)
    const bound = BURST + RATE * elapsed + 1
    t.ok(total >= BURST && total <= bound, `stored: ${total} of ${REST_FIRST + MQTT_SENDS + REST_DURING}, between the burst (${BURST}) and the burst plus ${elapsed.toFixed(1)} s of refill (${bound.toFixed(0)})`)
    // Had each door its own budget, MQTT alone would have stored a whole burst.
    t.ok(storedMqtt <= BURST - REST_FIRST + RATE * elapsed + 1, `MQTT stored ${storedMqtt}: what the REST sends left of one budget`)

    // Another user is not limited by the flooder.
    const calm = await connectDevice({ url: server.mqttUrl, userId: other, deviceId: 'phone', subscribe: false })
    t.teardown(() => calm.end(true))
    await calm.send(victim, { id: 'calm', body: 'hello' })
    t.ok((await storedIds(server.httpUrl, victim)).includes('calm'), 'another user\'s message is stored')

    // An exempted user: all 3,000 stored, no refusal.
    const bulkDevice = await connectDevice({ url: server.mqttUrl, userId: bulk, deviceId: 'feeder' })
    t.teardown(() => bulkDevice.end(true))
    const bulkVictim = uniqueUser('subscriber')
    const [, bulkRest] = await Promise.all([
      Promise.all(Array.from({ length: MQTT_SENDS }, (_, i) => bulkDevice.send(bulkVictim, { id: `m-${i}`, body: i }))),
      restSends(apiFor(server.httpUrl, bulk), bulkVictim, 'r', REST_FIRST + REST_DURING)
    ])
    t.ok(bulkRest.every((answer) => answer.status === 201), 'every REST send of the exempted user: 201')
    // A later message proves no refusal is still on its way for the earlier ones.
    await bulkDevice.send(bulkVictim, { id: 'last', body: 'last' })
    t.equal((await storedIds(server.httpUrl, bulkVictim)).length, MQTT_SENDS + REST_FIRST + REST_DURING + 1, 'all 3,000 (and the last) are stored')
    t.equal(bulkDevice.errors.length, 0, 'no error event')
  })

  t.test(`${mode}: the SDK sends a backlog larger than the burst: all of it, in order`, async (t) => {
    const ports = { mqttPort: await freePort(), httpPort: await freePort() }
    const [alice, bob] = [uniqueUser('alice'), uniqueUser('bob')]
    const clients: ChatClient[] = []
    t.teardown(async () => { for (const client of clients) await client.stop() })
    const sdk = async (user: string): Promise<{ client: ChatClient, messages: MessageEvent[] }> => {
      const client = await createClient({ url: `ws://127.0.0.1:${ports.httpPort}/mqtt`, deviceId: 'app', getToken: async () => token(user), reconnect: { minDelayMs: 100, maxDelayMs: 300 } })
      const messages: MessageEvent[] = []
      client.on('message', (message) => messages.push(message))
      client.on('error', () => {})
      clients.push(client)
      return { client, messages }
    }
    // Offline: 150 sends wait in the outbox. Then the server starts, with a burst of 50.
    const sender = await sdk(alice)
    const COUNT = 150
    const sends = Array.from({ length: COUNT }, (_, i) => sender.client.send(bob, i))
    const server = await startServerProcess({ mode, dataDir: tempDataDir(), env: { PUBLISH_RATE: '50', PUBLISH_BURST: '50', WORKERS: '1' }, ...ports })
    t.teardown(() => server.stop())
    const receiver = await sdk(bob)
    const stamped = await Promise.all(sends)
    t.same(stamped.map((message) => message.body), Array.from({ length: COUNT }, (_, i) => i), 'every send resolves with its stored message')
    while (receiver.messages.length < COUNT) await sleep(20)
    t.same(receiver.messages.map((message) => message.body), Array.from({ length: COUNT }, (_, i) => i), 'the receiver gets all of them, in send order')
    t.same(receiver.messages.map((message) => message.seq), Array.from({ length: COUNT }, (_, i) => i + 1), 'seq 1..150')
  })
}

// The refusal window is the broker's, the same in both modes: one mode is enough.
t.test('after a refusal for the rate, the connection\'s publishes are refused with it until 2 s after its last refusal is answered, not 2 s after the first', async (t) => {
  // One publish a second, a burst of one: the first is stored, the next refused.
  const server = await startServerProcess({ mode: 'embedded', dataDir: tempDataDir(), env: { PUBLISH_RATE: '1', PUBLISH_BURST: '1', WORKERS: '1' } })
  t.teardown(() => server.stop())
  const [sender, peer] = [uniqueUser('sender'), uniqueUser('peer')]
  const device = await connectDevice({ url: server.mqttUrl, userId: sender, deviceId: 'phone' })
  t.teardown(() => device.end(true))
  await device.send(peer, { id: 'm0', body: 0 })
  const refusedAt = Date.now()
  const sends = [device.send(peer, { id: 'm1', body: 1 })]
  // Its refusal is held back 1 s, then answered: the window lasts 2 s from then.
  await device.waitForErrors(1)
  const at = async (ms: number): Promise<void> => sleep(refusedAt + ms - Date.now())
  await at(1_500)
  sends.push(device.send(peer, { id: 'm2', body: 2 })) // held back until about 2.5 s, answered then
  // Past 2 s after the first refusal (the budget has a token again), but
  // within 2 s of its answer: had m3 been stored, it would come before m1.
  await at(2_300)
  sends.push(device.send(peer, { id: 'm3', body: 3 }))
  // Past 2 s after m1's answer, within 2 s of m2's.
  await at(3_600)
  sends.push(device.send(peer, { id: 'm4', body: 4 }))
  await Promise.all(sends)
  const refusals = await device.waitForErrors(4)
  t.same(refusals.map((event) => [event.id, event.code]), ['m1', 'm2', 'm3', 'm4'].map((id) => [id, 'rate_limited']), 'each is refused for the rate')
  t.same(await storedIds(server.httpUrl, peer), ['m0'], 'none of them stored ahead of m1')
  // Re-sent in order, a token apart (the first re-send closes the window), they are stored in that order.
  for (const id of ['m1', 'm2', 'm3', 'm4']) {
    await sleep(1_100)
    await device.send(peer, { id, body: Number(id.slice(1)) })
  }
  t.same(await storedIds(server.httpUrl, peer), ['m0', 'm1', 'm2', 'm3', 'm4'], 'stored in send order')
})

t.test('the limiter keeps a bounded number of buckets', async (t) => {
  // 10 per second, bursts of 5: an untouched bucket is full again after 500 ms.
  const buckets = new TokenBuckets({ perSecond: 10, burst: 5 }, 3)
  for (let i = 0; i < 5; i++) t.equal(buckets.take('a', 0), 0)
  t.ok(buckets.take('a', 0) > 0, 'the sixth publish at once waits')
  buckets.take('b', 100)
  t.equal(buckets.size, 2)
  buckets.take('c', 600)
  t.equal(buckets.size, 1, 'buckets untouched for burst / rate seconds are forgotten (a full one is the same as none)')
  for (let i = 0; i < 5; i++) t.equal(buckets.take('a', 600), 0, 'a forgotten key has its whole burst, as it would have had')
  t.ok(buckets.take('a', 600) > 0)
  buckets.take('d', 700)
  buckets.take('c', 700)
  buckets.take('e', 700)
  t.equal(buckets.size, 3, 'never more than the cap')
  t.equal(buckets.take('a', 700), 0, 'beyond the cap, the least recently used key (a) was forgotten: it starts from a full burst')
  t.equal(buckets.size, 3)
  const off = new TokenBuckets({ perSecond: 0, burst: 5 })
  for (let i = 0; i < 100; i++) off.take(`k${i}`, 0)
  t.equal(off.size, 0, 'a limit turned off keeps nothing')
})
