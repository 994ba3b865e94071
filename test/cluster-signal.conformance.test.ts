// One behaviour, every implementation: the ClusterSignal contract (control
// messages to every process: a logout's kick, a visibility change) against
// the in-process signal (embedded mode: one process), Redis pub/sub on one
// Redis and on a real Redis Cluster of this file's own, where a PUBLISH on
// any node reaches the subscribers of every node. Each "process" has its
// own command and subscriber connections, opened as the server opens them.
// Nothing promises an order between two messages (on a cluster each PUBLISH
// may go to another node), nor delivery during an outage.
import t, { type Test } from 'tap'
import { Redis } from 'ioredis'
import { pino } from 'pino'
import { LocalSignal, RedisSignal, type ClusterSignal } from '../storage/cluster-signal.ts'
import { openCommands, openSubscriber, type RedisTarget } from '../storage/redis-connection.ts'
import { REDIS_BASE } from './helpers/server-process.ts'
import { startRedisCluster, type OwnCluster } from './helpers/redis-cluster.ts'
import { uniqueUser } from './helpers/tokens.ts'

// Pub/sub ignores the DB; nothing is stored.
const REDIS_DB = 0
const WAIT_MS = 10_000
const CHANNEL = 'inboxd:signal'
const log = pino({ level: process.env.TEST_LOG ?? 'silent' })
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

type Message = Record<string, unknown>

/** A listener reading the message as the product's do (`message.type`), recording ours (tagged with this test's `run`). */
class Recorder {
  readonly heard: Message[] = []
  readonly #waiters: Array<() => void> = []
  constructor (readonly run: string) {}

