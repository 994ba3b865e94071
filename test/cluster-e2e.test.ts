// The product end to end on a Redis Cluster of this test's own
// (REDIS_CLUSTER_NODES, 3 primaries + 3 replicas), through two real server
// processes, A and B (issue #20): 1:1 live both ways across processes,
// receipts, recall, presence, a group with members on both processes, and
// an offline backlog that survives kill -9 of the process it was sent
// through and arrives on the other one. On a cluster a 1:1 message is written
// in the sender's slot and relayed to the recipient's, so the recipient's
// copy may follow the PUBACK by milliseconds: every check waits for events.
import t from 'tap'
import { startRedisCluster } from './helpers/redis-cluster.ts'
import { startServerProcess, type ServerHandle } from './helpers/server-process.ts'
import { serverProblems } from './helpers/server-log.ts'
import { connectDevice, type Device } from './helpers/devices.ts'
import { apiFor, isGapless } from './helpers/rest.ts'
import { uniqueUser } from './helpers/tokens.ts'
import { sendMany } from './helpers/backlog.ts'

const cluster = await startRedisCluster()
t.teardown(() => cluster.stop())

// Default presence visibility (contacts): alice and bob see each other because they talked.
const env = { WORKERS: '1', PUBLISH_RATE: '0', LOG_LEVEL: process.env.TEST_LOG ?? 'info' }
const [nodeA, nodeB] = await Promise.all([
  startServerProcess({ mode: 'redis', redisCluster: cluster.seeds, env }),
  startServerProcess({ mode: 'redis', redisCluster: cluster.seeds, env })
]) as [ServerHandle, ServerHandle]
t.teardown(async () => { await nodeA.kill(); await nodeB.stop() })
t.teardown(() => {
  if (!t.passing() || process.env.TEST_LOG !== undefined) t.comment(`A says:\n${serverProblems(nodeA)}\nB says:\n${serverProblems(nodeB)}`)
})

const isMessage = (id: string) => (event: Record<string, unknown>): boolean => event.type === 'message' && event.id === id

// One conversation carried through the subtests below: alice on A, bob on B.
const alice = uniqueUser('alice')
const bob = uniqueUser('bob')
let alicePhone: Device
let bobPhone: Device
t.teardown(async () => { await alicePhone?.end(true); await bobPhone?.end(true) })

t.test('alice on A and bob on B: live both ways', async (t) => {
  alicePhone = await connectDevice({ url: nodeA.mqttUrl, userId: alice, deviceId: 'phone' })
  bobPhone = await connectDevice({ url: nodeB.mqttUrl, userId: bob, deviceId: 'phone' })
  await alicePhone.send(bob, { id: 'a1', body: 'hi bob, from A' })
  const [toBob] = await bobPhone.waitForMatching(isMessage('a1'), 1)
  t.match(toBob, { from: alice, to: bob, body: 'hi bob, from A' }, 'bob on B gets alice\'s message, stamped')
  await bobPhone.send(alice, { id: 'b1', body: 'hi alice, from B' })
  const [toAlice] = await alicePhone.waitForMatching(isMessage('b1'), 1)
  t.match(toAlice, { from: bob, to: alice, body: 'hi alice, from B' }, 'alice on A gets bob\'s reply')
  // Each side's own copy comes back to its own devices, with its own seq.
  await alicePhone.waitForMatching(isMessage('a1'), 1)
  await bobPhone.waitForMatching(isMessage('b1'), 1)
  const aliceLog = await apiFor(nodeB.httpUrl, alice).syncAll()
  const bobLog = await apiFor(nodeA.httpUrl, bob).syncAll()
  t.same(aliceLog.filter((e) => e.type === 'message').map((e) => e.id), ['a1', 'b1'], 'alice\'s log, read through B')
  t.same(bobLog.filter((e) => e.type === 'message').map((e) => e.id), ['a1', 'b1'], 'bob\'s log, read through A')
  t.ok(isGapless(aliceLog.map((e) => e.seq)) && isGapless(bobLog.map((e) => e.seq)), 'both logs gapless')
})

t.test('receipts: delivered and read reach the sender across processes', async (t) => {
  await alicePhone.send(bob, { id: 'a2', body: 'did you get this?' })
  await bobPhone.waitForMatching(isMessage('a2'), 1)
  // bob's phone acknowledged it (mqtt.js PUBACKs on receipt): a delivered receipt for alice.
  const [delivered] = await alicePhone.waitForMatching((e) => e.type === 'receipt' && e.kind === 'delivered' && e.id === 'a2', 1)
  t.match(delivered, { by: bob, peer: bob }, 'alice on A gets bob\'s delivered receipt')
  const read = await apiFor(nodeB.httpUrl, bob).post(`/v1/conversations/${alice}/read`, { id: 'a2' })
  t.equal(read.status, 200, 'bob marks it read on B')
  const [readReceipt] = await alicePhone.waitForMatching((e) => e.type === 'receipt' && e.kind === 'read', 1)
  t.match(readReceipt, { by: bob, peer: bob, id: 'a2' }, 'alice on A gets the read receipt')
  await bobPhone.waitForMatching((e) => e.type === 'receipt' && e.kind === 'read', 1)
  t.pass('bob\'s own device gets his read receipt too')
})

