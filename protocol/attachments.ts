// The `attachments` field of a message: references to uploaded files, outside
// the body so the server can check who may reference them and grant the
// conversation read access. The client names an upload by its id (and may add
// a small inline thumbnail); the server fills in `size` and `type` from the
// upload itself, so they are never what a client merely claims.
import { PublishRejected } from './errors.ts'
import { isValidId } from './identity.ts'

/** At most this many attachments per message. */
export const MAX_ATTACHMENTS = 10
/** An inline thumbnail: base64 of a small image, at most this many characters (6 KiB of image). */
export const MAX_THUMBNAIL_CHARS = 8192
/** A media type such as `image/jpeg`, at most 100 characters. */
export const MEDIA_TYPE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}$/
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/
const KEYS = new Set(['id', 'size', 'type', 'thumbnail'])

export interface AttachmentRef {
  id: string
  /** Bytes stored (for an end-to-end encrypted file: of the ciphertext). */
  size: number
  type: string
  thumbnail?: string
}

/** What a client sends: the id and an optional thumbnail (`size` and `type`, if given, are replaced by the server's). */
export type AttachmentRequest = Pick<AttachmentRef, 'id' | 'thumbnail'>

export function isMediaType (value: unknown): value is string {
  return typeof value === 'string' && value.length <= 100 && MEDIA_TYPE.test(value)
}

/** Validates a message's `attachments` (undefined: none); throws PublishRejected('invalid_message'). */
export function parseAttachmentRequests (value: unknown, messageId: string): AttachmentRequest[] | undefined {
  if (value === undefined) return undefined
  const refuse = (problem: string): never => { throw new PublishRejected('invalid_message', `"attachments" ${problem}`, messageId) }
  if (!Array.isArray(value) || value.length === 0 || value.length > MAX_ATTACHMENTS) refuse(`must be an array of 1-${MAX_ATTACHMENTS} {"id", "thumbnail"?}`)
  const seen = new Set<string>()
  return (value as unknown[]).map((item) => {
    if (item === null || typeof item !== 'object' || Array.isArray(item)) return refuse('items must be objects {"id", "thumbnail"?}')
    const { id, thumbnail } = item as Record<string, unknown>
    const unknown = Object.keys(item).find((key) => !KEYS.has(key))
    if (unknown !== undefined) refuse(`items take "id" and "thumbnail" ("size" and "type" come from the upload), not "${unknown}"`)
    if (!isValidId(id)) refuse('item "id" must be an upload id')
    if (seen.has(id as string)) refuse(`names "${id as string}" twice`)
    seen.add(id as string)
    if (thumbnail !== undefined && (typeof thumbnail !== 'string' || thumbnail.length > MAX_THUMBNAIL_CHARS || !BASE64.test(thumbnail))) {
      refuse(`item "thumbnail" must be base64 of at most ${MAX_THUMBNAIL_CHARS} characters`)
    }
    return thumbnail === undefined ? { id: id as string } : { id: id as string, thumbnail: thumbnail as string }
  })
}
