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

export async function openHistory (config: Config, store: BrokerStore, presence: PresenceRegistry): Promise<HistoryStores & { groups: GroupStore }> {
  const maxPerUser = config.limits.sessionsPerUser
  if (store.redis !== undefined) {
    // REDIS_WAIT_REPLICAS: one gate (one WAIT per connection in flight) for every write acknowledged.
    const replicas = new ReplicaGate(store.redis, config.replication)
    return {
      log: new RedisLog(store.redis, { keepMs: config.historyRetentionMs, replicas }),
      cursors: new RedisCursors(store.redis, { maxSessionsPerUser: maxPerUser }),
      blocks: new RedisBlocks(store.redis),
      groups: new RedisGroups(store.redis, { keepMs: config.historyRetentionMs, replicas })
    }
  }
  if (!(presence instanceof MemoryPresence)) throw new Error('embedded mode keeps presence in this process')
  const history = await LevelHistory.open(join(config.dataDir, 'history'), config.historyRetentionMs, {
    maxPerUser,
    isConnected: (user, clientId) => presence.connectedNow(user, clientId)
  }, { sync: config.durability === 'disk' })
  // Groups share the history database: a group event and its member entries land in one batch.
  // One database serves the log, cursors and blocks: an append reads blocks in its own transaction.
  return { log: history, cursors: history, blocks: history, groups: history.groups() }
}
