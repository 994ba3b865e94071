// Two Aedes 1.2 behaviours the product must not inherit:
//  1. For a persistent session, Aedes stores `packet.subscriptions` (every
//     topic in the SUBSCRIBE, even those authorizeSubscribe refused with
//     0x80). Restored later, such a subscription would leak another user's
//     inbox. So only topics this device may hold are ever stored.
//  2. It calls addSubscriptions once per topic, concurrently, with the same
//     array; aedes-persistence-redis' cluster broadcast then loses all but
//     one waiter and the SUBACK never comes. So one call per array is made.
import type { Client } from 'aedes'
import { mayHold } from './hooks/authorize-subscribe.ts'
import { parseClientId } from '../protocol/identity.ts'
import { isDeviceErrorsTopic, presenceUser } from '../protocol/topics.ts'
import { isBehind } from './backpressure.ts'

interface Subscription { topic: string, qos: number }
interface SubscriptionStore {
  addSubscriptions (client: Client, subs: Subscription[]): Promise<unknown>
}

export function guardSubscriptionStore (persistence: SubscriptionStore): void {
  const add = persistence.addSubscriptions.bind(persistence)
  const inflight = new WeakMap<Subscription[], Promise<unknown>>()
  persistence.addSubscriptions = (client, subs) => {
    let pending = inflight.get(subs)
    if (pending === undefined) {
      const permitted = subs.filter((sub) => mayHold(client.id, sub.topic))
      pending = permitted.length === 0 ? Promise.resolve(client) : add(client, permitted)
      inflight.set(subs, pending)
    }
    return pending
  }
}

/**
 * Defence in depth: whatever is in the store, a device is only ever sent its
 * own topics; and another user's presence only when `maySee` (blocks, and
 * PRESENCE_VISIBILITY) allows it. Also where QoS 0 packets to a device that
 * is behind are dropped (see backpressure.ts).
 */
export function createAuthorizeForward (maySee: (viewer: string, subject: string) => boolean, onDropped?: () => void) {
  return function authorizeForward (client: Client, packet: { topic: string, qos?: number }): typeof packet | null {
    if (!mayHold(client.id, packet.topic)) return null
    if (packet.qos === 0 && isBehind(client, isDeviceErrorsTopic(packet.topic))) {
      onDropped?.()
      return null
    }
    const subject = presenceUser(packet.topic)
    if (subject === undefined) return packet
    const viewer = parseClientId(client.id)?.userId
    return viewer !== undefined && maySee(viewer, subject) ? packet : null
  }
}
