// JSON Schemas shared by the REST routes (validation and the OpenAPI document).
import { ID_SOURCE } from '../protocol/identity.ts'

export const idSchema = { type: 'string', pattern: `^${ID_SOURCE}$` } as const
export const seqSchema = { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER } as const

/** Any inbox event (`message`, `receipt`, `recall`); see docs/protocol.md. */
export const eventSchema = {
  type: 'object',
  additionalProperties: true,
  required: ['seq', 'type'],
  properties: { seq: { type: 'integer' }, type: { type: 'string' } }
} as const

export const peerParams = {
  type: 'object',
  required: ['peer'],
  properties: { peer: idSchema }
} as const

/** Events are stored as the exact JSON delivered on the inbox. */
export const parseEvent = (json: string): Record<string, unknown> => JSON.parse(json) as Record<string, unknown>
