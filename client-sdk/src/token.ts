// Token lifetimes, read from the JWT itself (no verification: that is the
// server's job) so the SDK can fetch a new one before the server closes the
// connection at `exp`.
export interface TokenInfo {
  token: string
  sub: string
  /** ms since epoch; undefined for a token without `exp`. */
  expiresAt: number | undefined
  issuedAt: number
}

function decodeBase64Url (text: string): string {
  const base64 = text.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(text.length / 4) * 4, '=')
  return decodeURIComponent(Array.from(atob(base64), (c) => '%' + c.charCodeAt(0).toString(16).padStart(2, '0')).join(''))
}

export function readToken (token: string): TokenInfo {
  const payload = JSON.parse(decodeBase64Url(token.split('.')[1] ?? '')) as { sub?: unknown, exp?: unknown }
  if (typeof payload.sub !== 'string') throw new Error('token has no "sub"')
  return {
    token,
    sub: payload.sub,
    expiresAt: typeof payload.exp === 'number' ? payload.exp * 1000 : undefined,
    issuedAt: Date.now()
  }
}

/** When to fetch the next token: a fifth of its lifetime (at most 60 s) before it expires. */
export function refreshAt (info: TokenInfo): number | undefined {
  if (info.expiresAt === undefined) return undefined
  const margin = Math.min(60_000, (info.expiresAt - info.issuedAt) / 5)
  return info.expiresAt - margin
}
