// SUBSCRIBE: a device may subscribe to its own user's inbox and to its own
// errors topic, nothing else: no other inbox, no wildcards, no $SYS.
// Anything else gets SUBACK 0x80.
import type { Client } from 'aedes'
import type { Subscription } from 'aedes'
import { parseClientId } from '../../auth/identity.ts'
import { deviceErrorsTopic, inboxTopic } from '../topics.ts'

export function allowedSubscriptions (clientId: string): string[] {
  const device = parseClientId(clientId)
  if (device === undefined) return []
  return [inboxTopic(device.userId), deviceErrorsTopic(device.userId, device.deviceId)]
}

export function authorizeSubscribe (
  client: Client,
  subscription: Subscription,
  done: (error: Error | null, subscription?: Subscription | null) => void
): void {
  if (!allowedSubscriptions(client.id).includes(subscription.topic)) return done(null, null)
  // QoS 2 may be granted, but the server publishes at QoS 1 (at-least-once),
  // so deliveries arrive at QoS 1 whatever was granted.
  done(null, subscription)
}