t.test('recall: the recipient gets the recall, history shows the tombstone', async (t) => {
  await alicePhone.send(bob, { id: 'a3', body: 'oops' })
  const [original] = await bobPhone.waitForMatching(isMessage('a3'), 1)
  const recalled = await apiFor(nodeA.httpUrl, alice).post('/v1/messages/a3/recall')
  t.equal(recalled.status, 200, 'alice recalls it on A')
  t.match(recalled.body.message, { id: 'a3', recalled: true })
  const [recall] = await bobPhone.waitForMatching((e) => e.type === 'recall' && e.id === 'a3', 1)
  t.match(recall, { from: alice, to: bob, messageSeq: original!.seq }, 'bob on B gets the recall, pointing at his copy')
  const history = await apiFor(nodeB.httpUrl, bob).get(`/v1/conversations/${alice}/messages`)
  const tombstone = history.body.messages.find((m: Record<string, unknown>) => m.id === 'a3')
  t.match(tombstone, { recalled: true, seq: original!.seq }, 'bob\'s history holds the tombstone')
  t.notOk('body' in tombstone, 'without the body')
})

t.test('presence: bob going offline and online on B is seen by alice on A', async (t) => {
  const seen: string[] = []
  alicePhone.client.on('message', (topic, payload) => {
    if (topic === `presence/${bob}`) seen.push((JSON.parse(payload.toString()) as { status: string }).status)
  })
  await alicePhone.client.subscribeAsync(`presence/${bob}`, { qos: 1 })
  const waitFor = async (count: number, status: string): Promise<void> => {
    const until = Date.now() + 10_000
    while (seen.length < count && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 10))
    t.equal(seen[count - 1], status, `alice sees bob ${status} (${seen.join(', ')})`)
  }
  await waitFor(1, 'online')
  await bobPhone.end()
  await waitFor(2, 'offline')
  bobPhone = await connectDevice({ url: nodeB.mqttUrl, userId: bob, deviceId: 'phone', subscribe: false })
  await waitFor(3, 'online')
  t.match((await apiFor(nodeA.httpUrl, alice).get(`/v1/presence/${bob}`)).body, { status: 'online' }, 'and over REST on A')
})

t.test('a group created over REST reaches members on both processes', async (t) => {
  const carol = uniqueUser('carol')
  const carolPhone = await connectDevice({ url: nodeA.mqttUrl, userId: carol, deviceId: 'phone' })
  t.teardown(() => carolPhone.end())
  const created = await apiFor(nodeA.httpUrl, alice).post('/v1/groups', { name: 'both processes', members: [bob, carol] })
  t.equal(created.status, 201, 'alice creates the group on A')
  const group = created.body.group.id as string
  for (const [who, device] of [['bob on B', bobPhone], ['carol on A', carolPhone]] as const) {
    await device.waitForMatching((e) => e.type === 'group_created' && e.group === group, 1)
    t.pass(`${who} gets group_created`)
  }
  await alicePhone.sendRaw(`group/${group}`, JSON.stringify({ id: 'g1', body: 'hello group' }))
  for (const device of [bobPhone, carolPhone, alicePhone]) {
    const [message] = await device.waitForMatching((e) => e.type === 'message' && e.group === group && e.id === 'g1', 1)
    t.match(message, { from: alice, gseq: 2, body: 'hello group' })
  }
  await bobPhone.sendRaw(`group/${group}`, JSON.stringify({ id: 'g2', body: 'from B' }))
  for (const device of [alicePhone, carolPhone]) {
    const [message] = await device.waitForMatching((e) => e.type === 'message' && e.group === group && e.id === 'g2', 1)
    t.match(message, { from: bob, gseq: 3 })
  }
  const events = await apiFor(nodeB.httpUrl, carol).get(`/v1/groups/${group}/messages`)
  t.same(events.body.events.map((e: Record<string, unknown>) => e.gseq), [1, 2, 3], 'the group log, read through B')
})

t.test('an offline backlog survives kill -9 of A and arrives on B', async (t) => {
  const sender = uniqueUser('dave')
  const away = uniqueUser('erin')
  // erin's phone opens a persistent session on A and goes away.
  await (await connectDevice({ url: nodeA.mqttUrl, userId: away, deviceId: 'phone' })).end()
  const daveOnA = await connectDevice({ url: nodeA.mqttUrl, userId: sender, deviceId: 'phone', subscribe: false })
  const sent = await sendMany(daveOnA, away, 300, 'backlog', 50)
  // Every PUBACK is in; A dies without any chance to flush.
  await nodeA.kill()
  await daveOnA.end(true)
  const erinOnB = await connectDevice({ url: nodeB.mqttUrl, userId: away, deviceId: 'phone', subscribe: false })
  t.teardown(() => erinOnB.end())
  t.equal(erinOnB.sessionPresent, true, 'erin\'s session is found on B')
  const received = await erinOnB.waitForInbox(300, 30_000)
  t.same(received.map((e) => e.id).sort(), [...sent].sort(), 'every message, once')
  t.ok(isGapless(received.map((e) => e.seq as number)), 'seqs 1..300')
})
