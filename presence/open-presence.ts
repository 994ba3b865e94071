// Presence registry for the storage mode: shared through Redis, or in memory.
import type { BrokerStore } from '../storage/broker-store.ts'
import type { PresenceRegistry } from './presence-registry.ts'
import { MemoryPresence } from './memory-presence.ts'
import { RedisPresence } from './redis-presence.ts'

export async function openPresence (store: BrokerStore, nodeId: string): Promise<PresenceRegistry> {
  return store.redis === undefined ? new MemoryPresence() : RedisPresence.join(store.redis, nodeId)
}
