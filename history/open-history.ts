// Picks the history store for the storage mode: the same Redis the broker
// uses, or a LevelDB of its own beside the broker's in DATA_DIR.
import { join } from 'node:path'
import type { Config } from '../config/config.ts'
import type { BrokerStore } from '../storage/broker-store.ts'
import type { HistoryStore } from './history-store.ts'
import { RedisHistory } from './redis-history.ts'
import { LevelHistory } from './level-history.ts'
import type { GroupStore } from './group-store.ts'
import { RedisGroups } from './redis-groups.ts'

export async function openHistory (config: Config, store: BrokerStore): Promise<{ history: HistoryStore, groups: GroupStore }> {
  if (store.redis !== undefined) return { history: new RedisHistory(store.redis, config.historyRetentionMs), groups: new RedisGroups(store.redis, config.historyRetentionMs) }
  const history = await LevelHistory.open(join(config.dataDir, 'history'), config.historyRetentionMs, { sync: config.durability === 'disk' })
  // Groups share the history database: a group event and its member entries land in one batch.
  return { history, groups: history.groups() }
}