  readonly listener = (message: Message): void => {
    if (message.type !== 'test' || message.run !== this.run) return
    this.heard.push(message)
    for (const waiter of this.#waiters.splice(0)) waiter()
  }

  async until (done: (heard: Message[]) => boolean, what: string): Promise<void> {
    const deadline = Date.now() + WAIT_MS
    while (!done(this.heard)) {
      if (Date.now() > deadline) throw new Error(`not heard in ${WAIT_MS} ms: ${what}; heard ${JSON.stringify(this.heard)}`)
      await Promise.race([new Promise<void>((resolve) => this.#waiters.push(resolve)), sleep(100)])
    }
  }

  has (n: number): boolean { return this.heard.some((message) => message.n === n) }
  ns (): number[] { return this.heard.map((message) => message.n as number) }
}

interface Proc { signal: ClusterSignal, rec: Recorder, close (): Promise<void> }

interface World {
  name: string
  /** Processes A and B, new each time (the local signal: one process, A and B the same). */
  pair (run: string): Promise<[Proc, Proc]>
  proc? (run: string): Promise<Proc>
  /** A plain connection to publish raw text on the channel (Redis). */
  raw? (): Redis
  cluster?: OwnCluster
}

function recorded (signal: ClusterSignal, run: string, close: () => Promise<void>): Proc {
  const rec = new Recorder(run)
  signal.listen(rec.listener)
  return { signal, rec, close }
}

function localWorld (): World {
  return {
    name: 'local',
    async pair (run) {
      const signal = new LocalSignal()
      const only = recorded(signal, run, () => signal.close())
      return [only, only]
    }
  }
}

function redisWorld (name: string, target: RedisTarget, raw: () => Redis, cluster?: OwnCluster): World {
  async function proc (run: string): Promise<Proc> {
    const [pub, sub] = await Promise.all([openCommands(target, 'signal-test', log), openSubscriber(target, 'signal-test', log)])
    const signal = await RedisSignal.open(pub, sub)
    let closed = false
    return recorded(signal, run, async () => {
      if (closed) return
      closed = true
      await signal.close()
      pub.disconnect()
    })
  }
  return { name, proc, pair: async (run) => Promise.all([proc(run), proc(run)]), raw, cluster }
}

const cluster = await startRedisCluster()
t.teardown(() => cluster.stop())
const singleUrl = `${REDIS_BASE}/${REDIS_DB}`
const WORLDS: World[] = [
  localWorld(),
  redisWorld('redis', { kind: 'single', url: singleUrl }, () => new Redis(singleUrl)),
  redisWorld('redis-cluster', { kind: 'cluster', nodes: cluster.nodes.map(({ port }) => ({ host: '127.0.0.1', port })) },
    () => new Redis({ host: '127.0.0.1', port: cluster.nodes[0]!.port }), cluster)
]

async function pairOf (world: World, t: Test, run: string): Promise<[Proc, Proc]> {
  const [a, b] = await world.pair(run)
  t.teardown(async () => { await a.close(); await b.close() })
  return [a, b]
}

const message = (run: string, n: number): Message => ({ type: 'test', run, n, user: 'bob', nested: { list: [1, 'two', null] } })

for (const world of WORLDS) {
  t.test(world.name, async (t) => {
    t.test('a message reaches every process, the sender\'s own included, as sent', async (t) => {
      const run = uniqueUser('run')
      const [a, b] = await pairOf(world, t, run)
      await a.signal.send(message(run, 1))
      await a.rec.until((heard) => heard.length > 0, 'the message at A')
      await b.rec.until((heard) => heard.length > 0, 'the message at B')
      t.same(a.rec.heard, [message(run, 1)], 'A heard it once, as sent')
      t.same(b.rec.heard, [message(run, 1)], 'B heard it once, as sent')
    })

    t.test('many messages from both processes: each heard once by each', async (t) => {
      const run = uniqueUser('run')
      const [a, b] = await pairOf(world, t, run)
      await Promise.all([
        (async () => { for (let n = 1; n <= 10; n++) await a.signal.send(message(run, n)) })(),
        (async () => { for (let n = 11; n <= 20; n++) await b.signal.send(message(run, n)) })()
      ])
      const all = Array.from({ length: 20 }, (_, i) => i + 1)
      for (const proc of [a, b]) await proc.rec.until((heard) => heard.length >= 20, '20 messages')
      t.same(a.rec.ns().sort((x, y) => x - y), all, 'A heard each once')
      t.same(b.rec.ns().sort((x, y) => x - y), all, 'B heard each once')
    })

    t.test('every listener hears it; one added later hears what comes after', async (t) => {
      const run = uniqueUser('run')
      const [a, b] = await pairOf(world, t, run)
      await a.signal.send(message(run, 1))
      await b.rec.until((heard) => heard.length > 0, 'the first at B')
      const second = new Recorder(run)
      b.signal.listen(second.listener)
      await a.signal.send(message(run, 2))
      await second.until((heard) => heard.length > 0, 'the second at the new listener')
      await b.rec.until((heard) => heard.length > 1, 'the second at B')
      t.same(second.ns(), [2], 'the new listener hears from its start on')
      t.same(b.rec.ns(), [1, 2], 'the first listener goes on hearing')
    })

    t.test('what is not a JSON object is ignored', { skip: world.raw === undefined && 'nothing crosses a bus' }, async (t) => {
      const run = uniqueUser('run')
      const [a, b] = await pairOf(world, t, run)
      const raw = world.raw!()
      t.teardown(() => raw.disconnect())
      // `null` would make a listener reading `message.type` throw in every process: sent on our own cluster only.
      const junk = world.cluster === undefined ? ['not json', '{"type":'] : ['not json', '{"type":', 'null', '5', '"kick"', '[{"type":"test"}]']
      // On one connection, so in this order: the valid message after them proves they had their chance.
      for (const text of junk) await raw.publish(CHANNEL, text)
      await raw.publish(CHANNEL, JSON.stringify(message(run, 1)))
      for (const proc of [a, b]) await proc.rec.until((heard) => heard.length > 0, 'the valid message')
      t.same(b.rec.heard, [message(run, 1)], 'only the valid message was handed to the listeners')
    })

    t.test('close() stops delivery at once', async (t) => {
      const run = uniqueUser('run')
      const [a, b] = await pairOf(world, t, run)
      // Closed by a listener before the other has heard the message: it must not hear it.
      let closing = true
      const late = new Recorder(run)
      const closer = (received: Message): void => {
        if (received.run === run && closing) { closing = false; void b.signal.close() }
      }
      // B's first listener is its recorder; a closer, then one more behind it.
      b.signal.listen(closer)
      b.signal.listen(late.listener)
      await a.signal.send(message(run, 1))
      await b.rec.until((heard) => heard.length > 0, 'the message at B\'s first listener')
      // The listeners of one message are called synchronously one after another: the rest ran or was skipped.
      await nextTurn()
      t.same(late.ns(), [], 'the listener after the one that closed heard nothing')
      if (world.proc === undefined) {
        await a.signal.send(message(run, 2))
        t.same(b.rec.ns(), [1], 'a message sent after close() is not heard (local listeners are called during send())')
        return
      }
      const witness = await world.proc(run)
      t.teardown(() => witness.close())
      await a.signal.send(message(run, 2))
      await witness.rec.until((heard) => heard.length > 0, 'the second at a live process')
      t.same(b.rec.ns(), [1], 'the closed signal heard nothing more')
    })

    t.test('after the node holding a process\'s subscription is killed -9, messages reach it again', { skip: world.cluster === undefined && 'no node to lose' }, async (t) => {
      const ownCluster = world.cluster!
      const run = uniqueUser('run')
      // B alone first: the node where a subscriber to the channel appears is B's.
      const b = await world.proc!(run)
      t.teardown(() => b.close())
      const counts = await Promise.all(ownCluster.nodes.map(async (node) => {
        const probe = new Redis({ host: '127.0.0.1', port: node.port, lazyConnect: true, retryStrategy: () => null })
        probe.on('error', () => {})
        try {
          await probe.connect()
          const [, count] = await probe.pubsub('NUMSUB', CHANNEL) as [string, number]
          return count
        } catch {
          return 0 // already killed
        } finally {
          probe.disconnect()
        }
      }))
      const victim = ownCluster.nodes[counts.findIndex((count) => count > 0)]!
      t.ok(victim, 'B\'s subscription is on one node')
      const a = await world.proc!(run)
      t.teardown(() => a.close())
      await a.signal.send(message(run, 1))
      await b.rec.until((heard) => heard.length > 0, 'the first at B')
      await victim.kill()
      await ownCluster.settled()
      // Messages sent while B subscribes again elsewhere are lost (by design): send until one arrives.
      const deadline = Date.now() + 15_000
      let n = 2
      while (!b.rec.heard.some((heard) => (heard.n as number) >= 2) && Date.now() < deadline) {
        await a.signal.send(message(run, n++)).catch(() => {})
        await Promise.race([b.rec.until((heard) => heard.some((message) => (message.n as number) >= 2), 'after the kill').catch(() => {}), sleep(200)])
      }
      t.ok(b.rec.heard.some((heard) => (heard.n as number) >= 2), 'messages reach B again')
      await a.signal.send(message(run, 100))
      await b.rec.until((heard) => heard.some((message) => message.n === 100), 'a steady message')
      t.pass('and the next one too')
    })
  })
}
