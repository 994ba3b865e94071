// Picks the history store for the storage mode: the same Redis the broker
// uses, or a LevelDB of its own beside the broker's in DATA_DIR. Either way
// the store bounds persistent sessions per user, never evicting one whose
// device is connected (which presence knows: in Redis, or in this process).
import { join } from 'node:path'
import type { Config } from '../config/config.ts'
import type { BrokerStore } from '../storage/broker-store.ts'
import type { HistoryStores } from './history-store.ts'
import { RedisLog } from './redis-log.ts'
import { RedisCursors } from './redis-cursors.ts'
import { RedisBlocks } from './redis-blocks.ts'
import { LevelHistory } from './level-history.ts'
import type { GroupStore } from './group-store.ts'
import { RedisGroups } from './redis-groups.ts'
import type { PresenceRegistry } from '../presence/presence-registry.ts'
import { MemoryPresence } from '../presence/memory-presence.ts'
import { ReplicaGate } from '../storage/replication.ts'
import { RedisArchiveMarks, RedisArchiveSource } from './redis-archive-source.ts'
import type { ArchiveSource } from './archive-source.ts'
import type { LogRetentionHook } from './history-store.ts'
import type { GroupRetentionHook } from './group-store.ts'

/** With an archive the hot log keeps HOT_RETENTION_SECONDS, never longer than history itself. */
function hotKeepMs (config: Pick<Config, 'hotRetentionMs' | 'historyRetentionMs'>): number {
  return config.historyRetentionMs > 0 ? Math.min(config.hotRetentionMs, config.historyRetentionMs) : config.hotRetentionMs
}

/** Retention that never removes what the archive does not hold yet. */
function archivedOnly (source: Pick<ArchiveSource, 'archivedUpTo'>, prefix: 'u:' | 'g:'): LogRetentionHook & GroupRetentionHook {
  return { removableUpTo: async (owner) => source.archivedUpTo(prefix + owner) }
}

/**
 * `archiveSource`: what the archiver follows (archive/archiver.ts), when there is an archive:
 * embedded mode always (the archive and search index in DATA_DIR, or PostgreSQL with
 * DATABASE_URL), Redis mode with DATABASE_URL. Retention then never removes what is not archived.
 */
export async function openHistory (config: Config, store: BrokerStore, presence: PresenceRegistry): Promise<HistoryStores & { groups: GroupStore, archiveSource: ArchiveSource | undefined }> {
  const maxPerUser = config.limits.sessionsPerUser
  if (store.redis !== undefined) {
    // REDIS_WAIT_REPLICAS: one gate (one WAIT per connection in flight) for every write acknowledged.
    const replicas = new ReplicaGate(store.redis, config.replication)
    const archiving = config.databaseUrl !== undefined
    const keepMs = archiving ? hotKeepMs(config) : config.historyRetentionMs
    const source = archiving ? new RedisArchiveSource(store.redis) : undefined
    const archive = archiving ? new RedisArchiveMarks(store.redis) : undefined
    return {
      log: new RedisLog(store.redis, { keepMs, replicas, archive, keepConversations: archiving, ...(source === undefined ? {} : { retention: archivedOnly(source, 'u:') }) }),
      cursors: new RedisCursors(store.redis, { maxSessionsPerUser: maxPerUser }),
      blocks: new RedisBlocks(store.redis),
      groups: new RedisGroups(store.redis, { keepMs, replicas, archive, ...(source === undefined ? {} : { retention: archivedOnly(source, 'g:') }) }),
      archiveSource: source
    }
  }
  if (!(presence instanceof MemoryPresence)) throw new Error('embedded mode keeps presence in this process')
  // The source exists once the database is open; retention asks it through this late binding.
  let source: ArchiveSource | undefined
  const late: Pick<ArchiveSource, 'archivedUpTo'> = { archivedUpTo: async (owner) => source === undefined ? 0 : source.archivedUpTo(owner) }
  const history = await LevelHistory.open(join(config.dataDir, 'history'), hotKeepMs(config), {
    maxPerUser,
    isConnected: (user, clientId) => presence.connectedNow(user, clientId)
  }, { sync: config.durability === 'disk', retention: archivedOnly(late, 'u:'), keepConversations: true })
  source = history.archiveSource()
  // Groups share the history database: a group event and its member entries land in one batch.
  // One database serves the log, cursors and blocks: an append reads blocks in its own transaction.
  return { log: history, cursors: history, blocks: history, groups: history.groups().withRetention(archivedOnly(late, 'g:')), archiveSource: source }
}
