// Server-side publish through the full Aedes pipeline. For QoS 1 the promise
// settles only after the packet is in every persistent subscriber's queue in
// the store, which is what lets the sender's PUBACK mean "durable".
import type { Aedes } from 'aedes'

/** Publishes an already-serialised JSON payload. */
export function publishText (broker: Aedes, topic: string, json: string, qos: 0 | 1): Promise<void> {
  const packet = {
    cmd: 'publish' as const,
    topic,
    payload: Buffer.from(json),
    qos,
    retain: false,
    dup: false
  }
  return new Promise((resolve, reject) => {
    broker.publish(packet, (error?: Error) => { error ? reject(error) : resolve() })
  })
}

export function publishJson (broker: Aedes, topic: string, value: unknown, qos: 0 | 1): Promise<void> {
  return publishText(broker, topic, JSON.stringify(value), qos)
}
