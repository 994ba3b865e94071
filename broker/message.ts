// Validation and stamping of a chat message. The server never looks inside
// `body`: it may be ciphertext. It only trusts what it can vouch for itself:
// the authenticated sender, the recipient from the topic, and its own clock.
import { PublishRejected } from './errors.ts'
import { isValidId } from '../auth/identity.ts'

export const MAX_ID_LENGTH = 128

export interface MessageEnvelope {
  type: 'message'
  id: string
  from: string
  to: string
  ts: number
  body: unknown
}

/** Parses a client payload `{id, body}`; throws PublishRejected naming the problem. */
export function parseOutgoing (payload: Buffer, maxBytes: number): { id: string, body: unknown } {
  if (payload.length > maxBytes) {
    throw new PublishRejected('payload_too_large', `payload is ${payload.length} bytes; the limit is ${maxBytes}`)
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(payload.toString('utf8'))
  } catch {
    throw new PublishRejected('invalid_json', 'payload is not valid JSON')
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new PublishRejected('invalid_message', 'payload must be a JSON object {"id", "body"}')
  }
  const { id, body } = parsed as { id?: unknown, body?: unknown }
  // Ids become keys in the history log, so they follow the same rule as user ids.
  if (!isValidId(id)) {
    throw new PublishRejected('invalid_message', `"id" must be 1-${MAX_ID_LENGTH} characters of A-Z a-z 0-9 . _ @ -`)
  }
  if (body === undefined) {
    throw new PublishRejected('invalid_message', '"body" is required (a string or any JSON value)', id)
  }
  return { id, body }
}

export function stamp (message: { id: string, body: unknown }, from: string, to: string, now: number): MessageEnvelope {
  return { type: 'message', id: message.id, from, to, ts: now, body: message.body }
}
