// The message contract over MQTT: stamping, sender authenticity, bad input
// answered with error events, in both storage modes and both transports.
import t from 'tap'
import { startServerProcess, flushRedisDb, modesUnderTest } from './helpers/server-process.ts'
import { connectDevice, errorsOf } from './helpers/devices.ts'
import { uniqueUser } from './helpers/tokens.ts'

await flushRedisDb(2)

for (const mode of modesUnderTest()) {
  t.test(`${mode} mode`, async (t) => {
    const server = await startServerProcess({ mode, redisDb: 2, env: { MAX_PAYLOAD_BYTES: '4096' } })
    t.teardown(() => server.stop())

    for (const transport of ['tcp', 'websocket'] as const) {
      const url = transport === 'tcp' ? server.mqttUrl : server.wsUrl

      t.test(`${transport}: a message reaches every device of the recipient, stamped by the server`, async (t) => {
        const alice = uniqueUser('alice')
        const bob = uniqueUser('bob')
        const sender = await connectDevice({ url, userId: alice, deviceId: 'phone' })
        const bobPhone = await connectDevice({ url, userId: bob, deviceId: 'phone' })
        const bobLaptop = await connectDevice({ url, userId: bob, deviceId: 'laptop' })
        t.teardown(async () => { await sender.end(); await bobPhone.end(); await bobLaptop.end() })

        const before = Date.now()
        // `from` and `ts` in the payload are claims; the server replaces them.
        await sender.send(bob, { id: 'm1', body: 'hello', from: 'mallory', ts: 1 })
        for (const device of [bobPhone, bobLaptop]) {
          const [message] = await device.waitForInbox(1)
          t.equal(message!.id, 'm1')
          t.equal(message!.body, 'hello')
          t.equal(message!.from, alice, 'from is the authenticated sender')
          t.equal(message!.to, bob)
          t.equal(message!.type, 'message')
          t.ok((message!.ts as number) >= before && (message!.ts as number) <= Date.now(), 'ts is server time')
        }
        // JSON bodies pass through untouched.
        await sender.send(bob, { id: 'm2', body: { ciphertext: 'AAEC', nonce: 'x' } })
        const messages = await bobPhone.waitForInbox(2)
        t.same(messages[1]!.body, { ciphertext: 'AAEC', nonce: 'x' })
        t.same(messages.map((m) => m.seq), [1, 2], 'each carries the recipient\'s seq')
        // The sender's devices get their copies, numbered in the sender's log.
        // (Delivery receipts share that log, so only m1's seq is certain.)
        const copies = await sender.waitForMatching((m) => m.type === 'message', 2)
        t.same(copies.map((m) => [m.id, m.from, m.to]), [['m1', alice, bob], ['m2', alice, bob]])
        t.equal(copies[0]!.seq, 1)
        t.ok((copies[1]!.seq as number) > 1)
      })
    }

    t.test('bad input gets an error event and is not delivered; the sender stays connected', async (t) => {
      const alice = uniqueUser('alice')
      const bob = uniqueUser('bob')
      const sender = await connectDevice({ url: server.mqttUrl, userId: alice, deviceId: 'phone' })
      const recipient = await connectDevice({ url: server.mqttUrl, userId: bob, deviceId: 'phone' })
      t.teardown(async () => { await sender.end(); await recipient.end() })

      const cases: Array<[string, string, string | Buffer, string, string | undefined]> = [
        ['not JSON', `user/${bob}/inbox`, 'hello there', 'invalid_json', undefined],
        ['a JSON array', `user/${bob}/inbox`, '[1,2]', 'invalid_message', undefined],
        ['no id', `user/${bob}/inbox`, JSON.stringify({ body: 'x' }), 'invalid_message', undefined],
        ['empty id', `user/${bob}/inbox`, JSON.stringify({ id: '', body: 'x' }), 'invalid_message', undefined],
        ['no body', `user/${bob}/inbox`, JSON.stringify({ id: 'b1' }), 'invalid_message', 'b1'],
        ['too large', `user/${bob}/inbox`, JSON.stringify({ id: 'big', body: 'x'.repeat(5000) }), 'payload_too_large', undefined],
        ['a topic that is not an inbox', `user/${bob}/device/phone/errors`, JSON.stringify({ id: 'e1', body: 'x' }), 'forbidden_topic', undefined],
        ['a made-up topic', 'anything/else', JSON.stringify({ id: 'e2', body: 'x' }), 'forbidden_topic', undefined],
        ['an invalid recipient', 'user/a:b/inbox', JSON.stringify({ id: 'e3', body: 'x' }), 'unknown_recipient', undefined]
      ]
      for (const [index, [name, topic, payload, code, id]] of cases.entries()) {
        await sender.sendRaw(topic, payload)
        const errors = await sender.waitForErrors(index + 1)
        const event = errors[index]!
        t.equal(event.type, 'error', `${name}: error event`)
        t.equal(event.code, code, `${name}: code ${code}`)
        t.equal(event.topic, topic, `${name}: names the topic`)
        t.type(event.message, 'string')
        if (id !== undefined) t.equal(event.id, id, `${name}: names the message id`)
      }
      // A good message after all that still flows, and is the only delivery.
      // (From the same connection, after them: anything of theirs delivered would come first.)
      await sender.send(bob, { id: 'good', body: 'ok' })
      const delivered = await recipient.waitForMatching((m) => m.id === 'good', 1)
      t.same(recipient.inbox.map((m) => m.id), ['good'], 'no bad input was delivered')
      t.ok(sender.client.connected, 'sender still connected')
      t.equal(delivered[0]!.from, alice)
      t.equal(errorsOf(alice, 'phone'), `user/${alice}/device/phone/errors`)
    })

    for (const transport of ['tcp', 'websocket'] as const) {
      t.test(`${transport}: a packet far beyond the limit closes that connection, and only that one`, async (t) => {
        const url = transport === 'tcp' ? server.mqttUrl : server.wsUrl
        const alice = uniqueUser('alice')
        const bob = uniqueUser('bob')
        const sender = await connectDevice({ url, userId: alice, deviceId: 'phone' })
        const recipient = await connectDevice({ url: server.mqttUrl, userId: bob, deviceId: 'phone' })
        t.teardown(async () => { await sender.end(true); await recipient.end() })
        const closed = new Promise<void>((resolve) => sender.client.once('close', () => resolve()))
        sender.client.publish(`user/${bob}/inbox`, Buffer.alloc(2 * 1024 * 1024, 0x61), { qos: 1 })
        await closed
        t.pass('the connection was closed')
        const health = await fetch(`${server.httpUrl}/healthz`)
        t.equal(health.status, 200, 'the server is still up')
        const again = await connectDevice({ url, userId: alice, deviceId: 'phone2' })
        await again.send(bob, { id: 'after', body: 'still works' })
        await recipient.waitForInbox(1)
        t.same(recipient.inbox.map((m) => m.id), ['after'], 'the oversized packet was never delivered')
        await again.end()
      })
    }
  })
}
