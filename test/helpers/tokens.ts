// Test tokens. Signing goes through fast-jwt (what @fastify/jwt uses); the
// hostile tokens (alg none, forged, malformed) are built by hand.
import { createSigner } from 'fast-jwt'
import { createHmac } from 'node:crypto'

export const SECRET = 'test-secret-test-secret-test-secret-0123456789'

export function token (sub: string, options: { expiresInMs?: number, secret?: string } = {}): string {
  const sign = createSigner({ key: options.secret ?? SECRET, algorithm: 'HS256', ...(options.expiresInMs === undefined ? {} : { expiresIn: options.expiresInMs }) })
  return sign({ sub })
}

const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')

export function expiredToken (sub: string): string {
  const now = Math.floor(Date.now() / 1000)
  const header = b64({ alg: 'HS256', typ: 'JWT' })
  const payload = b64({ sub, iat: now - 120, exp: now - 60 })
  const signature = createHmac('sha256', SECRET).update(`${header}.${payload}`).digest('base64url')
  return `${header}.${payload}.${signature}`
}

export function unsignedToken (sub: string): string {
  return `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ sub })}.`
}

export function forgedToken (sub: string): string {
  return token(sub, { secret: 'not-the-server-secret-not-the-server-secret' })
}

let counter = 0
/** A user id no other test (or earlier run) uses, so shared Redis pub/sub never cross-talks. */
export function uniqueUser (name: string): string {
  return `${name}-${process.pid}-${Date.now().toString(36)}-${counter++}`
}
