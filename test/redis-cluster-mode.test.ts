// Redis mode on a Redis Cluster (REDIS_CLUSTER_NODES): a cluster of this
// test's own (3 primaries, 3 replicas). What must hold: the setting is
// checked at start; the server starts on the cluster and says so; Aedes'
// own state (persistent sessions, retained presence, the bus between
// processes) lives on the cluster; and WAIT before an acknowledgement holds
// a write until a replica has it, and fails as a storage outage when the
// replica is gone. The log feed on the cluster (directed, its failover) is
// in test/log-feed.conformance.test.ts.
import t from 'tap'
import { createServer, type AddressInfo } from 'node:net'
import { Aedes } from 'aedes'
import mqtt from 'mqtt'
import { Redis } from 'ioredis'
import { pino } from 'pino'
import { ConfigError, loadConfig } from '../config/config.ts'
import { startServer } from '../server/server.ts'
import { openBrokerStore, type BrokerStore } from '../storage/broker-store.ts'
import { openCommands, type RedisTarget } from '../storage/redis-connection.ts'
import { awaitReplicas } from '../storage/replication.ts'
import { isStorageOutage } from '../storage/storage-errors.ts'
import { startRedisCluster } from './helpers/redis-cluster.ts'
import { SECRET, uniqueUser } from './helpers/tokens.ts'

const log = pino({ level: process.env.TEST_LOG ?? 'silent' })

t.test('REDIS_CLUSTER_NODES is checked at start', async (t) => {
  const base = { JWT_SECRET: SECRET }
  t.same(loadConfig({ ...base, REDIS_CLUSTER_NODES: ' 10.0.0.1:7000, redis-b:7001,[::1]:7002 ' }).redisClusterNodes,
    [{ host: '10.0.0.1', port: 7000 }, { host: 'redis-b', port: 7001 }, { host: '::1', port: 7002 }])
  t.throws(() => loadConfig({ ...base, REDIS_CLUSTER_NODES: '127.0.0.1:7000', REDIS_URL: 'redis://127.0.0.1:6379' }),
    new ConfigError('REDIS_CLUSTER_NODES', 'and REDIS_URL are set together; set REDIS_URL for one Redis or REDIS_CLUSTER_NODES for a Redis Cluster, not both'))
  t.throws(() => loadConfig({ ...base, REDIS_CLUSTER_NODES: '127.0.0.1' }), /REDIS_CLUSTER_NODES has "127.0.0.1", which is not host:port/)
  t.throws(() => loadConfig({ ...base, REDIS_CLUSTER_NODES: '127.0.0.1:0' }), /not host:port/)
  t.same(loadConfig(base).replication, { replicas: 0, timeoutMs: 1_000 }, 'WAIT is off by default')
  t.throws(() => loadConfig({ ...base, REDIS_WAIT_REPLICAS: 'one' }), /REDIS_WAIT_REPLICAS must be a whole number/)
})

const cluster = await startRedisCluster()
t.teardown(() => cluster.stop())
const target: RedisTarget = { kind: 'cluster', nodes: cluster.nodes.map(({ port }) => ({ host: '127.0.0.1', port })) }
const clusterEnv = { JWT_SECRET: SECRET, REDIS_CLUSTER_NODES: cluster.seeds, HOST: '127.0.0.1', MQTT_PORT: '0', HTTP_PORT: '0', WORKERS: '1', LOG_LEVEL: 'silent' }

t.test('the server starts on the cluster and says so in /healthz', async (t) => {
  const server = await startServer(loadConfig(clusterEnv), log)
  t.teardown(() => server.stop())
  t.equal(server.mode, 'redis')
  t.equal(server.cluster, true)
  t.same(await (await fetch(`http://127.0.0.1:${server.httpPort!}/healthz`)).json(), { status: 'ok', mode: 'redis', cluster: true })
})

/** A bare Aedes on a broker store, as broker/broker.ts builds it, listening on a spare port. */
async function bareBroker (store: BrokerStore, id: string): Promise<{ url: string, close: () => Promise<void> }> {
  const aedes = await Aedes.createBroker({ id, persistence: store.persistence as never, mq: store.mq as never })
  const server = createServer((socket) => aedes.handle(socket))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: async () => {
      await new Promise<void>((resolve) => server.close(() => resolve()))
      await new Promise<void>((resolve) => aedes.close(() => resolve()))
    }
  }
}

/** Connected, with the CONNACK's session-present flag. */
function connect (url: string, options: mqtt.IClientOptions): Promise<{ client: mqtt.MqttClient, sessionPresent: boolean }> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url, options)
    client.once('connect', (connack) => resolve({ client, sessionPresent: connack.sessionPresent }))
    client.once('error', reject)
  })
}

