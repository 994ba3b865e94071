// A device that stops reading its socket holds up nobody: typing and error
// events to it are handed to the bus, not waited for (they were, in embedded
// mode, and its senders' next packets waited about a minute behind them). Its
// durable inbox waits in the log and arrives in full once it reads again.
import t from 'tap'
import { modesUnderTest, startServerProcess } from './helpers/server-process.ts'
import { connectDevice } from './helpers/devices.ts'
import { uniqueUser } from './helpers/tokens.ts'

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

t.test('a device that stops reading', async (t) => {
  // Floods from one sender (40,000 typing events, 2,000 messages, 600 at once) in this file:
  // the per-user publish limit is off (test/publish-limit.test.ts tests it).
  const server = await startServerProcess({ mode: 'embedded', env: { PUBLISH_RATE: '0' } })
  t.teardown(() => server.stop())
  // Long ids make each typing event about 450 bytes on the wire.
  const long = (name: string): string => `${uniqueUser(name)}-${'x'.repeat(90)}`
  const [slowUser, otherUser, sender] = [long('slow'), long('other'), long('sender')]
  // A long keepalive: while it does not read, the client cannot see PINGRESPs either.
  const slow = await connectDevice({ url: server.mqttUrl, userId: slowUser, deviceId: 'phone', extra: { keepalive: 600 } })
  const other = await connectDevice({ url: server.mqttUrl, userId: otherUser, deviceId: 'phone' })
  const from = await connectDevice({ url: server.mqttUrl, userId: sender, deviceId: 'laptop' })
  t.teardown(() => Promise.all([slow.end(true), other.end(true), from.end(true)]))

  const socket = (slow.client as unknown as { stream: { pause: () => void, resume: () => void } }).stream
  socket.pause()
  // About 18 MB: enough to fill the socket buffers between them and keep the server writing.
  const TYPING = 40_000
  for (let i = 0; i < TYPING; i++) {
    from.client.publish(`user/${slowUser}/inbox`, '{"type":"typing"}', { qos: 0 })
    if (i % 1_000 === 0) await sleep(5)
  }
  // The sender's next packet waits behind its 40k typing events; none of them may wait for the slow socket.
  from.client.publish(`user/${otherUser}/inbox`, JSON.stringify({ id: 'o1', body: 'to someone who reads' }), { qos: 1 })
  await other.waitForMatching((event) => event.type === 'message', 1, 10_000)
  t.pass('the sender is not held up: its next message reaches another user while the slow device still does not read')
  for (let i = 0; i < 5; i++) await from.send(slowUser, { id: `m${i}`, body: `durable ${i}` })

  socket.resume()
  await slow.waitForMatching((event) => event.type === 'message', 5, 30_000)
  t.pass('the slow device gets its whole inbox once it reads again')
  // A message sent now still reaches it on that connection.
  await from.send(slowUser, { id: 'm5', body: 'after the drain' })
  await slow.waitForMatching((event) => event.id === 'm5', 1)
  t.ok(slow.client.connected, 'and is still connected')
  t.equal((await fetch(`${server.httpUrl}/healthz`)).status, 200)
})

async function metric (httpUrl: string, line: RegExp): Promise<number> {
  const text = await (await fetch(`${httpUrl}/metrics`)).text()
  return Number(line.exec(text)?.[1] ?? 0)
}

