// Opens the broker's persistence, its message bus and the log feed for the
// configured mode.
//   Redis mode: aedes-persistence-redis + mqemitter-redis + a Redis log feed,
//   so any number of server processes on one Redis act as one broker.
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
import { Redis } from 'ioredis'
import { ClassicLevel } from 'classic-level'
import type { Logger } from 'pino'
import type { Config } from '../config/config.ts'
import { startRetentionSweep } from './level-retention.ts'
import { lookUpRetainedByKey } from './level-retained-lookup.ts'
import { lookUpOnlyPresence } from './retained-presence-only.ts'
import { LocalFeed, type LogFeed } from './log-feed.ts'
import { RedisFeed } from './redis-log-feed.ts'
import { LocalSignal, RedisSignal, type ClusterSignal } from './cluster-signal.ts'

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

// After an outage, every connection tries again at most 200 ms apart, however
// long Redis was gone (ioredis' default backoff grows to 2 s): the server is
// back within a few hundred ms of Redis answering.
const reconnectSoon = (attempt: number): number => Math.min(attempt * 50, 200)
/**
 * Command connections: a command made while Redis is unreachable fails at
 * once (no offline queue), and one in flight when the connection broke fails
 * at the next failed attempt: a 503 or no PUBACK, not a wait for the outage
 * to end, and nothing piles up meanwhile.
 */
const COMMANDS = { lazyConnect: true, retryStrategy: reconnectSoon, enableOfflineQueue: false, maxRetriesPerRequest: 0 } as const
/**
 * Subscriber connections: a SUBSCRIBE made while disconnected waits for the
 * reconnect instead of failing (mqemitter-redis counts a failed one as done,
 * and its messages would never come); ioredis subscribes again to every
 * channel it held once it is back (autoResubscribe).
 */
const SUBSCRIBER = { lazyConnect: true, retryStrategy: reconnectSoon, maxRetriesPerRequest: null } as const

/** One line when a connection is lost and one when it is back, not one per reconnect attempt (five a second). */
function logOutages (conn: Redis, name: string, log: Logger): void {
  let lost = false
  conn.on('error', (error) => {
    if (lost) return
    lost = conn.status !== 'ready'
    log.warn({ err: error, connection: name }, lost ? 'redis connection lost; reconnecting' : 'redis connection error')
  })
  conn.on('ready', () => {
    if (lost) log.info({ connection: name }, 'redis connection back')
    lost = false
  })
}

async function openRedis (config: Config, redisUrl: string, nodeId: string, log: Logger): Promise<BrokerStore> {
  const redis = new Redis(redisUrl, { ...COMMANDS, enableAutoPipelining: true })
  logOutages(redis, 'main', log)
  await redis.connect()
  const persistence = new AsyncRedisPersistence({
    conn: redis,
    // Queued error events expire after the backlog retention period (seconds).
    packetTTL: () => config.backlogRetentionSeconds
  })
  // Aedes 1.2 pipes the retained stream (`.pipe`), but this persistence
  // returns an async generator from it: adapt, or every SUBSCRIBE hangs.
  const retained = persistence.createRetainedStreamCombi.bind(persistence)
  persistence.createRetainedStreamCombi = (patterns: string[]) => Readable.from(retained(patterns))
  lookUpOnlyPresence(persistence)
  // The bus gets connections that are already connected: handed a fresh one,
  // mqemitter-redis can SUBSCRIBE before ioredis' ready check (INFO) runs,
  // and that error, emitted with no listener, killed the process.
  const subConn = new Redis(redisUrl, SUBSCRIBER)
  const pubConn = new Redis(redisUrl, { ...COMMANDS, enableAutoPipelining: true })
  const feedConn = new Redis(redisUrl, SUBSCRIBER)
  const signalConn = new Redis(redisUrl, SUBSCRIBER)
  logOutages(subConn, 'bus-sub', log)
  logOutages(pubConn, 'bus-pub', log)
  logOutages(feedConn, 'feed', log)
  logOutages(signalConn, 'signal', log)
  await Promise.all([subConn.connect(), pubConn.connect(), feedConn.connect(), signalConn.connect()])
  const signal = await RedisSignal.open(redis, signalConn)
  const mq = mqemitterRedis({ subConn, pubConn })
  // Connection errors of the bus are logged above, once per outage.
  mq.state.on('error', (error: Error) => { if (subConn.status === 'ready' && pubConn.status === 'ready') log.warn({ err: error }, 'redis bus error') })
  const feed = await RedisFeed.open(redis, feedConn, nodeId, log)
  return {
    mode: 'redis',
    persistence,
    mq,
    feed,
    signal,
    redis,
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
  return config.redisUrl === undefined ? openEmbedded(config, log) : openRedis(config, config.redisUrl, nodeId, log)
}
