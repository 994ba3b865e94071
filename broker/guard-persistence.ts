// Two Aedes 1.2 behaviours the product must not inherit:
//  1. For a persistent session, Aedes stores `packet.subscriptions` (every
//     topic in the SUBSCRIBE, even those authorizeSubscribe refused with
//     0x80). Restored later, such a subscription would leak another user's
//     inbox. So only the device's own inbox and errors topic are ever
//     stored: presence subscriptions end with the connection (a stored one
//     cost about 1 KB of heap in every server process, in the persistence's
//     subscription trie, and 110 B of Redis, for as long as the session
//     lived). One stored by an older version is removed when its session
//     next connects, not restored.
//  2. It calls addSubscriptions once per topic, concurrently, with the same
//     array; aedes-persistence-redis' cluster broadcast then loses all but
//     one waiter and the SUBACK never comes. So one call per array is made.
import type { Client } from 'aedes'
import { keptInSession, mayHold } from './hooks/authorize-subscribe.ts'
import { parseClientId } from '../protocol/identity.ts'
import { isDeviceErrorsTopic, presenceUser } from '../protocol/topics.ts'
import { isBehind } from './backpressure.ts'

interface Subscription { topic: string, qos: number }
interface SubscriptionStore {
  addSubscriptions (client: Client, subs: Subscription[]): Promise<unknown>
  removeSubscriptions (client: Client, topics: string[]): Promise<unknown>
  subscriptionsByClient (client: { id: string }): Promise<Subscription[]>
}

export function guardSubscriptionStore (persistence: SubscriptionStore): void {
  const add = persistence.addSubscriptions.bind(persistence)
  const remove = persistence.removeSubscriptions.bind(persistence)
  const byClient = persistence.subscriptionsByClient.bind(persistence)
  const inflight = new WeakMap<Subscription[], Promise<unknown>>()
  persistence.addSubscriptions = (client, subs) => {
    let pending = inflight.get(subs)
    if (pending === undefined) {
      const kept = subs.filter((sub) => keptInSession(client.id, sub.topic))
      pending = kept.length === 0 ? Promise.resolve(client) : add(client, kept)
      inflight.set(subs, pending)
    }
    return pending
  }
  // An UNSUBSCRIBE of presence topics only has nothing stored to remove.
  persistence.removeSubscriptions = (client, topics) => {
    const kept = topics.filter((topic) => keptInSession(client.id, topic))
    return kept.length === 0 ? Promise.resolve(client) : remove(client, kept)
  }
  // At CONNECT (and for a clean session's cleanup): what the session keeps.
  persistence.subscriptionsByClient = async (client) => {
    const stored = await byClient(client)
    const stale = stored.filter((sub) => !keptInSession(client.id, sub.topic))
    if (stale.length > 0) await remove(client as Client, stale.map((sub) => sub.topic))
    return stale.length === 0 ? stored : stored.filter((sub) => keptInSession(client.id, sub.topic))
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
