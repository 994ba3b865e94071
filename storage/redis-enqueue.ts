// aedes-persistence-redis queues a QoS 1 packet for offline delivery with
// four sequential round trips (MSET, EXPIRE, EXPIRE, RPUSH per subscriber).
// This issues the same writes, with the same keys and encoding, at once
// (SET … EX for the packet and its subscriber count, then the RPUSHes), so
// ioredis' auto-pipelining sends them together with whatever else is going
// out. Redis runs them in order; the promise settles when all are done.
// (A MULTI measured slower: 3,830 vs 4,620 msg/s, as it defeats pipelining.)
// Everything else in the persistence reads these keys unchanged.
import { createRequire } from 'node:module'
import type { Redis } from 'ioredis'
import msgpack from 'msgpack-lite'

const require = createRequire(createRequire(import.meta.url).resolve('aedes-persistence-redis'))
const { Packet } = require('aedes-persistence') as { Packet: new (packet: unknown) => unknown }

interface QueuedPacket { brokerId: string, brokerCounter: number }
interface EnqueueStore {
  outgoingEnqueueCombi (subs: Array<{ clientId: string }>, packet: QueuedPacket): Promise<void>
}

export function enqueueInOneRoundTrip (persistence: EnqueueStore, redis: Redis, ttlSeconds: number): void {
  persistence.outgoingEnqueueCombi = async (subs, packet) => {
    if (subs === undefined || subs.length === 0) return
    const packetKey = `packet:${packet.brokerId}:${packet.brokerCounter}`
    await Promise.all([
      redis.set(packetKey, msgpack.encode(new Packet(packet)), 'EX', ttlSeconds),
      redis.set(`${packetKey}:offlineCount`, subs.length, 'EX', ttlSeconds),
      ...subs.map((sub) => redis.rpush(`outgoing:${encodeURIComponent(sub.clientId)}`, packetKey))
    ])
  }
}
