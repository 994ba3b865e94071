// The topic namespace is the wire contract; every topic string is built or
// parsed here and nowhere else.

/** Where a user's devices receive everything addressed to the user. */
export function inboxTopic (userId: string): string {
  return `user/${userId}/inbox`
}

/** Where one device receives errors about what it sent. */
export function deviceErrorsTopic (userId: string, deviceId: string): string {
  return `user/${userId}/device/${deviceId}/errors`
}

const DEVICE_ERRORS = /^user\/[^/]+\/device\/[^/]+\/errors$/

/** True for a device's errors topic. */
export function isDeviceErrorsTopic (topic: string): boolean {
  return DEVICE_ERRORS.test(topic)
}

/**
 * Accepted client publishes are re-published by the server in stamped form;
 * the client's original packet is redirected here so Aedes still sends the
 * PUBACK but delivers the raw packet to no one. Nothing may subscribe to it.
 */
export const SINK_TOPIC = '$inboxd/sink'

const INBOX = /^user\/([^/]+)\/inbox$/

/** The recipient of an inbox topic, or undefined if `topic` is not one. */
export function inboxRecipient (topic: string): string | undefined {
  return INBOX.exec(topic)?.[1]
}

/** Where a member publishes a message to a group (deliveries come on each member's inbox). */
export function groupTopic (groupId: string): string {
  return `group/${groupId}`
}

const GROUP = /^group\/([^/]+)$/

/** The group of a group topic, or undefined if `topic` is not one. */
export function groupOfTopic (topic: string): string | undefined {
  return GROUP.exec(topic)?.[1]
}

/** A user's aggregated presence, retained, published by the server only. */
export function presenceTopic (userId: string): string {
  return `presence/${userId}`
}

const PRESENCE = /^presence\/([^/+#]+)$/

/** The user of a presence topic, or undefined if `topic` is not one. */
export function presenceUser (topic: string): string | undefined {
  return PRESENCE.exec(topic)?.[1]
}

/** True when a subscription pattern could match a presence topic (the only topics ever retained). */
export function mayMatchPresence (pattern: string): boolean {
  return pattern.startsWith('presence/') || pattern.startsWith('+') || pattern.startsWith('#')
}
