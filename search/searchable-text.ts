// What of a message body search may read. The server never decrypts: an
// end-to-end-encrypted body (client-sdk/src/e2ee.ts: an object with an `e2ee`
// field) is never indexed, whatever else it carries.

/**
 * A string body is its text; an object body with a string `text` field, that field; anything else
 * (encrypted, binary-ish, other shapes): undefined. Without NUL characters, which PostgreSQL's text
 * refuses: one in a message would otherwise fail every batch holding it.
 */
export function searchableText (body: unknown): string | undefined {
  if (typeof body === 'string') return withoutNul(body)
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return undefined
  if ('e2ee' in body) return undefined
  const text = (body as { text?: unknown }).text
  return typeof text === 'string' ? withoutNul(text) : undefined
}

function withoutNul (text: string): string {
  return text.includes('\u0000') ? text.replaceAll('\u0000', '') : text
}
