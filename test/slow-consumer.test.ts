// A device that stops reading its socket holds up nobody: typing and error
// events to it are handed to the bus, not waited for (they were, in embedded
// mode, and its senders' next packets waited about a minute behind them). Its
// durable inbox waits in the log and arrives in full once it reads again.
import t from 'tap'
import { startServerProcess } from './helpers/server-process.ts'
import { connectDevice } from './helpers/devices.ts'
import { uniqueUser } from './helpers/tokens.ts'

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

t.test('a device that stops reading', async (t) => {
  const server = await startServerProcess({ mode: 'embedded' })
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
  await sleep(500)
  t.ok(slow.client.connected, 'and is still connected')
  t.equal((await fetch(`${server.httpUrl}/healthz`)).status, 200)
})
