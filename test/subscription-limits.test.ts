// A subscription flood (issue 19, item 3): one connection holds at most
// MAX_PRESENCE_WATCHES presence topics (default 1,000); beyond, SUBACK 0x80
// and the error event too_many_subscriptions. Presence subscriptions are not
// kept in a persistent session (the inbox subscription and cursor are), so a
// session left behind costs the server nothing for them. Real server, real
// MQTT clients, both storage modes.
import t from 'tap'
import { randomUUID } from 'node:crypto'
import type { Client } from 'aedes'
import { freePort, modesUnderTest, startServerProcess } from './helpers/server-process.ts'
import { inspectorEnv, probeHeap } from './helpers/heap.ts'
import { connectDevice, errorsOf, granted, inboxOf, type Device } from './helpers/devices.ts'
import { uniqueUser } from './helpers/tokens.ts'
import { PresenceWatches } from '../broker/presence-watches.ts'

const CAP = 1_000 // the default
const topics = (prefix: string, from: number, count: number): string[] => Array.from({ length: count }, (_, i) => `presence/${prefix}-${from + i}`)

/** SUBSCRIBE, in packets of `batch`: the granted QoS of each topic, in order (128: refused). */
async function subscribe (device: Device, list: string[], batch = 100): Promise<number[]> {
  const codes: number[] = []
  for (let start = 0; start < list.length; start += batch) codes.push(...await granted(device.client, list.slice(start, start + batch), 1))
  return codes
}

const errorEvents = (device: Device): Array<Record<string, unknown>> => device.errors.filter((event) => event.type === 'error')

/** The device's error events once there are `count` (or what came within 5 s). */
async function errorEventCount (device: Device, count: number): Promise<Array<Record<string, unknown>>> {
  for (const deadline = Date.now() + 5_000; errorEvents(device).length < count && Date.now() < deadline;) await new Promise((resolve) => setTimeout(resolve, 10))
  return errorEvents(device)
}

for (const mode of modesUnderTest()) {
  t.test(`${mode} mode`, async (t) => {
    // Everyone may see everyone: these tests are about subscriptions, not who sees whom.
    const inspector = await freePort()
    const server = await startServerProcess({ mode, env: { PRESENCE_VISIBILITY: 'all', WORKERS: '1', ...inspectorEnv(inspector) } })
    t.teardown(() => server.stop())
    const heap = await probeHeap(inspector)
    t.teardown(() => heap.close())
    const url = server.mqttUrl
    const run = randomUUID().slice(0, 8)

    t.test('a connection holds at most 1,000 presence topics; UNSUBSCRIBE frees a slot', async (t) => {
      const user = uniqueUser('watcher')
      const device = await connectDevice({ url, userId: user, deviceId: 'phone' })
      t.teardown(() => device.end(true))
      const held = topics(`cap-${run}`, 0, CAP)
      t.ok((await subscribe(device, held)).every((qos) => qos === 1), '1,000 presence topics are granted')

      t.same(await granted(device.client, [held[0]!, ...topics(`cap-${run}`, CAP, 3)], 1), [1, 128, 128, 128], 'beyond them 0x80; a topic already held is granted again and takes no second slot')
      const [event] = await errorEventCount(device, 1)
      t.match(event, { type: 'error', code: 'too_many_subscriptions', topic: `presence/cap-${run}-${CAP}`, message: /at most 1000 presence topics per connection: 3 refused/, ts: Number },
        'one error event on the device\'s errors topic for the refused topics of that SUBSCRIBE')
      t.same(await granted(device.client, [inboxOf(user)], 1), [1], 'the inbox is not a presence topic: still granted')

      await device.client.unsubscribeAsync(held.slice(0, 10))
      const after = await subscribe(device, topics(`cap-${run}`, CAP, 11), 11)
      t.same(after, [...Array(10).fill(1), 128], 'ten unsubscribed: ten new ones are granted, the eleventh is not')
      t.equal((await errorEventCount(device, 2)).length, 2, 'with its error event')

      const second = await connectDevice({ url, userId: user, deviceId: 'laptop' })
      t.teardown(() => second.end(true))
      t.ok((await subscribe(second, held)).every((qos) => qos === 1), 'another device of the user has slots of its own')
    })

    t.test('a persistent session keeps its inbox subscription and cursor, not its presence subscriptions', async (t) => {
      const [alice, xavier, yvonne, sender] = [uniqueUser('alice'), uniqueUser('xavier'), uniqueUser('yvonne'), uniqueUser('sender')]
      const first = await connectDevice({ url, userId: alice, deviceId: 'phone' }) // inbox + errors topic, clean: false
      t.same(await subscribe(first, [`presence/${xavier}`]), [1])
      await first.end()
      const mailer = await connectDevice({ url, userId: sender, deviceId: 'd', subscribe: false })
      t.teardown(() => mailer.end(true))
      await mailer.send(alice, { id: 'while-away', body: 'hi' })

      const again = await connectDevice({ url, userId: alice, deviceId: 'phone', subscribe: false })
      t.teardown(() => again.end(true))
      t.match(await again.waitForInbox(1), [{ type: 'message', id: 'while-away', from: sender }], 'the inbox subscription and its cursor are kept: the message sent while away arrives')
      await again.sendRaw(inboxOf(sender), 'not json')
      t.match(await errorEventCount(again, 1), [{ code: 'invalid_json' }], 'so is the errors topic subscription')

      // The witness sees xavier come online; yvonne comes online after that. Alice's
      // connection gets presence in the order it is published, so had it kept
      // presence/<xavier>, xavier's state would reach it before yvonne's.
      const presence: string[] = []
      again.client.on('message', (topic, payload) => { if (topic.startsWith('presence/')) presence.push(`${topic} ${JSON.parse(payload.toString()).status as string}`) })
      t.same(await subscribe(again, [`presence/${yvonne}`]), [1])
      const witness = await connectDevice({ url, userId: uniqueUser('witness'), deviceId: 'w', subscribe: false, clean: true })
      t.teardown(() => witness.end(true))
      const xavierOnline = new Promise<void>((resolve) => witness.client.on('message', (topic) => { if (topic === `presence/${xavier}`) resolve() }))
      await witness.client.subscribeAsync(`presence/${xavier}`, { qos: 1 })
      const xavierDevice = await connectDevice({ url, userId: xavier, deviceId: 'd', subscribe: false })
      t.teardown(() => xavierDevice.end(true))
      await xavierOnline
      const yvonneDevice = await connectDevice({ url, userId: yvonne, deviceId: 'd', subscribe: false })
      t.teardown(() => yvonneDevice.end(true))
      for (const deadline = Date.now() + 5_000; !presence.includes(`presence/${yvonne} online`); await new Promise((resolve) => setTimeout(resolve, 10))) {
        if (Date.now() > deadline) throw new Error(`yvonne's presence never came: ${JSON.stringify(presence)}`)
      }
      t.same(presence, [`presence/${yvonne} online`], 'after the reconnect the presence subscription is gone (subscribe again after every CONNECT)')
    })

    t.test('a flood of 20,000 presence SUBSCRIBEs leaves the server\'s memory bounded', async (t) => {
      const user = uniqueUser('flooder')
      const before = await heap.measure()
      const flooder = await connectDevice({ url, userId: user, deviceId: 'phone', subscribe: false })
      await flooder.client.subscribeAsync([inboxOf(user), errorsOf(user, 'phone')], { qos: 1 })
      const codes = await subscribe(flooder, topics(`flood-${run}`, 0, 20_000), 1_000)
      t.equal(codes.filter((qos) => qos !== 128).length, CAP, 'only the first 1,000 are granted')
      t.equal((await errorEventCount(flooder, 19)).length, 19, 'one error event per refused SUBSCRIBE')
      const connected = await heap.measure()
      await flooder.end()
      const after = await heap.measure()
      const mb = (bytes: number): string => `${(bytes / 1e6).toFixed(1)} MB`
      // Before the cap all 20,000 were held (1.5 KB each), and 1 KB each stayed after the DISCONNECT.
      t.ok(connected.heapUsed - before.heapUsed < 8e6, `while connected the live heap grew by ${mb(connected.heapUsed - before.heapUsed)} (RSS ${mb(connected.rss - before.rss)})`)
      t.ok(after.heapUsed - before.heapUsed < 4e6, `after the DISCONNECT by ${mb(after.heapUsed - before.heapUsed)} (RSS ${mb(after.rss - before.rss)})`)
      const again = await connectDevice({ url, userId: user, deviceId: 'phone', subscribe: false })
      t.teardown(() => again.end(true))
      t.ok((await subscribe(again, topics(`flood-${run}`, 20_000, CAP))).every((qos) => qos === 1), 'the session kept none of them: 1,000 new ones are granted after a reconnect')
    })
  })
}

