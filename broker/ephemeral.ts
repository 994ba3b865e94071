// Ephemeral publishes (typing, QoS 0 messages, presence, error events) go
// straight onto the bus, without a broker counter. Through broker.publish a QoS 0 packet gets a
// counter, can reach a device before a QoS 1 packet with a lower counter
// whose store write is still running, and Aedes' per-client dedupe would then
// drop that durable message from live delivery. Without a counter, dedupe
// lets both through.
import type { Aedes } from 'aedes'

interface BrokerInternals {
  persistence: { storeRetained (packet: unknown): Promise<void> }
  mq: { emit (packet: unknown, callback: (error?: Error) => void): void }
}

/**
 * Resolves once handed to the bus, not once delivered: the in-process bus
 * (embedded mode) calls back only after every subscriber's socket took the
 * packet, so one device that stopped reading would hold up whoever sent it a
 * typing event (Aedes handles a client's packets one at a time). Ephemeral
 * means at most once: a failed bus publish loses only this packet.
 * `awaitDelivery`: wait anyway. For an error event to the device that caused
 * it, that is the point: a client that publishes faster than it reads its own
 * refusals is slowed down by its own socket (a flood throttles itself).
 */
export async function publishEphemeral (aedes: Aedes, topic: string, json: string, retain = false, awaitDelivery = false): Promise<void> {
  const broker = aedes as unknown as BrokerInternals
  const packet = { cmd: 'publish' as const, topic, payload: Buffer.from(json), qos: 0 as const, retain, dup: false }
  if (retain) await broker.persistence.storeRetained(packet)
  if (!awaitDelivery) {
    broker.mq.emit(packet, () => {})
    return
  }
  await new Promise<void>((resolve, reject) => {
    broker.mq.emit(packet, (error?: Error) => { error ? reject(error) : resolve() })
  })
}