for (const mode of modesUnderTest()) {
  t.test(`${mode}: QoS 0 traffic to a device that stops reading is dropped, not queued without bound`, async (t) => {
    const server = await startServerProcess({ mode, redisDb: 8, env: { PUBLISH_RATE: '0' } })
    t.teardown(() => server.stop())
    const [slowUser, sender, watcher, typist] = ['slow', 'sender', 'watcher', 'typist'].map((name) => uniqueUser(name)) as [string, string, string, string]
    const slow = await connectDevice({ url: server.mqttUrl, userId: slowUser, deviceId: 'phone', extra: { keepalive: 600 } })
    const from = await connectDevice({ url: server.mqttUrl, userId: sender, deviceId: 'laptop' })
    const watching = await connectDevice({ url: server.mqttUrl, userId: watcher, deviceId: 'phone' })
    const typing = await connectDevice({ url: server.mqttUrl, userId: typist, deviceId: 'phone' })
    t.teardown(() => Promise.all([slow.end(true), from.end(true), watching.end(true), typing.end(true)]))
    const socket = (slow.client as unknown as { stream: { pause: () => void, resume: () => void } }).stream
    socket.pause()

    // 2,000 QoS 0 messages of 48 KB: about 96 MB, far more than the kernel's socket buffers hold.
    const body = 'x'.repeat(48_000)
    for (let i = 0; i < 2_000; i++) {
      from.client.publish(`user/${slowUser}/inbox`, JSON.stringify({ id: `q${i}`, body }), { qos: 0 })
      if (i % 50 === 0) await sleep(5)
    }
    // Everything the sender published has been handled once its next QoS 1 message is acknowledged.
    await from.send(watcher, { id: 'after-the-flood', body: 'hello' })
    await watching.waitForMatching((event) => event.id === 'after-the-flood', 1, 20_000)

    // Ephemeral delivery to everyone else still flows.
    typing.client.publish(`user/${watcher}/inbox`, '{"type":"typing"}', { qos: 0 })
    await watching.waitForMatching((event) => event.type === 'typing', 1, 10_000)
    t.pass('another user\'s typing event still arrives while the slow device holds 96 MB unread')

    const unsent = await metric(server.httpUrl, /^inboxd_unsent_bytes (\d+)/m)
    t.ok(unsent < 4 * 1024 * 1024, `the server does not keep what the device does not read (${(unsent / 1048576).toFixed(1)} MB unsent)`)
    const dropped = await metric(server.httpUrl, /^inboxd_ephemeral_dropped_total\{reason="slow_consumer"\} (\d+)/m)
    t.ok(dropped > 0, `the drops are counted (${dropped})`)

    for (let i = 0; i < 3; i++) await from.send(slowUser, { id: `m${i}`, body: `durable ${i}` })
    socket.resume()
    await slow.waitForMatching((event) => event.type === 'message' && event.seq !== undefined, 3, 30_000)
    t.pass('its durable inbox arrives in full once it reads again')
    t.ok(slow.client.connected, 'and it is still connected')
  })
}

for (const mode of modesUnderTest()) {
  t.test(`${mode}: a backlog to a device that stops reading is written as it reads, not all at once`, async (t) => {
    const server = await startServerProcess({ mode, redisDb: 8, env: { PUBLISH_RATE: '0' } })
    t.teardown(() => server.stop())
    const [slowUser, sender] = ['slow', 'sender'].map((name) => uniqueUser(name)) as [string, string]
    await (await connectDevice({ url: server.mqttUrl, userId: slowUser, deviceId: 'phone' })).end()
    const from = await connectDevice({ url: server.mqttUrl, userId: sender, deviceId: 'laptop' })
    t.teardown(() => from.end(true))
    // 600 messages of 48 KB (about 29 MB) wait in the log: fewer than one catch-up page.
    const body = 'x'.repeat(48_000)
    const COUNT = 600
    await Promise.all(Array.from({ length: COUNT }, (_, i) => from.send(slowUser, { id: `b${i}`, body })))

    const slow = await connectDevice({ url: server.mqttUrl, userId: slowUser, deviceId: 'phone', subscribe: false, extra: { keepalive: 600 } })
    t.teardown(() => slow.end(true))
    const socket = (slow.client as unknown as { stream: { pause: () => void, resume: () => void } }).stream
    socket.pause()
    await sleep(1_500)
    const unsent = await metric(server.httpUrl, /^inboxd_unsent_bytes (\d+)/m)
    t.ok(unsent < 4 * 1024 * 1024, `the server holds little of the backlog in its buffers (${(unsent / 1048576).toFixed(1)} MB unsent)`)

    socket.resume()
    const received = await slow.waitForMatching((event) => event.type === 'message', COUNT, 30_000)
    t.same(received.map((event) => event.id), Array.from({ length: COUNT }, (_, i) => `b${i}`), 'then all of it, in order')
  })
}
