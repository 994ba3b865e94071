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
  // The product's guarantees are at-least-once; QoS 2 is granted as QoS 1.
  if (subscription.qos > 1) subscription.qos = 1
  done(null, subscription)
}
