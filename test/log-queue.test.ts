// The log is the queue: a device's session is a cursor into its user's log.
// These pin what that must guarantee: no gap and no reordering across
// reconnects mid-stream, each seq once per connection, redelivery (never
// loss) after kill -9 with cursor writes coalesced, independent cursors per
// device, and resuming at the cursor on another process or worker.
import t from 'tap'
import { Redis } from 'ioredis'
import { startServerProcess, tempDataDir, freePort, flushRedisDb, modesUnderTest, REDIS_BASE } from './helpers/server-process.ts'
import { connectDevice, type Device } from './helpers/devices.ts'
import { uniqueUser } from './helpers/tokens.ts'
import { sendMany } from './helpers/backlog.ts'
import { presenceConnectionsKey } from '../storage/redis-keys.ts'

const REDIS_DB = 13
await flushRedisDb(REDIS_DB)

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
const seqs = (device: Device): number[] => device.inbox.map((event) => event.seq as number)
const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i)

/** Each seq once, in order, without a gap: what one connection must see. */
function contiguous (list: number[]): boolean {
  return list.every((seq, i) => i === 0 || seq === list[i - 1]! + 1)
}

for (const mode of modesUnderTest()) {
  t.test(`${mode}: reconnecting mid-stream while messages arrive: no gap, no reorder, each seq once per connection`, async (t) => {
    // 3,000 from one sender: the per-user publish limit is off here (test/publish-limit.test.ts tests it).
    const server = await startServerProcess({ mode, redisDb: REDIS_DB, env: { PUBLISH_RATE: '0' } })
    t.teardown(() => server.stop())
    const alice = uniqueUser('alice')
    const bob = uniqueUser('bob')
    await (await connectDevice({ url: server.mqttUrl, userId: bob, deviceId: 'phone' })).end()
    const sender = await connectDevice({ url: server.mqttUrl, userId: alice, deviceId: 'phone', subscribe: false })
    t.teardown(() => sender.end())
    const TOTAL = 3000
    const sending = sendMany(sender, bob, TOTAL, 'mid', 20)

    const connections: number[][] = []
    let highest = 0
    while (highest < TOTAL) {
      const phone = await connectDevice({ url: server.mqttUrl, userId: bob, deviceId: 'phone', subscribe: false })
      await sleep(40 + Math.random() * 80)
      // Dropped without DISCONNECT, with PUBLISHes in flight: those come again.
      await phone.end(true)
      connections.push(seqs(phone))
      highest = Math.max(highest, ...seqs(phone), 0)
      if (connections.length > 200) break
    }
    await sending
    t.ok(connections.length >= 3, `reconnected ${connections.length} times mid-stream`)
    t.ok(connections.every(contiguous), 'within each connection: every seq once, in order, no gap')
    const seen = new Set(connections.flat())
    t.same([...seen].sort((a, b) => a - b), range(1, TOTAL), 'across connections: every seq from 1 to the last')
    for (let i = 1; i < connections.length; i++) {
      const previous = connections.slice(0, i).flat()
      const first = connections[i]![0]
      if (first !== undefined) t.ok(first <= Math.max(0, ...previous) + 1, `connection ${i} starts no later than where the last ended`)
    }
  })

  t.test(`${mode}: kill -9 with cursor writes coalesced: redelivery, never loss`, async (t) => {
    const ports = { mqttPort: await freePort(), httpPort: await freePort() }
    const options = { mode, redisDb: REDIS_DB, dataDir: tempDataDir(), ...ports, env: { PUBLISH_RATE: '0' } } // 1,000 from one sender: no publish limit
    let server = await startServerProcess(options)
    t.teardown(() => server.kill())
    const alice = uniqueUser('alice')
    const bob = uniqueUser('bob')
    const phone = await connectDevice({ url: server.mqttUrl, userId: bob, deviceId: 'phone' })
    const sender = await connectDevice({ url: server.mqttUrl, userId: alice, deviceId: 'phone', subscribe: false })
    await sendMany(sender, bob, 1000, 'k')
    await phone.waitForInbox(1000)
    // Every message PUBACKed; some acknowledged positions may not be written yet.
    await server.kill()
    await Promise.all([phone.end(true), sender.end(true)])

    server = await startServerProcess(options)
    const again = await connectDevice({ url: server.mqttUrl, userId: bob, deviceId: 'phone', subscribe: false })
    t.teardown(() => again.end())
    const writer = await connectDevice({ url: server.mqttUrl, userId: alice, deviceId: 'phone', subscribe: false })
    t.teardown(() => writer.end())
    await writer.send(bob, { id: 'after-restart', body: 'x' })
    await again.waitForMatching((event) => event.id === 'after-restart', 1)
    const redelivered = seqs(again)
    t.ok(contiguous(redelivered), 'what comes again is a contiguous run')
    t.equal(redelivered.at(-1), 1001, 'ending with the new message')
    t.ok(redelivered[0]! <= 1001, 'starting at or before the first unsaved position')
    t.same([...new Set([...seqs(phone), ...redelivered])].sort((a, b) => a - b), range(1, 1001), 'nothing lost')
    t.comment(`redelivered after kill -9: ${redelivered.length - 1} of 1000 acknowledged`)
  })

  t.test(`${mode}: two devices of one user keep their own cursors`, async (t) => {
    const server = await startServerProcess({ mode, redisDb: REDIS_DB })
    t.teardown(() => server.stop())
    const alice = uniqueUser('alice')
    const bob = uniqueUser('bob')
    for (const deviceId of ['phone', 'laptop']) await (await connectDevice({ url: server.mqttUrl, userId: bob, deviceId })).end()
    const sender = await connectDevice({ url: server.mqttUrl, userId: alice, deviceId: 'phone', subscribe: false })
    t.teardown(() => sender.end())
    await sendMany(sender, bob, 50, 'a')
    const phone = await connectDevice({ url: server.mqttUrl, userId: bob, deviceId: 'phone', subscribe: false })
    await phone.waitForInbox(50)
    await sleep(300)
    await phone.end()
    await sendMany(sender, bob, 30, 'b')
    const laptop = await connectDevice({ url: server.mqttUrl, userId: bob, deviceId: 'laptop', subscribe: false })
    const phoneAgain = await connectDevice({ url: server.mqttUrl, userId: bob, deviceId: 'phone', subscribe: false })
    t.teardown(async () => { await laptop.end(); await phoneAgain.end() })
    await laptop.waitForInbox(80)
    await phoneAgain.waitForInbox(30)
    // One more message: each device gets it after anything else it was going to get.
    await sendMany(sender, bob, 1, 'c')
    await laptop.waitForMatching((event) => event.seq === 81, 1)
    await phoneAgain.waitForMatching((event) => event.seq === 81, 1)
    t.same(seqs(laptop), range(1, 81), 'the laptop, away for everything, gets all 80 (then the next)')
    t.same(seqs(phoneAgain), range(51, 81), 'the phone gets only the 30 after its cursor (then the next)')
  })
}

