// Who is signed in, and where their tokens come from. The page never holds
// JWT_SECRET: it gets tokens from the development-only demo route
// (DEMO_LOGIN=1), or from a token the user pastes or passes in the URL
// fragment (#token=..., which browsers never send to a server).
//
// The session is kept in sessionStorage: it survives a reload, and each tab
// can be a different user (handy for trying two users side by side).

export type Session =
  | { kind: 'demo', user: string }
  | { kind: 'token', token: string }

const KEY = 'inboxd.session'

export interface Claims {
  sub: string
  /** ms since epoch; undefined for a token without `exp`. */
  expiresAt: number | undefined
}

/** Reads a JWT's claims without verifying it (the server does that); undefined if it is not a JWT with a `sub`. */
export function readClaims (token: string): Claims | undefined {
  try {
    const part = token.split('.')[1] ?? ''
    const json = atob(part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '='))
    const payload = JSON.parse(decodeURIComponent(Array.from(json, (c) => '%' + c.charCodeAt(0).toString(16).padStart(2, '0')).join(''))) as { sub?: unknown, exp?: unknown }
    if (typeof payload.sub !== 'string') return undefined
    return { sub: payload.sub, expiresAt: typeof payload.exp === 'number' ? payload.exp * 1000 : undefined }
  } catch {
    return undefined
  }
}

export function loadSession (): Session | undefined {
  try {
    const saved = JSON.parse(sessionStorage.getItem(KEY) ?? 'null') as Session | null
    return saved ?? undefined
  } catch {
    return undefined
  }
}

export function saveSession (session: Session): void {
  sessionStorage.setItem(KEY, JSON.stringify(session))
}

export function clearSession (): void {
  sessionStorage.removeItem(KEY)
}

/** A token passed as `#token=<jwt>`; removed from the address bar at once so it is not bookmarked or shared. */
export function takeTokenFromFragment (): string | undefined {
  const match = /(?:^#|&)token=([^&]+)/.exec(location.hash)
  if (match === null) return undefined
  history.replaceState(null, '', location.pathname + location.search + '#/')
  return decodeURIComponent(match[1]!)
}

export const USER_ID = /^[A-Za-z0-9._@-]{1,128}$/
/** The same rule for an input's `pattern` attribute (compiled with the `v` flag, where a bare `-` is not allowed). */
export const USER_ID_PATTERN = '[A-Za-z0-9._@\\-]{1,128}'
/** What a refused user name is told. */
export const USER_ID_RULE = 'A user name is 1–128 characters: letters A–Z a–z, digits 0–9, and . _ @ - (no spaces).'

/** Makes the browser's refusal of a user-name field say what is allowed (its own says only "match the requested format"). */
export function explainUserId (input: HTMLInputElement): void {
  input.title = USER_ID_RULE
  input.addEventListener('invalid', () => { input.setCustomValidity(input.validity.patternMismatch ? USER_ID_RULE : '') })
  input.addEventListener('input', () => { input.setCustomValidity('') })
}

/** The development sign-in: the server mints a short-lived token for `user`. */
export async function demoToken (user: string): Promise<string> {
  const response = await fetch('/v1/demo/token', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user })
  })
  if (response.status === 404) throw new Error('This server does not offer the development sign-in (DEMO_LOGIN is off): paste a token instead.')
  const body = await response.json().catch(() => ({})) as { token?: string, message?: string }
  if (!response.ok || body.token === undefined) throw new Error(body.message ?? `demo sign-in failed (${response.status})`)
  return body.token
}

/** Asks the server whether it accepts `token` (a cheap authenticated call); throws its reason if not. */
export async function checkToken (token: string): Promise<void> {
  const response = await fetch('/v1/conversations?limit=1', { headers: { authorization: `Bearer ${token}` } })
  if (response.ok) return
  const body = await response.json().catch(() => ({})) as { message?: string }
  throw new Error(response.status === 401 ? `The server refused this token: ${body.message ?? 'unauthorized'}` : `The server answered ${response.status}`)
}

export class TokenExpired extends Error {
  constructor () {
    super('Your token has expired. Paste a new one to sign in again.')
  }
}

/**
 * The SDK's `getToken`. Demo sessions mint a fresh token when the current
 * one is close to expiry (and reuse it otherwise, so a reconnect while the
 * network is down does not fail on the token). A pasted token is all there
 * is: once it expires, the user must sign in again.
 */
export function tokenSource (session: Session, onExpired: () => void): () => Promise<string> {
  if (session.kind === 'token') {
    return async () => {
      const expiresAt = readClaims(session.token)?.expiresAt
      if (expiresAt !== undefined && expiresAt <= Date.now()) {
        onExpired()
        throw new TokenExpired()
      }
      return session.token
    }
  }
  let current: { token: string, expiresAt: number } | undefined
  return async () => {
    if (current === undefined || current.expiresAt - Date.now() < 90_000) {
      const token = await demoToken(session.user)
      current = { token, expiresAt: readClaims(token)?.expiresAt ?? Date.now() + 60_000 }
    }
    return current.token
  }
}
