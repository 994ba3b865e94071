// Opens the broker's persistence, its message bus and the log feed for the
// configured mode.
//   Redis mode: aedes-persistence-redis + mqemitter-redis + a Redis log feed,
//   so any number of server processes on one Redis, or on a Redis Cluster,
//   act as one broker (connections: storage/redis-connection.ts).
//   Embedded mode: aedes-persistence-level on LevelDB in DATA_DIR, and
//   in-process bus and feed: one node, no external service.
// Inbox events never enter these persistences: the history log is their only
// durable copy (see broker/inbox/). What remains here is a session's inbox
// and errors subscriptions (presence subscriptions are never stored:
// broker/guard-persistence.ts), retained presence, wills, and QoS 1 error
// events for offline devices.
import { mkdir } from 'node:fs/promises'
import { Readable } from 'node:stream'
import { join } from 'node:path'
import { createRequire } from 'node:module'
import type { Redis } from 'ioredis'
import { ClassicLevel } from 'classic-level'
import type { Logger } from 'pino'
import type { Config } from '../config/config.ts'
import { startRetentionSweep } from './level-retention.ts'
import { lookUpRetainedByKey } from './level-retained-lookup.ts'
import { lookUpOnlyPresence } from './retained-presence-only.ts'
import { LocalFeed, type LogFeed } from './log-feed.ts'
import { RedisFeed } from './redis-log-feed.ts'
import { LocalSignal, RedisSignal, type ClusterSignal } from './cluster-signal.ts'
import { openCommands, openSubscriber, redisTarget, type RedisTarget } from './redis-connection.ts'

const require = createRequire(import.meta.url)
const AsyncRedisPersistence = require('aedes-persistence-redis/asyncPersistence.js')
const AsyncLevelPersistence = require('aedes-persistence-level/asyncPersistence.js')
const mqemitterRedis = require('mqemitter-redis')
const mqemitter = require('mqemitter')

export interface MessageBus {
  emit (packet: { topic: string }, callback?: (error?: Error) => void): void
  close (callback: () => void): void
}

export interface BrokerStore {
  mode: 'redis' | 'embedded'
  /** Redis mode on a Redis Cluster (REDIS_CLUSTER_NODES). */
  cluster: boolean
  persistence: { destroy?: () => Promise<void> } & Record<string, unknown>
  mq: MessageBus
  feed: LogFeed
  /** Control messages to every process (kicks on logout). */
  signal: ClusterSignal
  /** The shared Redis connection in Redis mode, for the product's own keys. */
  redis: Redis | undefined
  /** The LevelDB handle in embedded mode, for the product's own keys. */
  level: ClassicLevel<string, Buffer> | undefined
  close (): Promise<void>
}

async function openRedis (config: Config, target: RedisTarget, nodeId: string, log: Logger): Promise<BrokerStore> {
  const cluster = target.kind === 'cluster'
  const redis = await openCommands(target, 'main', log)
  const persistence = new AsyncRedisPersistence({
    conn: redis,
    // On a cluster: one key per retained topic and no multi-key command (aedes-persistence-redis' cluster mode).
    cluster,
    // Queued error events expire after the backlog retention period (seconds).
    packetTTL: () => config.backlogRetentionSeconds
  })
  // Aedes 1.2 pipes the retained stream (`.pipe`), but this persistence
  // returns an async generator from it: adapt, or every SUBSCRIBE hangs.
  const retained = persistence.createRetainedStreamCombi.bind(persistence)
  persistence.createRetainedStreamCombi = (patterns: string[]) => Readable.from(retained(patterns))
  lookUpOnlyPresence(persistence)
  // Aedes' bus (presence, typing, errors) is classic pub/sub: on a cluster a PUBLISH reaches every
  // node. It carries no inbox events (those go through the directed feed), so it stays small.
  const [subConn, pubConn, signalConn] = await Promise.all([
    openSubscriber(target, 'bus-sub', log),
    openCommands(target, 'bus-pub', log),
    openSubscriber(target, 'signal', log)
  ])
  const signal = await RedisSignal.open(redis, signalConn)
  const mq = mqemitterRedis({ subConn, pubConn })
  // Connection errors of the bus are logged once per outage (storage/redis-connection.ts).
  mq.state.on('error', (error: Error) => { if (subConn.status === 'ready' && pubConn.status === 'ready') log.warn({ err: error }, 'redis bus error') })
  const feed = await RedisFeed.open(redis, target, nodeId, log)
  return {
    mode: 'redis',
    cluster,
    persistence,
    mq,
    feed,
    signal,
    // TODO(#20): type it RedisClient once every store takes one (the stores' branches); on a
    // cluster this is an ioredis Cluster, whose command API the stores use the same way.
    redis: redis as Redis,
    level: undefined,
    async close () {
      await feed.close()
      await signal.close()
      // Closing the bus quits subConn and pubConn.
      await new Promise<void>((resolve) => mq.close(() => resolve()))
      await persistence.destroy?.().catch(() => {})
      redis.disconnect()
    }
  }
}

async function openEmbedded (config: Config, log: Logger): Promise<BrokerStore> {
  await mkdir(config.dataDir, { recursive: true })
  const level = new ClassicLevel<string, Buffer>(join(config.dataDir, 'broker'), { valueEncoding: 'buffer' })
  await level.open().catch((error: Error & { cause?: { code?: string } }) => {
    // LevelDB allows one process per directory; say which one instead of "Database failed to open".
    if (error.cause?.code === 'LEVEL_LOCKED') throw new Error(`another process holds DATA_DIR (${config.dataDir}); embedded mode runs one server per data directory`)
    throw error
  })
  const persistence = new AsyncLevelPersistence(level)
  lookUpRetainedByKey(persistence, level)
  lookUpOnlyPresence(persistence)
  const mq = mqemitter({ concurrency: 100, matchEmptyLevels: true })
  const stopSweep = startRetentionSweep(level, config.backlogRetentionSeconds, config.retentionSweepSeconds, log)
  return {
    mode: 'embedded',
    cluster: false,
    persistence,
    mq,
    feed: new LocalFeed(),
    signal: new LocalSignal(),
    redis: undefined,
    level,
    async close () {
      stopSweep()
      await new Promise<void>((resolve) => mq.close(() => resolve()))
      await level.close()
    }
  }
}

export function openBrokerStore (config: Config, nodeId: string, log: Logger): Promise<BrokerStore> {
  const target = redisTarget(config)
  return target === undefined ? openEmbedded(config, log) : openRedis(config, target, nodeId, log)
}
