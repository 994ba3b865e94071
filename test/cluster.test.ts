// Redis mode: two server processes on one Redis act as one broker.
import t from 'tap'
import { startServerProcess, flushRedisDb } from './helpers/server-process.ts'
import { connectDevice } from './helpers/devices.ts'
import { uniqueUser } from './helpers/tokens.ts'
import { sendMany } from './helpers/backlog.ts'
import { apiFor, isGapless } from './helpers/rest.ts'

await flushRedisDb(4)

t.test('two processes, one broker', async (t) => {
  // Queues of 1,500 from one sender: the per-user publish limit is off here (test/publish-limit.test.ts tests it).
  const nodeA = await startServerProcess({ mode: 'redis', redisDb: 4, env: { PUBLISH_RATE: '0' } })
  const nodeB = await startServerProcess({ mode: 'redis', redisDb: 4, env: { PUBLISH_RATE: '0' } })
  t.teardown(async () => { await nodeA.stop(); await nodeB.stop() })

  t.test('a client on one process reaches a client on the other', async (t) => {
    const alice = uniqueUser('alice')
    const bob = uniqueUser('bob')
    const sender = await connectDevice({ url: nodeA.mqttUrl, userId: alice, deviceId: 'phone' })
    const receiver = await connectDevice({ url: nodeB.wsUrl, userId: bob, deviceId: 'laptop' })
    t.teardown(async () => { await sender.end(); await receiver.end() })
    await sender.send(bob, { id: 'cross-node', body: 'hi from A' })
    const [message] = await receiver.waitForInbox(1)
    t.equal(message!.id, 'cross-node')
    t.equal(message!.from, alice)
    // A second message from the same sender comes after any repeat of the first.
    await sender.send(bob, { id: 'cross-node-2', body: 'again' })
    await receiver.waitForMatching((event) => event.id === 'cross-node-2', 1)
    t.same(receiver.inbox.map((event) => event.id), ['cross-node', 'cross-node-2'], 'delivered once, not once per node')
  })

  t.test('a queue built on one process is drained by a reconnect to the other', async (t) => {
    const alice = uniqueUser('alice')
    const bob = uniqueUser('bob')
    const onA = await connectDevice({ url: nodeA.mqttUrl, userId: bob, deviceId: 'phone' })
    await onA.end()
    const sender = await connectDevice({ url: nodeA.mqttUrl, userId: alice, deviceId: 'phone' })
    const sent = await sendMany(sender, bob, 1500, 'queued')
    await sender.end()
    const onB = await connectDevice({ url: nodeB.mqttUrl, userId: bob, deviceId: 'phone', subscribe: false })
    t.teardown(() => onB.end())
    const received = await onB.waitForInbox(1500, 30_000)
    t.same(new Set(received.map((m) => m.id)), new Set(sent))
  })

  t.test('a session taken over on the other process is closed on the first', async (t) => {
    const bob = uniqueUser('bob')
    const first = await connectDevice({ url: nodeA.mqttUrl, userId: bob, deviceId: 'phone' })
    const closed = new Promise<void>((resolve) => first.client.once('close', () => resolve()))
    const second = await connectDevice({ url: nodeB.mqttUrl, userId: bob, deviceId: 'phone' })
    t.teardown(async () => { await second.end(); await first.end(true) })
    await closed
    t.pass('the old connection was closed')
    const alice = uniqueUser('alice')
    const sender = await connectDevice({ url: nodeA.mqttUrl, userId: alice, deviceId: 'phone' })
    await sender.send(bob, { id: 'after-takeover', body: 'x' })
    await second.waitForInbox(1)
    await sender.end()
    t.equal(first.inbox.length, 0, 'the old connection got nothing')
  })

  t.test('seq stays gapless with concurrent senders on both processes', async (t) => {
    const bob = uniqueUser('bob')
    const senders = await Promise.all([0, 1, 2, 3].map(async (i) => {
      const node = i % 2 === 0 ? nodeA : nodeB
      return connectDevice({ url: node.mqttUrl, userId: uniqueUser(`s${i}`), deviceId: 'phone', subscribe: false })
    }))
    t.teardown(() => Promise.all(senders.map((device) => device.end())))
    // Four MQTT senders and two REST senders, all at once, 600 messages.
    const restSends = [nodeA, nodeB].map(async (node, n) => {
      const api = apiFor(node.httpUrl, uniqueUser(`rest${n}`))
      const sent: string[] = []
      for (let i = 0; i < 50; i++) {
        const response = await api.post('/v1/messages', { to: bob, id: `rest-${i}`, body: i })
        if (response.status !== 201) throw new Error(`REST send answered ${response.status}`)
        sent.push(`rest-${i}`)
      }
      return sent
    })
    const mqttSends = senders.map((device) => sendMany(device, bob, 125, 'm', 25))
    await Promise.all([...restSends, ...mqttSends])

    const events = await apiFor(nodeB.httpUrl, bob).syncAll(0, 1000)
    t.equal(events.length, 600)
    t.ok(isGapless(events.map((e) => e.seq)), 'bob\'s seqs are exactly 1..600')
    t.equal(new Set(events.map((e) => `${e.from}/${e.id}`)).size, 600, 'every message once')
    for (const device of senders) {
      const own = await apiFor(nodeA.httpUrl, device.client.options.username!).syncAll(0, 1000)
      t.ok(isGapless(own.map((e) => e.seq)) && own.length === 125, 'each sender\'s log is gapless too')
    }
  })

  t.test('a retry through the other process is still idempotent', async (t) => {
    const alice = uniqueUser('alice')
    const bob = uniqueUser('bob')
    const first = await apiFor(nodeA.httpUrl, alice).post('/v1/messages', { to: bob, id: 'retry', body: 'once' })
    const onB = await connectDevice({ url: nodeB.mqttUrl, userId: alice, deviceId: 'phone', subscribe: false })
    t.teardown(() => onB.end())
    await onB.send(bob, { id: 'retry', body: 'once' })
    const second = await apiFor(nodeB.httpUrl, alice).post('/v1/messages', { to: bob, id: 'retry', body: 'once' })
    t.equal(first.status, 201)
    t.equal(second.status, 200)
    t.same(second.body.message, first.body.message)
    t.same((await apiFor(nodeA.httpUrl, bob).syncAll()).map((e) => e.id), ['retry'])
  })
})
