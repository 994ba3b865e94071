// JSON Schemas shared by the REST routes (validation and the OpenAPI document).
// The named ones are OpenAPI components: bridge/openapi.ts adds each with
// `app.addSchema`, and routes point at them with `ref(name)`, so a generated
// client gets one `Group` type, not one per route.
import { ID_SOURCE } from '../protocol/identity.ts'
import { errorBodySchema } from './http-errors.ts'

export const idSchema = { type: 'string', pattern: `^${ID_SOURCE}$` } as const
export const seqSchema = { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER } as const
export const roleSchema = { type: 'string', enum: ['owner', 'admin', 'member'] } as const

export const components = {
  Error: errorBodySchema,
  Event: {
    description: 'An event of your log (`message`, `receipt`, `recall`, group events, ...), the exact JSON delivered on your inbox; see docs/protocol.md',
    type: 'object',
    additionalProperties: true,
    required: ['seq', 'type'],
    properties: { seq: { type: 'integer' }, type: { type: 'string' } }
  },
  GroupEvent: {
    description: 'An event of a group\'s log, numbered by `gseq`; see docs/protocol.md',
    type: 'object',
    additionalProperties: true,
    properties: { gseq: { type: 'integer' }, type: { type: 'string' } }
  },
  Group: {
    type: 'object',
    properties: {
      id: { type: 'string' },
      name: { type: 'string' },
      meta: { type: 'object', nullable: true, additionalProperties: true },
      creator: { type: 'string' },
      createdAt: { type: 'integer' },
      members: { type: 'array', items: { type: 'object', properties: { user: { type: 'string' }, role: roleSchema } } }
    }
  },
  Conversation: {
    type: 'object',
    properties: {
      peer: { type: 'string', description: 'the other person (1:1 conversations)' },
      group: { type: 'string', description: 'the group id (group conversations; see /v1/groups)' },
      lastSeq: { type: 'integer' },
      lastMessage: { allOf: [{ $ref: 'Event#' }], nullable: true },
      unread: { type: 'integer' },
      readUpTo: { type: 'integer' },
      peerReadUpTo: { type: 'integer' },
      peerDeliveredUpTo: { type: 'integer' }
    }
  },
  Presence: {
    type: 'object',
    properties: {
      user: { type: 'string' },
      status: { type: 'string', enum: ['online', 'offline'] },
      ts: { type: 'integer', description: 'when the status last changed (ms); 0 if never seen' },
      lastSeen: { type: 'integer', description: 'when last connected (ms); now if online; 0 if never seen' }
    }
  },
  Device: {
    type: 'object',
    properties: {
      deviceId: { type: 'string' },
      platform: { type: 'string' },
      token: { type: 'string' },
      sandbox: { type: 'boolean' },
      registeredAt: { type: 'integer' }
    }
  },
  PublicKey: {
    type: 'object',
    properties: { user: { type: 'string' }, publicKey: { type: 'string' }, updatedAt: { type: 'integer' } }
  },
  Block: { type: 'object', properties: { user: { type: 'string' }, since: { type: 'integer', description: 'ms' } } }
} as const

export type ComponentName = keyof typeof components

/** A reference to a shared schema (an OpenAPI component). */
export const ref = <N extends ComponentName>(name: N): { $ref: `${N}#` } => ({ $ref: `${name}#` })

/** Any inbox event (`message`, `receipt`, `recall`); see docs/protocol.md. */
export const eventSchema = ref('Event')

export const peerParams = {
  type: 'object',
  required: ['peer'],
  properties: { peer: idSchema }
} as const

/** Events are stored as the exact JSON delivered on the inbox. */
export const parseEvent = (json: string): Record<string, unknown> => JSON.parse(json) as Record<string, unknown>
