// Picks the history store for the storage mode: the same Redis the broker
// uses, or a LevelDB of its own beside the broker's in DATA_DIR. Either way
// the store bounds persistent sessions per user, never evicting one whose
// device is connected (which presence knows: in Redis, or in this process).
import { join } from 'node:path'
import type { Config } from '../config/config.ts'
import type { BrokerStore } from '../storage/broker-store.ts'
import type { HistoryStore } from './history-store.ts'
import { RedisHistory } from './redis-history.ts'
import { LevelHistory } from './level-history.ts'
import type { GroupStore } from './group-store.ts'
import { RedisGroups } from './redis-groups.ts'
import type { PresenceRegistry } from '../presence/presence-registry.ts'
import { MemoryPresence } from '../presence/memory-presence.ts'

export async function openHistory (config: Config, store: BrokerStore, presence: PresenceRegistry): Promise<{ history: HistoryStore, groups: GroupStore }> {
  const maxPerUser = config.limits.sessionsPerUser
  if (store.redis !== undefined) {
    return {
      history: new RedisHistory(store.redis, { keepMs: config.historyRetentionMs, maxSessionsPerUser: maxPerUser }),
      groups: new RedisGroups(store.redis, config.historyRetentionMs)
    }
  }
  if (!(presence instanceof MemoryPresence)) throw new Error('embedded mode keeps presence in this process')
  const history = await LevelHistory.open(join(config.dataDir, 'history'), config.historyRetentionMs, {
    maxPerUser,
    isConnected: (user, clientId) => presence.connectedNow(user, clientId)
  }, { sync: config.durability === 'disk' })
  // Groups share the history database: a group event and its member entries land in one batch.
  return { history, groups: history.groups() }
}
