// Replacement for aedes-persistence-redis' outgoingStream. The stock one
// delivers at most `maxSessionDelivery` (1,000) queued messages per CONNECT
// and fetches them one GET at a time. This one snapshots the whole queue and
// fetches packets in MGET batches, so a reconnect drains any backlog at once.
// It relies on the library's key schema (`outgoing:<encoded clientId>` lists of
// packet keys holding msgpack-encoded packets), pinned by our version range.
import type { Redis } from 'ioredis'
import msgpack from 'msgpack-lite'

const OUTGOING_PREFIX = 'outgoing:'
const BATCH = 500

export function redisOutgoingStream (db: Redis) {
  return async function * outgoingStream (client: { id: string }): AsyncGenerator<unknown> {
    const listKey = OUTGOING_PREFIX + encodeURIComponent(client.id)
    // A snapshot of the keys: PUBACKs remove entries from the list while we
    // deliver, so paging the live list by index would skip messages.
    const keys = await db.lrange(listKey, 0, -1)
    for (let start = 0; start < keys.length; start += BATCH) {
      const batch = keys.slice(start, start + BATCH)
      const values = await db.mgetBuffer(...batch)
      for (let i = 0; i < batch.length; i++) {
        const value = values[i]
        if (value) {
          yield msgpack.decode(value)
        } else {
          // The packet expired (backlog retention) or was already acknowledged.
          void db.lrem(listKey, 0, batch[i]!)
        }
      }
    }
  }
}
