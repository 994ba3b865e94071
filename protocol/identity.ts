// Who is asking. User and device ids become MQTT topic levels and the
// clientId `<userId>:<deviceId>`, so they must never contain `/`, `+`, `#`
// or `:`; one pattern for both keeps the rule in a single place.

export const MAX_ID_LENGTH = 128
/** One id, unanchored: for embedding in other patterns (JSON Schema, payload sniffing). */
export const ID_SOURCE = `[A-Za-z0-9._@-]{1,${MAX_ID_LENGTH}}`
const ID_PATTERN = new RegExp(`^${ID_SOURCE}$`)

export function isValidId (value: unknown): value is string {
  return typeof value === 'string' && ID_PATTERN.test(value)
}

export interface TokenClaims {
  sub: string
  exp?: number
  /** Issued at (seconds): revocation marks compare against it. */
  iat?: number
}

/** Checks the claims the product relies on; returns a reason when they are unusable. */
export function claimsProblem (payload: unknown): string | undefined {
  if (payload === null || typeof payload !== 'object') return 'token payload is not an object'
  const sub = (payload as { sub?: unknown }).sub
  if (!isValidId(sub)) return 'token "sub" must be 1-128 characters of A-Z a-z 0-9 . _ @ -'
  return undefined
}

export interface DeviceIdentity {
  userId: string
  deviceId: string
  clientId: string
}

/** Splits a clientId of the form `<userId>:<deviceId>`; undefined for any other shape. */
export function parseClientId (clientId: string): DeviceIdentity | undefined {
  const colon = clientId.indexOf(':')
  if (colon < 0) return undefined
  const userId = clientId.slice(0, colon)
  const deviceId = clientId.slice(colon + 1)
  if (!isValidId(userId) || !isValidId(deviceId)) return undefined
  return { userId, deviceId, clientId }
}
