// SUBSCRIBE: a device may subscribe to its own user's inbox, its own errors
// topic, and any single user's presence, at most MAX_PRESENCE_WATCHES of
// them at once. Nothing else: no other inbox, no wildcards, no $SYS.
// Anything else gets SUBACK 0x80.
import type { Client } from 'aedes'
import type { Subscription } from 'aedes'
import { isValidId, parseClientId } from '../../protocol/identity.ts'
import { deviceErrorsTopic, inboxRecipient, inboxTopic, presenceUser } from '../../protocol/topics.ts'

/** Whether the device with this clientId may hold a subscription to `topic`. */
export function mayHold (clientId: string, topic: string): boolean {
  const device = parseClientId(clientId)
  if (device === undefined) return false
  if (topic === inboxTopic(device.userId) || topic === deviceErrorsTopic(device.userId, device.deviceId)) return true
  return isValidId(presenceUser(topic))
}

/**
 * Whether a persistent session keeps this subscription across connections:
 * its own inbox and errors topic only. Presence subscriptions end with the
 * connection (a client subscribes again after each CONNECT anyway, for the
 * retained state), so a session left behind costs nothing for them.
 */
export function keptInSession (clientId: string, topic: string): boolean {
  const device = parseClientId(clientId)
  return device !== undefined && (topic === inboxTopic(device.userId) || topic === deviceErrorsTopic(device.userId, device.deviceId))
}

/**
 * `prepareInbox` runs before an inbox subscription is granted (so before the
 * SUBACK): a persistent session's cursor is created there. If it fails, the
 * subscription is refused (0x80) rather than granted without a queue.
 * `decidePresence` runs before a presence subscription is granted, so the
 * retained state that follows the SUBACK is already filtered by who may see
 * it (presence/presence-visibility.ts). A presence subscription is granted
 * either way: a refusal would tell who is hidden from you. `takeWatch` first
 * takes one of the connection's presence slots (presence-watches.ts); with
 * none left, the topic is refused.
 */
export function createAuthorizeSubscribe (
  prepareInbox: (client: Client) => Promise<void>,
  decidePresence: (viewer: string, subject: string) => Promise<unknown>,
  takeWatch: (client: Client, topic: string) => boolean
) {
  return function authorizeSubscribe (
    client: Client,
    subscription: Subscription,
    done: (error: Error | null, subscription?: Subscription | null) => void
  ): void {
    if (!mayHold(client.id, subscription.topic)) return done(null, null)
    const subject = presenceUser(subscription.topic)
    if (subject !== undefined) {
      if (!takeWatch(client, subscription.topic)) return done(null, null)
      const viewer = parseClientId(client.id)!.userId
      decidePresence(viewer, subject).then(() => done(null, subscription), () => done(null, subscription))
      return
    }
    // QoS 2 may be granted, but the server publishes at QoS 1 (at-least-once),
    // so deliveries arrive at QoS 1 whatever was granted.
    if (inboxRecipient(subscription.topic) === undefined) return done(null, subscription)
    prepareInbox(client).then(() => done(null, subscription), () => done(null, null))
  }
}
