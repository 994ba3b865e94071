// Offline delivery and durability: a backlog queued for a disconnected
// persistent session survives kill -9 of the server and arrives complete
// in one reconnect, beyond aedes-persistence-redis' 1,000-per-CONNECT limit.
import t from 'tap'
import { startServerProcess, tempDataDir, freePort, flushRedisDb, modesUnderTest } from './helpers/server-process.ts'
import { connectDevice, type Device } from './helpers/devices.ts'
import { uniqueUser } from './helpers/tokens.ts'
import { sendMany } from './helpers/backlog.ts'

await flushRedisDb(3)

const BACKLOG = 5000

/** Bob's phone holds a persistent session and goes away; Alice is connected to write to it. */
async function offlineRecipient (url: string): Promise<{ alice: string, bob: string, sender: Device }> {
  const alice = uniqueUser('alice')
  const bob = uniqueUser('bob')
  const bobPhone = await connectDevice({ url, userId: bob, deviceId: 'phone' })
  await bobPhone.end()
  const sender = await connectDevice({ url, userId: alice, deviceId: 'phone' })
  return { alice, bob, sender }
}

for (const mode of modesUnderTest()) {
  t.test(`${mode}: ${BACKLOG} queued messages survive kill -9 and drain in one reconnect`, async (t) => {
    const dataDir = tempDataDir()
    const ports = { mqttPort: await freePort(), httpPort: await freePort() }
    // 5,000 from one sender: the per-user publish limit is off here (test/publish-limit.test.ts tests it).
    const options = { mode, redisDb: 3, dataDir, ...ports, env: { PUBLISH_RATE: '0' } }
    let server = await startServerProcess(options)
    t.teardown(() => server.kill())

    const { alice, bob, sender } = await offlineRecipient(server.mqttUrl)
    const sent = await sendMany(sender, bob, BACKLOG, 'offline')
    // Every PUBACK is in; kill the server without any chance to flush.
    await server.kill()
    await sender.end(true)

    server = await startServerProcess(options)
    const reconnected = await connectDevice({ url: server.mqttUrl, userId: bob, deviceId: 'phone', subscribe: false })
    let closed = false
    reconnected.client.on('close', () => { closed = true })
    const received = await reconnected.waitForInbox(BACKLOG, 60_000)
    t.notOk(closed, 'all of it in that one connection')
    const ids = received.map((m) => m.id as string)
    t.equal(new Set(ids).size, BACKLOG, 'no message missing')
    t.same([...new Set(ids)].sort(), [...sent].sort(), 'exactly the messages sent')
    t.ok(received.every((m) => m.from === alice && m.to === bob), 'stamped')
    await new Promise((resolve) => setTimeout(resolve, 300))
    await reconnected.end()

    // Acknowledged messages are gone from the queue: the next reconnect's first message is one sent now.
    const third = await connectDevice({ url: server.mqttUrl, userId: bob, deviceId: 'phone', subscribe: false })
    const now = await connectDevice({ url: server.mqttUrl, userId: alice, deviceId: 'phone', subscribe: false })
    await now.send(bob, { id: 'now', body: 'after the backlog' })
    await now.end()
    await third.waitForMatching((m) => m.id === 'now', 1)
    t.same(third.inbox.map((m) => m.id), ['now'], 'nothing redelivered after acknowledgement')
    await third.end()
  })

  t.test(`${mode}: the backlog expires after BACKLOG_RETENTION_SECONDS`, async (t) => {
    const server = await startServerProcess({ mode, redisDb: 3, env: { BACKLOG_RETENTION_SECONDS: '1', RETENTION_SWEEP_SECONDS: '1' } })
    t.teardown(() => server.stop())
    const { bob, sender } = await offlineRecipient(server.mqttUrl)
    await sender.send(bob, { id: 'old', body: 'expires' })
    await new Promise((resolve) => setTimeout(resolve, 3000))
    await sender.send(bob, { id: 'fresh', body: 'kept' })
    await sender.end()
    const again = await connectDevice({ url: server.mqttUrl, userId: bob, deviceId: 'phone', subscribe: false })
    // In seq order: 'old' would come before 'fresh'.
    await again.waitForMatching((m) => m.id === 'fresh', 1)
    t.same(again.inbox.map((m) => m.id), ['fresh'], 'only the message within retention is delivered')
    await again.end()
  })
}