t.test('redis: a reconnect to another process resumes at the cursor', async (t) => {
  const nodeA = await startServerProcess({ mode: 'redis', redisDb: REDIS_DB, env: { WORKERS: '1' } })
  const nodeB = await startServerProcess({ mode: 'redis', redisDb: REDIS_DB, env: { WORKERS: '1' } })
  t.teardown(async () => { await nodeA.stop(); await nodeB.stop() })
  const alice = uniqueUser('alice')
  const bob = uniqueUser('bob')
  const onA = await connectDevice({ url: nodeA.mqttUrl, userId: bob, deviceId: 'phone' })
  const sender = await connectDevice({ url: nodeA.mqttUrl, userId: alice, deviceId: 'phone', subscribe: false })
  t.teardown(() => sender.end())
  await sendMany(sender, bob, 100, 'x')
  await onA.waitForInbox(100)
  await sleep(300)
  await onA.end()
  await sendMany(sender, bob, 50, 'y')
  const onB = await connectDevice({ url: nodeB.mqttUrl, userId: bob, deviceId: 'phone', subscribe: false })
  t.teardown(() => onB.end())
  await onB.waitForInbox(50)
  await sendMany(sender, bob, 1, 'z')
  await onB.waitForMatching((event) => event.seq === 151, 1)
  t.same(seqs(onB), range(101, 151), 'exactly the messages after the cursor, in order (then the next)')
})

t.test('redis: WORKERS=2 delivers between clients on different workers', async (t) => {
  const server = await startServerProcess({ mode: 'redis', redisDb: REDIS_DB, env: { WORKERS: '2' } })
  t.teardown(() => server.stop())
  const pairs = Array.from({ length: 6 }, (_, i) => ({ alice: uniqueUser(`alice${i}`), bob: uniqueUser(`bob${i}`) }))
  const devices = await Promise.all(pairs.map(async ({ alice, bob }) => ({
    sender: await connectDevice({ url: server.mqttUrl, userId: alice, deviceId: 'phone', subscribe: false }),
    receiver: await connectDevice({ url: server.mqttUrl, userId: bob, deviceId: 'phone' })
  })))
  t.teardown(() => Promise.all(devices.flatMap(({ sender, receiver }) => [sender.end(), receiver.end()])))

  // Presence records which server node holds each connection.
  const redis = new Redis(`${REDIS_BASE}/${REDIS_DB}`)
  t.teardown(() => redis.disconnect())
  const nodeOf = async (user: string): Promise<string> => {
    const value = await redis.hget(presenceConnectionsKey(user), `${user}:phone`)
    return value!.split('|')[0]!
  }
  const nodes = await Promise.all(pairs.map(async ({ alice, bob }) => [await nodeOf(alice), await nodeOf(bob)] as const))
  t.equal(new Set(nodes.flat()).size, 2, 'connections were spread over two worker processes')
  const crossing = nodes.findIndex(([a, b]) => a !== b)
  t.ok(crossing >= 0, 'at least one sender and its receiver are on different workers')

  await Promise.all(devices.map(({ sender }, i) => sender.send(pairs[i]!.bob, { id: `w${i}`, body: i })))
  await Promise.all(devices.map(({ receiver }) => receiver.waitForInbox(1)))
  // A second message per pair: it comes after any repeat of the first.
  await Promise.all(devices.map(({ sender }, i) => sender.send(pairs[i]!.bob, { id: `v${i}`, body: i })))
  await Promise.all(devices.map(({ receiver }, i) => receiver.waitForMatching((event) => event.id === `v${i}`, 1)))
  t.same(devices[crossing]!.receiver.inbox.map((event) => event.id), [`w${crossing}`, `v${crossing}`], 'delivered once across workers')
  t.ok(devices.every(({ receiver }, i) => receiver.inbox.map((event) => event.id).join() === `w${i},v${i}`), 'every pair delivered once')
})
