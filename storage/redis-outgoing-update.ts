// Before writing each queued packet to a device, Aedes awaits
// persistence.outgoingUpdate, which in aedes-persistence-redis re-SETs the
// whole packet just to record the MQTT messageId it was given. Aedes drains a
// backlog one packet at a time, so every message waited a Redis round trip:
// a drain ran at ~1/RTT (10k in 2.7 s).
//
// The write is not needed for safety: the packet and its queue entry were
// stored at enqueue, and the messageId → packet mapping that PUBACK handling
// uses is set synchronously (in memory) before the first await. So the
// update is started and not awaited. Commands on one connection run in
// order, so it still lands before the PUBACK's clear. If the process dies
// first, the packet is redelivered under a new messageId: a possible
// duplicate (clients dedupe by seq/id), never a loss.
import type { Logger } from 'pino'

interface UpdateStore {
  outgoingUpdate (client: unknown, packet: unknown): Promise<void>
}

export function updateWithoutWaiting (persistence: UpdateStore, log: Logger): void {
  const update = persistence.outgoingUpdate.bind(persistence)
  persistence.outgoingUpdate = (client, packet) => {
    update(client, packet).catch((error: unknown) => log.warn({ err: error }, 'could not record a delivery\'s messageId'))
    return Promise.resolve()
  }
}
