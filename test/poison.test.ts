// Poison messages: a payload every part of the server can parse but that
// nests deeper than MAX_JSON_DEPTH (64). Over MQTT it must be PUBACKed with
// an `invalid_message` error event, never drop the connection (a QoS 1
// client would resend it forever, and everything behind it would wait);
// over REST it must be a 400 naming the problem, never a 500. Both modes,
// 1:1 and groups; a body at the limit still goes through untouched.
import t from 'tap'
import { Redis } from 'ioredis'
import { startServerProcess, modesUnderTest, REDIS_BASE } from './helpers/server-process.ts'
import { connectDevice, inboxOf, type Device } from './helpers/devices.ts'
import { token, uniqueUser } from './helpers/tokens.ts'
import { apiFor } from './helpers/rest.ts'
import { redisKeys } from '../history/redis-group-keys.ts'

const nestedArrays = (depth: number): string => '['.repeat(depth) + ']'.repeat(depth)
const nestedObjects = (depth: number): string => '{"a":'.repeat(depth) + '1' + '}'.repeat(depth)
/** A message payload whose body nests `depth` levels (the payload object is one more). */
const payload = (id: string, body: string): string => `{"id":"${id}","body":${body}}`

/** Publishes at QoS 1 and says what happened first: the PUBACK, the connection closing, or nothing for 10 s. */
function publishOutcome (device: Device, topic: string, body: string): Promise<'acked' | 'closed' | 'no answer'> {
  return new Promise((resolve) => {
    const onClose = (): void => resolve('closed')
    setTimeout(() => resolve('no answer'), 10_000).unref()
    device.client.once('close', onClose)
    device.client.publishAsync(topic, body, { qos: 1 }).then(() => {
      device.client.removeListener('close', onClose)
      resolve('acked')
    }, () => resolve('closed'))
  })
}