function nextMessage (client: mqtt.MqttClient, topic: string, timeoutMs = 5_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`nothing on ${topic} within ${timeoutMs} ms`)), timeoutMs)
    const listener = (received: string, payload: Buffer): void => {
      if (received !== topic) return
      client.off('message', listener)
      clearTimeout(timer)
      resolve(payload.toString())
    }
    client.on('message', listener)
  })
}

t.test('Aedes keeps its state on the cluster: sessions, retained messages, the bus between processes', async (t) => {
  const config = loadConfig(clusterEnv)
  const [storeA, storeB] = await Promise.all([openBrokerStore(config, 'aedes-a', log), openBrokerStore(config, 'aedes-b', log)])
  const [a, b] = await Promise.all([bareBroker(storeA, 'aedes-a'), bareBroker(storeB, 'aedes-b')])
  t.teardown(async () => { await a.close(); await b.close(); await storeA.close(); await storeB.close() })
  const user = uniqueUser('carol')
  const topic = `user/${user}/errors`
  const options = { clientId: `${user}:phone`, clean: false, reconnectPeriod: 0 }

  const first = await mqtt.connectAsync(a.url, options)
  await first.subscribeAsync(topic, { qos: 1 })
  await first.endAsync()
  // Back on the other process: the session and its subscription come from the cluster.
  const { client: again, sessionPresent } = await connect(b.url, options)
  t.teardown(() => again.endAsync())
  t.equal(sessionPresent, true, 'the persistent session is found on the other process')
  const arrived = nextMessage(again, topic)
  // Published on A: only the bus (classic pub/sub on the cluster) carries it to B.
  const sender = await mqtt.connectAsync(a.url, { clientId: `${uniqueUser('x')}:pub`, reconnectPeriod: 0 })
  t.teardown(() => sender.endAsync())
  await sender.publishAsync(topic, 'over the bus', { qos: 1 })
  t.equal(await arrived, 'over the bus', 'the restored subscription gets a message published on the other process')

  // Retained presence is stored on the cluster (one key per topic) and found by a subscriber on the other process.
  const presence = `presence/${user}`
  await sender.publishAsync(presence, '{"status":"online"}', { qos: 1, retain: true })
  const watcher = await mqtt.connectAsync(b.url, { clientId: `${uniqueUser('w')}:watch`, reconnectPeriod: 0 })
  t.teardown(() => watcher.endAsync())
  const retained = nextMessage(watcher, presence)
  await watcher.subscribeAsync(presence, { qos: 0 })
  t.equal(await retained, '{"status":"online"}', 'the retained message is read from the cluster')
})

/** The port of a live replica of the primary on `primary`. */
async function replicaOf (primary: number): Promise<number | undefined> {
  const probe = new Redis({ port: primary, host: '127.0.0.1', lazyConnect: true })
  try {
    await probe.connect()
    const info = await probe.info('replication')
    const match = /slave\d+:ip=[^,]+,port=(\d+),state=online/.exec(info)
    return match === null ? undefined : Number(match[1])
  } finally {
    probe.disconnect()
  }
}

t.test('WAIT: a write is held until a replica has it; with the replica gone it fails as an outage', async (t) => {
  const commands = await openCommands(target, 'test-wait', log)
  t.teardown(() => commands.disconnect())
  // A key on a shard that has a live replica.
  let key = ''
  let replica: number | undefined
  for (let i = 0; replica === undefined; i++) {
    key = `inboxd:test:{u:${uniqueUser('wait')}-${i}}:x`
    replica = await replicaOf(await cluster.primaryOf(key))
  }
  const settings = { replicas: 1, timeoutMs: 500 }
  await commands.set(key, 'v1')
  await awaitReplicas(commands, key, settings)
  t.pass('a write then awaitReplicas resolves while the replica is up')
  await cluster.nodes.find((node) => node.port === replica)!.kill()
  await commands.set(key, 'v2')
  const started = Date.now()
  const error = await awaitReplicas(commands, key, settings).then(() => undefined, (error: unknown) => error)
  t.ok(error instanceof Error && error.name === 'ReplicaTimeoutError', 'with its replica killed -9 it rejects')
  t.ok(Date.now() - started >= 450, 'after the timeout')
  t.ok(isStorageOutage(error), 'as a storage outage (no PUBACK, 503)')
  await awaitReplicas(commands, key, { replicas: 0, timeoutMs: 500 })
  t.pass('REDIS_WAIT_REPLICAS=0 does not wait')
})

t.test('WAIT on one Redis without replicas: the same error after the timeout', async (t) => {
  const redis = await openCommands({ kind: 'single', url: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379/1' }, 'test-wait-single', log)
  t.teardown(() => redis.disconnect())
  const started = Date.now()
  const error = await awaitReplicas(redis, 'any', { replicas: 1, timeoutMs: 200 }).then(() => undefined, (error: unknown) => error)
  t.ok(isStorageOutage(error) && Date.now() - started >= 180, 'rejects as an outage after the timeout')
})

