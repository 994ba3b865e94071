// Opens the broker's persistence and message bus for the configured mode.
//   Redis mode: aedes-persistence-redis + mqemitter-redis, so any number of
//   server processes on one Redis act as one broker.
//   Embedded mode: aedes-persistence-level on LevelDB in DATA_DIR, and an
//   in-process bus: one node, no external service.
import { mkdir } from 'node:fs/promises'
import { Readable } from 'node:stream'
import { join } from 'node:path'
import { createRequire } from 'node:module'
import { Redis } from 'ioredis'
import { ClassicLevel } from 'classic-level'
import type { Logger } from 'pino'
import type { Config } from '../server/config.ts'
import { redisOutgoingStream } from './redis-outgoing-stream.ts'
import { enqueueInOneRoundTrip } from './redis-enqueue.ts'
import { removeAckedFromHead } from './redis-ack-removal.ts'
import { updateWithoutWaiting } from './redis-outgoing-update.ts'
import { startRetentionSweep } from './level-retention.ts'
import { lookUpRetainedByKey } from './level-retained-lookup.ts'

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
  /** The shared Redis connection in Redis mode, for the product's own keys. */
  redis: Redis | undefined
  /** The LevelDB handle in embedded mode, for the product's own keys. */
  level: ClassicLevel<string, Buffer> | undefined
  close (): Promise<void>
}

async function openRedis (config: Config, redisUrl: string, log: Logger): Promise<BrokerStore> {
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 3, enableAutoPipelining: true })
  redis.on('error', (error) => log.warn({ err: error }, 'redis connection error'))
  await redis.connect()
  removeAckedFromHead(redis)
  const persistence = new AsyncRedisPersistence({
    conn: redis,
    // The backlog expires after the retention period (seconds).
    packetTTL: () => config.backlogRetentionSeconds
  })
  persistence.outgoingStream = redisOutgoingStream(redis)
  enqueueInOneRoundTrip(persistence, redis, config.backlogRetentionSeconds)
  updateWithoutWaiting(persistence, log)
  // Aedes 1.2 pipes the retained stream (`.pipe`), but this persistence
  // returns an async generator from it: adapt, or every SUBSCRIBE hangs.
  const retained = persistence.createRetainedStreamCombi.bind(persistence)
  persistence.createRetainedStreamCombi = (patterns: string[]) => Readable.from(retained(patterns))
  // The bus gets connections that are already connected: handed a fresh one,
  // mqemitter-redis can SUBSCRIBE before ioredis' ready check (INFO) runs,
  // and that error, emitted with no listener, killed the process.
  const subConn = new Redis(redisUrl, { lazyConnect: true })
  const pubConn = new Redis(redisUrl, { lazyConnect: true, enableAutoPipelining: true })
  await Promise.all([subConn.connect(), pubConn.connect()])
  const mq = mqemitterRedis({ subConn, pubConn })
  mq.state.on('error', (error: Error) => log.warn({ err: error }, 'redis bus error'))
  return {
    mode: 'redis',
    persistence,
    mq,
    redis,
    level: undefined,
    async close () {
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
  await level.open()
  const persistence = new AsyncLevelPersistence(level)
  lookUpRetainedByKey(persistence, level)
  const mq = mqemitter({ concurrency: 100, matchEmptyLevels: true })
  const stopSweep = startRetentionSweep(level, config.backlogRetentionSeconds, config.retentionSweepSeconds, log)
  return {
    mode: 'embedded',
    persistence,
    mq,
    redis: undefined,
    level,
    async close () {
      stopSweep()
      await new Promise<void>((resolve) => mq.close(() => resolve()))
      await level.close()
    }
  }
}

export function openBrokerStore (config: Config, log: Logger): Promise<BrokerStore> {
  return config.redisUrl === undefined ? openEmbedded(config, log) : openRedis(config, config.redisUrl, log)
}
