// What a PUBACK (or a REST 2xx) survives, said in one log line at start
// (DURABILITY, docs/protocol.md "Durability"). Embedded mode: what the
// server does (LevelDB with or without fsync per batch). Redis mode: what
// the Redis server does, read with CONFIG GET; DURABILITY=disk refuses to
// start on a Redis that would not keep an acknowledged write through a
// power cut, or whose settings cannot be read.
import { Cluster, Redis } from 'ioredis'
import { ConfigError, type Config } from '../config/config.ts'

/** Redis's persistence settings; `unknown` where CONFIG GET is refused (renamed, disabled, or not allowed). */
export interface RedisPersistence {
  appendonly: string
  appendfsync: string
  save: string
}

export async function readRedisPersistence (redis: Redis): Promise<RedisPersistence> {
  const read = async (name: string): Promise<string> => {
    try {
      const reply = await redis.call('CONFIG', 'GET', name) as string[]
      return reply[1] ?? 'unknown'
    } catch (error) {
      // Redis answered, but not this command: a managed Redis often renames or disables CONFIG.
      if ((error as Error).name === 'ReplyError') return 'unknown'
      throw error
    }
  }
  return { appendonly: await read('appendonly'), appendfsync: await read('appendfsync'), save: await read('save') }
}

/** What an acknowledged write survives on a Redis with these settings. */
export function redisSurvives ({ appendonly, appendfsync, save }: RedisPersistence): string {
  if (appendonly === 'unknown') return 'Redis refused CONFIG GET, so its persistence is unknown: a PUBACKed message survives a crash of the server process; whether it survives a Redis restart or a power cut depends on the Redis server\'s appendonly and appendfsync'
  if (appendonly !== 'yes') {
    if (save === '') return 'Redis has appendonly no and no RDB snapshots: a PUBACKed message survives a crash of the server process, not a Redis restart (Redis keeps nothing on disk)'
    return `Redis has appendonly no, RDB snapshots (save "${save}"): a PUBACKed message survives a crash of the server process; a Redis restart keeps only what its last snapshot holds`
  }
  if (appendfsync === 'always') return 'Redis has appendonly yes, appendfsync always: a PUBACKed message survives a crash or restart of the server or of Redis, and a power cut or kernel crash of the Redis machine'
  if (appendfsync === 'everysec') return 'Redis has appendonly yes, appendfsync everysec: a PUBACKed message survives a crash or restart of the server or of Redis; a power cut or kernel crash of the Redis machine can lose about the last second of them (up to 2 s when its disk is slow)'
  if (appendfsync === 'no') return 'Redis has appendonly yes, appendfsync no: a PUBACKed message survives a crash or restart of the server or of Redis; a power cut or kernel crash of the Redis machine can lose what the OS had not yet written (on Linux, up to about 30 s)'
  return `Redis has appendonly yes, appendfsync ${appendfsync}: a PUBACKed message survives a crash or restart of the server or of Redis; what a power cut loses is unknown`
}

export function embeddedSurvives (durability: Config['durability']): string {
  return durability === 'disk'
    ? 'LevelDB fsyncs each batch of writes before its PUBACK: a PUBACKed message survives a crash of the server process, and a power cut or kernel crash'
    : 'LevelDB writes without fsync: a PUBACKed message survives a crash (kill -9) of the server process, not a power cut or kernel crash'
}

/** DURABILITY=disk in Redis mode: only on a Redis that fsyncs every write before it answers. */
export function checkRedisDurability (durability: Config['durability'], persistence: RedisPersistence): void {
  if (durability !== 'disk') return
  if (persistence.appendonly === 'unknown' || persistence.appendfsync === 'unknown') {
    throw new ConfigError('DURABILITY', 'is "disk", but Redis refused CONFIG GET, so whether it fsyncs each write cannot be checked; set DURABILITY=process, or allow CONFIG GET')
  }
  if (persistence.appendonly !== 'yes' || persistence.appendfsync !== 'always') {
    throw new ConfigError('DURABILITY', `is "disk", but Redis has appendonly ${persistence.appendonly}, appendfsync ${persistence.appendfsync}: a PUBACK would not survive a power cut of the Redis machine. Run Redis with appendonly yes and appendfsync always, or set DURABILITY=process`)
  }
}

/**
 * Once per start (the supervisor, with WORKERS): reads Redis's settings,
 * refuses DURABILITY=disk where they fall short, and returns the log line.
 */
export async function describeDurability (config: Config): Promise<{ fields: Record<string, string>, text: string }> {
  if (config.redisClusterNodes !== undefined) return describeClusterDurability(config, config.redisClusterNodes)
  if (config.redisUrl === undefined) return { fields: { durability: config.durability }, text: embeddedSurvives(config.durability) }
  const redis = new Redis(config.redisUrl, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, enableOfflineQueue: false })
  redis.on('error', () => {}) // the failed connect rejects below
  try {
    await redis.connect()
    const persistence = await readRedisPersistence(redis)
    checkRedisDurability(config.durability, persistence)
    return { fields: { durability: config.durability, ...persistence }, text: redisSurvives(persistence) }
  } finally {
    redis.disconnect()
  }
}

/** On a cluster, every primary's settings: a user's writes go to the primary of their slot. */
async function describeClusterDurability (config: Config, seeds: NonNullable<Config['redisClusterNodes']>): Promise<{ fields: Record<string, string>, text: string }> {
  const cluster = new Cluster(seeds, { lazyConnect: true, clusterRetryStrategy: () => null, enableOfflineQueue: false, redisOptions: { maxRetriesPerRequest: 0 } })
  cluster.on('error', () => {}) // the failed connect rejects below
  try {
    await cluster.connect()
    const primaries = cluster.nodes('master')
    const settings = await Promise.all(primaries.map(readRedisPersistence))
    for (const persistence of settings) checkRedisDurability(config.durability, persistence)
    const texts = [...new Set(settings.map(redisSurvives))]
    const text = texts.length === 1
      ? `Redis Cluster, ${primaries.length} primaries: ${texts[0]}`
      : `Redis Cluster, ${primaries.length} primaries whose settings differ: what a PUBACK survives depends on the primary of the user's slot (${texts.join('; ')})`
    return { fields: { durability: config.durability, redis: 'cluster', ...settings[0] }, text }
  } finally {
    cluster.disconnect()
  }
}
