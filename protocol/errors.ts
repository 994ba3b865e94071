// Error events: what a sender gets instead of a silent drop. MQTT 3.1.1 has
// no negative PUBACK, and closing the connection would make the client resend
// the same bad QoS 1 packet forever, so a rejected publish is acknowledged,
// not delivered, and explained on the sending device's own errors topic.

export type ErrorCode =
  | 'invalid_json'
  | 'invalid_message'
  | 'payload_too_large'
  | 'forbidden_topic'
  | 'unknown_recipient'
  | 'id_conflict'
  | 'not_a_member'
  | 'rate_limited'
  | 'too_many_subscriptions'
  | 'internal_error'
  | 'invalid_attachment'

export interface ErrorEvent {
  type: 'error'
  code: ErrorCode
  message: string
  /** The topic the rejected packet was published (or, too_many_subscriptions, subscribed) to. */
  topic: string
  /** The message id, when the payload carried a readable one. */
  id?: string
  /** rate_limited: how long to wait before sending again. */
  retryAfterMs?: number
  ts: number
}

export class PublishRejected extends Error {
  constructor (readonly code: ErrorCode, message: string, readonly id?: string, readonly retryAfterMs?: number) {
    super(message)
  }
}

export function errorEvent (rejection: PublishRejected, topic: string, now: number): ErrorEvent {
  const event: ErrorEvent = { type: 'error', code: rejection.code, message: rejection.message, topic, ts: now }
  if (rejection.id !== undefined) event.id = rejection.id
  if (rejection.retryAfterMs !== undefined) event.retryAfterMs = rejection.retryAfterMs
  return event
}