t.test('slots follow what the connection holds when an UNSUBSCRIBE overtakes its SUBSCRIBE', async (t) => {
  // Aedes handles the packets of one read concurrently; these are the orders its events can come in.
  const watched = new Set<string>()
  const reports: unknown[] = []
  const watches = new PresenceWatches({
    max: 2,
    watchers: { watch: (viewer, subject) => watched.add(`${viewer} ${subject}`), unwatch: (viewer, subject) => watched.delete(`${viewer} ${subject}`) },
    report: (_client, event) => reports.push(event)
  })
  const client = { id: 'ann:phone', closed: false } as unknown as Client
  const holds = new Set<string>()
  t.ok(watches.take(client, 'presence/a'))
  watches.unsubscribed(client, ['presence/a']) // handled before the SUBSCRIBE was: Aedes adds it afterwards
  holds.add('presence/a')
  watches.subscribed(client, ['presence/a'], (topic) => holds.has(topic))
  t.ok(watches.take(client, 'presence/b'))
  watches.unsubscribed(client, ['presence/b'])
  watches.subscribed(client, ['presence/b'], (topic) => holds.has(topic)) // added, and removed by that UNSUBSCRIBE, before the SUBSCRIBE completed
  t.same([...watched], ['ann a'], 'a is held and counted, b is not')
  t.ok(watches.take(client, 'presence/c'))
  t.notOk(watches.take(client, 'presence/d'), 'two held: the third is refused')
  t.notOk(watches.take(client, 'presence/e'))
  await Promise.resolve()
  t.match(reports, [{ code: 'too_many_subscriptions', topic: 'presence/d', message: /2 refused/ }], 'refusals of one SUBSCRIBE are reported once')
  watches.closed(client)
  t.same(watched.size, 0, 'a closed connection releases every slot')
  t.notOk(watches.take({ id: 'ann:phone', closed: true } as unknown as Client, 'presence/f'), 'nothing is taken for a connection already closed')
})
