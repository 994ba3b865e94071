// Resharding under traffic, through the real server (issue #20): while alice
// streams QoS 1 messages to bob, the slot of alice's keys, then the slot of
// bob's, is moved to another primary the way `redis-cli --cluster reshard`
// does (SETSLOT IMPORTING / MIGRATING, MIGRATE key by key, SETSLOT NODE),
// slowly enough that writes meet the half-moved slot (ASK, TRYAGAIN).
// Nothing may be lost or stored twice; bob's device may see a seq twice
// (it dedupes by seq), never two events under one seq.
import t from 'tap'
import { startRedisCluster } from './helpers/redis-cluster.ts'
import { startServerProcess } from './helpers/server-process.ts'
import { serverProblems } from './helpers/server-log.ts'
import { connectSteady } from './helpers/steady-device.ts'
import { keyOfUser, slotOfUser } from './helpers/cluster-users.ts'
import { apiFor, isGapless } from './helpers/rest.ts'
import { uniqueUser } from './helpers/tokens.ts'

const TOTAL = 1_500
const WINDOW = 20

const cluster = await startRedisCluster()
t.teardown(() => cluster.stop())

t.test('moving alice\'s slot, then bob\'s, while messages flow: nothing lost, nothing twice', async (t) => {
  const server = await startServerProcess({ mode: 'redis', redisCluster: cluster.seeds, env: { WORKERS: '1', PUBLISH_RATE: '0', LOG_LEVEL: process.env.TEST_LOG ?? 'info' } })
  t.teardown(() => server.stop())
  const alice = uniqueUser('alice')
  const bob = uniqueUser('bob')
  const phone = await connectSteady(server.mqttUrl, bob, 'phone')
  const sender = await connectSteady(server.mqttUrl, alice, 'phone')
  t.teardown(async () => { await phone.end(); await sender.end() })

  const acked = new Set<string>()
  const ids = Array.from({ length: TOTAL }, (_, i) => `r-${i}`)
  let next = 0
  const sending = Promise.all(Array.from({ length: WINDOW }, async () => {
    while (next < TOTAL) {
      const id = ids[next++]!
      await sender.send(bob, id)
      acked.add(id)
    }
  }))

  const moves: string[] = []
  for (const [who, user, after] of [['alice', alice, 300], ['bob', bob, 800]] as const) {
    await sender.until(() => acked.size >= after, 60_000, () => `${acked.size} PUBACKs before moving ${who}'s slot`)
    const from = await cluster.primaryOf(keyOfUser(user))
    const to = (await cluster.primaries()).find((port) => port !== from)!
    const ackedBefore = acked.size
    const started = Date.now()
    const keys = await cluster.moveSlot(slotOfUser(user), to, { batch: 1, pauseMs: 30 })
    moves.push(`${who}'s slot ${slotOfUser(user)}: ${keys} keys in ${Date.now() - started} ms, ${acked.size - ackedBefore} PUBACKs meanwhile`)
    t.ok(keys > 0, `${who}'s slot held ${who}'s keys (${keys}), moved one by one`)
    t.equal(await cluster.primaryOf(keyOfUser(user)), to, `${who}'s slot is served by the other primary now`)
  }
  t.comment(moves.join('; '))

  await sender.until(() => acked.size === TOTAL, 60_000, () => `${acked.size} of ${TOTAL} PUBACKed; server says:\n${serverProblems(server)}`)
  await sending
  t.same(sender.errors, [], 'no error event for any send')

  await phone.until(() => [...phone.bySeq.values()].filter((event) => event.type === 'message').length >= TOTAL, 30_000,
    () => `bob's device has ${phone.bySeq.size} events of ${TOTAL}`)
  for (const [who, user] of [['alice', alice], ['bob', bob]] as const) {
    const log = await apiFor(server.httpUrl, user).syncAll(0, 1000)
    const messages = log.filter((event) => event.type === 'message').map((event) => event.id as string)
    t.equal(messages.length, TOTAL, `${who}'s log holds ${TOTAL} messages`)
    t.same([...new Set(messages)].sort(), [...ids].sort(), `${who}'s log: every message sent, each once`)
    t.ok(isGapless(log.map((event) => event.seq)), `${who}'s log is gapless`)
  }
  t.same(phone.seqConflicts, [], 'no seq bob\'s device saw was given to another event')
  const onDevice = new Set([...phone.bySeq.values()].map((event) => event.id))
  t.same(ids.filter((id) => !onDevice.has(id)), [], 'bob\'s device received every message')
  if (process.env.TEST_LOG !== undefined) t.comment(serverProblems(server, 40))
  t.comment(`bob's device: ${phone.deliveries} deliveries for ${phone.bySeq.size} seqs; sender reconnected ${sender.connects - 1}×, bob ${phone.connects - 1}×`)
})
