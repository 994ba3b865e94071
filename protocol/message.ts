// Validation and stamping of what clients publish to an inbox: a chat
// message `{id, body}` or a typing indicator `{type: "typing"}`. The server
// never looks inside `body`: it may be ciphertext. It only trusts what it can
// vouch for itself: the authenticated sender, the recipient from the topic,
// and its own clock.
import { PublishRejected } from './errors.ts'
import { ID_SOURCE, isValidId, MAX_ID_LENGTH } from './identity.ts'
import { MAX_JSON_DEPTH, nestsDeeperThan } from './json-depth.ts'
import secureJson from 'secure-json-parse'
import { parseAttachmentRequests, type AttachmentRef, type AttachmentRequest } from './attachments.ts'
import { parseReplyTo, type ReplyTo } from './relations.ts'


export interface MessageEnvelope {
  type: 'message'
  id: string
  from: string
  to: string
  ts: number
  /** A reply: the message it answers (protocol/relations.ts). */
  replyTo?: ReplyTo
  body: unknown
  /** Uploaded files, as the server checked them (protocol/attachments.ts). */
  attachments?: AttachmentRef[]
}

/** What a client sends: the server stamps the rest. */
export interface OutgoingMessage { id: string, body: unknown, replyTo?: ReplyTo, attachments?: AttachmentRequest[] }

export type InboxPayload =
  | { type: 'message' } & OutgoingMessage
  | { type: 'typing', active: boolean }

// A too-large payload is not parsed, but an `id` written first (as the SDK
// does) is still picked out, so the sender can tell which message failed.
const SUSPECT_KEY = /"(?:__proto__|constructor)"/
const LEADING_ID = new RegExp(`^\\s*\\{\\s*"id"\\s*:\\s*"(${ID_SOURCE})"`)

/** The message id, if the payload starts with `{"id":"..."` (without parsing the rest). */
export function sniffId (payload: Buffer | string): string | undefined {
  const start = typeof payload === 'string' ? payload.slice(0, 200) : payload.subarray(0, 200).toString('latin1')
  return LEADING_ID.exec(start)?.[1]
}

function parseObject (payload: Buffer, maxBytes: number): Record<string, unknown> {
  if (payload.length > maxBytes) {
    const id = sniffId(payload)
    throw new PublishRejected('payload_too_large', `payload is ${payload.length} bytes; the limit is ${maxBytes}`, id)
  }
  const text = payload.toString('utf8')
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    throw new PublishRejected('invalid_json', 'payload is not valid JSON')
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new PublishRejected('invalid_message', 'payload must be a JSON object {"id", "body"}')
  }
  // Checked once the bytes are known to be JSON (the parser copes with any depth; what comes after may not).
  if (nestsDeeperThan(payload)) {
    throw new PublishRejected('invalid_message', `payload is nested deeper than ${MAX_JSON_DEPTH} levels`, sniffId(payload))
  }
  // The same keys REST refuses (Fastify's secure-json-parse), so both doors take the same messages:
  // a client or server that merges such an object into another would change its prototype.
  if (SUSPECT_KEY.test(text)) {
    try {
      secureJson.scan(parsed, { protoAction: 'error', constructorAction: 'error' })
    } catch {
      throw new PublishRejected('invalid_message', 'payload has a "__proto__" key or a "constructor" with a "prototype"', sniffId(payload))
    }
  }
  return parsed as Record<string, unknown>
}

function messageFields ({ id, body, replyTo, attachments }: Record<string, unknown>): OutgoingMessage {
  // Ids become keys in the history log, so they follow the same rule as user ids.
  if (!isValidId(id)) {
    throw new PublishRejected('invalid_message', `"id" must be 1-${MAX_ID_LENGTH} characters of A-Z a-z 0-9 . _ @ -`)
  }
  if (body === undefined) {
    throw new PublishRejected('invalid_message', '"body" is required (a string or any JSON value)', id)
  }
  const reply = parseReplyTo(replyTo, id)
  const files = parseAttachmentRequests(attachments, id)
  return { id, ...(reply === undefined ? {} : { replyTo: reply }), body, ...(files === undefined ? {} : { attachments: files }) }
}

/** Parses a chat message `{id, body}`; throws PublishRejected naming the problem. */
export function parseOutgoing (payload: Buffer, maxBytes: number): OutgoingMessage {
  return messageFields(parseObject(payload, maxBytes))
}

/** Parses anything a client may publish to an inbox; throws PublishRejected naming the problem. */
export function parseInboxPayload (payload: Buffer, maxBytes: number): InboxPayload {
  const object = parseObject(payload, maxBytes)
  if (object.type === 'typing') {
    if (object.active !== undefined && typeof object.active !== 'boolean') {
      throw new PublishRejected('invalid_message', '"active" must be true or false')
    }
    return { type: 'typing', active: object.active !== false }
  }
  if (object.type !== undefined && object.type !== 'message') {
    throw new PublishRejected('invalid_message', '"type" must be "message" (the default) or "typing"')
  }
  return { type: 'message', ...messageFields(object) }
}

/** `attachments`: the checked references (AttachmentService.reference), not the client's. */
export function stamp (message: OutgoingMessage, from: string, to: string, now: number, attachments?: AttachmentRef[]): MessageEnvelope {
  // Key order is the stored bytes' order: `replyTo` before the body, so headers are read without it.
  const envelope: MessageEnvelope = { type: 'message', id: message.id, from, to, ts: now, ...(message.replyTo === undefined ? {} : { replyTo: message.replyTo }), body: message.body }
  if (attachments !== undefined) envelope.attachments = attachments
  return envelope
}