for (const mode of modesUnderTest()) {
  t.test(`${mode}: poison messages get an answer`, async (t) => {
    const server = await startServerProcess({ mode, redisDb: 1 })
    t.teardown(() => server.stop())
    const [alice, bob, carol] = [uniqueUser('alice'), uniqueUser('bob'), uniqueUser('carol')]
    const receiver = await connectDevice({ url: server.mqttUrl, userId: bob, deviceId: 'phone' })
    const sender = await connectDevice({ url: server.mqttUrl, userId: alice, deviceId: 'phone' })
    t.teardown(() => Promise.all([receiver.end(true), sender.end(true)]))

    t.test('MQTT 1:1: PUBACK and invalid_message, then the device goes on', async (t) => {
      const deep = [['arrays 6,000', 'p1', nestedArrays(6_000)], ['objects 6,000', 'p2', nestedObjects(6_000)], ['arrays 64', 'p3', nestedArrays(64)]] as const
      for (const [what, id, body] of deep) {
        t.equal(await publishOutcome(sender, inboxOf(bob), payload(id, body)), 'acked', `${what} levels: PUBACKed, the connection stays`)
      }
      const errors = await sender.waitForErrors(3)
      t.match(errors, deep.map(([, id]) => ({ code: 'invalid_message', id, topic: inboxOf(bob), message: /nested deeper than 64 levels/ })))
      // The body at the limit: the payload is 64 levels with it, so it is stored and delivered as sent.
      const atLimit = nestedArrays(63)
      await sender.sendRaw(inboxOf(bob), payload('at-limit', atLimit))
      await sender.send(bob, { id: 'after', body: 'still flowing' })
      const [first, second] = await receiver.waitForInbox(2)
      t.match(first, { id: 'at-limit' }, 'the first thing bob receives is the message at the limit: none of the refused ones')
      t.equal(JSON.stringify(first!.body), atLimit, 'delivered exactly as sent')
      t.match(second, { id: 'after', body: 'still flowing' }, 'what the device sends next is delivered')
      t.equal(sender.errors.length, 3, 'and got no error event')
    })

    t.test('MQTT group: PUBACK and invalid_message', async (t) => {
      const group = (await apiFor(server.httpUrl, carol).post('/v1/groups', { name: 'Deep', members: [alice] })).body.group.id as string
      t.equal(await publishOutcome(sender, `group/${group}`, payload('g-deep', nestedArrays(6_000))), 'acked', 'PUBACKed')
      await sender.sendRaw(`group/${group}`, payload('g-ok', '"fine"'))
      const events = (await apiFor(server.httpUrl, carol).get(`/v1/groups/${group}/messages`)).body.events as Array<{ id?: string }>
      t.same(events.filter((event) => event.id !== undefined).map((event) => event.id), ['g-ok'], 'only the message after it is stored')
      t.match(sender.errors.at(-1), { code: 'invalid_message', id: 'g-deep', topic: `group/${group}` })
    })

    t.test('REST: every deep body is a 400 naming the problem', async (t) => {
      const auth = { authorization: `Bearer ${token(alice)}`, 'content-type': 'application/json' }
      const requests: Array<[string, string, string]> = [
        ['POST', '/v1/messages', `{"to":"${bob}","id":"r1","body":${nestedArrays(6_000)}}`],
        ['POST', '/v1/messages', `{"to":"${bob}","id":"r2","body":${nestedArrays(30_000)}}`],
        ['POST', '/v1/messages', `{"to":"${bob}","id":"r3","body":${nestedObjects(6_000)}}`],
        ['POST', '/v1/messages', `{"to":"${bob}","id":"r4","body":${nestedObjects(20_000)}}`],
        ['POST', '/v1/messages', nestedArrays(30_000)],
        ['POST', '/v1/groups', `{"name":"x","meta":${nestedObjects(6_000)}}`],
        ['PUT', '/v1/keys', `{"publicKey":${nestedArrays(6_000)}}`],
        ['POST', `/v1/conversations/${bob}/read`, `{"seq":${nestedArrays(6_000)}}`]
      ]
      for (const [method, path, body] of requests) {
        const response = await fetch(server.httpUrl + path, { method, headers: auth, body })
        t.match({ status: response.status, body: await response.json() }, { status: 400, body: { error: 'invalid_request', field: 'body', message: /nested deeper than 64 levels/ } }, `${method} ${path} with ${body.slice(0, 30)}…`)
      }
      const sent = await apiFor(server.httpUrl, alice).post('/v1/messages', { to: bob, id: 'r-ok', body: JSON.parse(nestedArrays(63)) })
      t.equal(sent.status, 201, 'a body at the limit (the request object is one more level) is stored')
    })
    t.test('a "__proto__" key is refused over MQTT as over REST', async (t) => {
      const proto = await connectDevice({ url: server.mqttUrl, userId: uniqueUser('proto'), deviceId: 'phone' })
      t.teardown(() => proto.end(true))
      t.equal(await publishOutcome(proto, inboxOf(bob), payload('pp', '{"__proto__":{"polluted":1}}')), 'acked', 'PUBACKed')
      t.match((await proto.waitForErrors(1))[0], { code: 'invalid_message', id: 'pp', message: /__proto__/ })
      const rest = await fetch(server.httpUrl + '/v1/messages', { method: 'POST', headers: { authorization: `Bearer ${token(alice)}`, 'content-type': 'application/json' }, body: `{"to":"${bob}","id":"pp","body":{"__proto__":{"polluted":1}}}` })
      t.equal(rest.status, 400, 'REST: 400')
    })
    if (mode === 'redis') {
      t.test('a store failure that would repeat on every resend is answered too (internal_error), not a dropped connection', async (t) => {
        // Real Redis state that makes the append script fail every time: the sender's seq counter is not a number.
        const redis = new Redis(`${REDIS_BASE}/1`)
        t.teardown(() => redis.quit())
        const dave = uniqueUser('dave')
        const unlucky = await connectDevice({ url: server.mqttUrl, userId: dave, deviceId: 'phone' })
        t.teardown(() => unlucky.end(true))
        await redis.set(redisKeys(false).member(dave, 'seq'), 'not-a-number')
        t.equal(await publishOutcome(unlucky, inboxOf(bob), payload('broken', '"x"')), 'acked', 'PUBACKed')
        t.match((await unlucky.waitForErrors(1))[0], { code: 'internal_error', id: 'broken', topic: inboxOf(bob) })
        await redis.del(redisKeys(false).member(dave, 'seq'))
        await unlucky.send(bob, { id: 'mended', body: 'after the fix' })
        t.match(await receiver.waitForMatching((event) => event.from === dave, 1), [{ id: 'mended' }], 'the device was never stuck: what it sends next is stored')
      })
    }
    t.equal(server.child.exitCode, null, 'the server is up')
  })
}
