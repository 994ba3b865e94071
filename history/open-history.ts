// Picks the history store for the storage mode: the same Redis the broker
// uses, or a LevelDB of its own beside the broker's in DATA_DIR.
import { join } from 'node:path'
import type { Config } from '../server/config.ts'
import type { BrokerStore } from '../storage/broker-store.ts'
import type { HistoryStore } from './history-store.ts'
import { RedisHistory } from './redis-history.ts'
import { LevelHistory } from './level-history.ts'

export async function openHistory (config: Config, store: BrokerStore): Promise<HistoryStore> {
  if (store.redis !== undefined) return new RedisHistory(store.redis, config.historyRetentionMs)
  return LevelHistory.open(join(config.dataDir, 'history'), config.historyRetentionMs)
}
