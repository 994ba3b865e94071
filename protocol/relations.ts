// Relations between messages: a reply (or quote) names the message it answers
// with `replyTo`. Only its shape is checked, never that the message exists:
// the server cannot look inside end-to-end encrypted conversations, and a
// reply to a message since recalled or trimmed is still a message.
import { PublishRejected } from './errors.ts'
import { isValidId } from './identity.ts'

/** `{id, from?}` names a message by its sender's id; `gseq` (groups) by its number in the group log. */
export interface ReplyTo {
  id?: string
  from?: string
  gseq?: number
}

const KEYS = new Set(['id', 'from', 'gseq'])

/** Validates an optional `replyTo`; returns it rebuilt in a fixed key order (undefined when absent). */
export function parseReplyTo (value: unknown, messageId: string): ReplyTo | undefined {
  if (value === undefined) return undefined
  const fail = (): never => {
    throw new PublishRejected('invalid_message', '"replyTo" must be {"id", "from"?} or {"gseq"} (ids of A-Z a-z 0-9 . _ @ -, gseq a positive integer)', messageId)
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return fail()
  const { id, from, gseq } = value as Record<string, unknown>
  if (Object.keys(value).some((key) => !KEYS.has(key))) return fail()
  if (id !== undefined && !isValidId(id)) return fail()
  if (from !== undefined && !isValidId(from)) return fail()
  if (gseq !== undefined && !(typeof gseq === 'number' && Number.isSafeInteger(gseq) && gseq > 0)) return fail()
  if (id === undefined && gseq === undefined) return fail()
  return { ...(id === undefined ? {} : { id }), ...(from === undefined ? {} : { from }), ...(gseq === undefined ? {} : { gseq }) }
}
