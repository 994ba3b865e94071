// FCM through its HTTP v1 API, without firebase-admin (it needs Node 22):
// an OAuth2 access token from the service-account key (JWT bearer grant: an
// RS256 assertion signed with fast-jwt, posted to the token URI), reused
// until shortly before it expires, then POST .../messages:send with undici.
// FCM_ORIGIN / FCM_TOKEN_URL point both elsewhere (a gateway, a test server),
// trusting FCM_CA in addition to the usual roots.
import { rootCertificates } from 'node:tls'
import { createSigner } from 'fast-jwt'
import { Agent, request } from 'undici'
import type { FcmConfig } from '../config/config.ts'
import type { AlertPush, PushOutcome, PushProvider, PushTarget } from './push-provider.ts'

const SCOPE = 'https://www.googleapis.com/auth/firebase.messaging'
const GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:jwt-bearer'
/** FCM's longest android.ttl: 4 weeks. */
const MAX_TTL_SECONDS = 28 * 24 * 3600
const TIMEOUT_MS = 15_000

class TokenError extends Error {
  constructor (readonly statusCode: number, readonly afterMs: number | undefined, detail: string) {
    super(`token endpoint answered ${statusCode}: ${detail.slice(0, 200)}`)
  }
}

/** Retry-After: delay-seconds or an HTTP date. */
function retryAfterMs (header: string | string[] | undefined): number | undefined {
  const value = Array.isArray(header) ? header[0] : header
  if (value === undefined || value === '') return undefined
  if (/^\d+$/.test(value.trim())) return Number(value) * 1000
  const at = Date.parse(value)
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now())
}

interface FcmErrorBody {
  error?: {
    code?: number
    status?: string
    message?: string
    details?: Array<{ '@type'?: string, errorCode?: string, fieldViolations?: Array<{ field?: string }> }>
  }
}

function parseError (text: string): NonNullable<FcmErrorBody['error']> {
  try {
    return (JSON.parse(text) as FcmErrorBody).error ?? {}
  } catch {
    return {}
  }
}

/** Does a 400 INVALID_ARGUMENT blame the registration token (and not, say, our payload)? */
function blamesToken (error: NonNullable<FcmErrorBody['error']>): boolean {
  const violations = (error.details ?? []).flatMap((detail) => detail.fieldViolations ?? [])
  return violations.some((violation) => violation.field === 'message.token') ||
    /registration token|message\.token/i.test(error.message ?? '')
}

export class FcmProvider implements PushProvider {
  readonly platform = 'android'
  readonly #config: FcmConfig
  readonly #agent: Agent
  readonly #sign: (payload: Record<string, unknown>) => string
  #token: { value: string, refreshAt: number } | undefined
  #fetching: Promise<string> | undefined

  constructor (config: FcmConfig) {
    this.#config = config
    this.#agent = new Agent({
      connections: 16,
      connect: config.ca === undefined ? {} : { ca: [...rootCertificates, config.ca] }
    })
    this.#sign = createSigner({ key: config.privateKey, algorithm: 'RS256', expiresIn: 3600 * 1000 })
  }

  /** The cached access token, or a new one (one fetch at a time, shared by concurrent sends). */
  async #accessToken (): Promise<string> {
    if (this.#token !== undefined && Date.now() < this.#token.refreshAt) return this.#token.value
    this.#fetching ??= this.#fetchToken().finally(() => { this.#fetching = undefined })
    return this.#fetching
  }

  async #fetchToken (): Promise<string> {
    const { clientEmail, tokenUri, tokenUrl } = this.#config
    const startedAt = Date.now()
    // The audience is the key's token_uri even when FCM_TOKEN_URL sends it
    // elsewhere (a proxy forwards it to Google, which checks the audience).
    const assertion = this.#sign({ iss: clientEmail, scope: SCOPE, aud: tokenUri })
    const response = await request(tokenUrl, {
      method: 'POST',
      dispatcher: this.#agent,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: GRANT_TYPE, assertion }).toString(),
      headersTimeout: TIMEOUT_MS,
      bodyTimeout: TIMEOUT_MS
    })
    const text = await response.body.text()
    if (response.statusCode !== 200) throw new TokenError(response.statusCode, retryAfterMs(response.headers['retry-after']), text)
    let body: { access_token?: unknown, expires_in?: unknown }
    try { body = JSON.parse(text) as typeof body } catch { body = {} }
    if (typeof body.access_token !== 'string' || body.access_token === '') throw new TokenError(response.statusCode, undefined, 'no access_token')
    const lifetimeMs = (Number(body.expires_in) > 0 ? Number(body.expires_in) : 3600) * 1000
    // Renew a minute early (a quarter early for short-lived tokens), so a
    // token never expires between here and Google.
    this.#token = { value: body.access_token, refreshAt: startedAt + lifetimeMs - Math.min(60_000, lifetimeMs / 4) }
    return body.access_token
  }

  async send (target: PushTarget, push: AlertPush): Promise<PushOutcome> {
    const startedAt = Date.now()
    let accessToken: string
    try {
      accessToken = await this.#accessToken()
    } catch (error) {
      if (error instanceof TokenError && error.statusCode !== 429 && error.statusCode < 500) {
        // The key itself was refused (revoked, wrong project): no retry will help.
        return { status: 'failed', reason: error.message }
      }
      return { status: 'retry', reason: `access token: ${(error as Error).message}`, afterMs: error instanceof TokenError ? error.afterMs : undefined }
    }
    const ttl = Math.min(MAX_TTL_SECONDS, Math.max(0, push.expiresAt - Math.floor(Date.now() / 1000)))
    const message = {
      token: target.token,
      notification: { title: push.title, body: push.text },
      android: { collapse_key: push.collapseKey, priority: 'HIGH', ttl: `${ttl}s` },
      // FCM data values are strings only.
      data: { conversation: push.data.conversation, id: push.data.id, seq: String(push.data.seq), badge: String(push.badge) }
    }
    let statusCode: number
    let text: string
    let headers: Record<string, string | string[] | undefined>
    try {
      const response = await request(`${this.#config.origin}/v1/projects/${encodeURIComponent(this.#config.projectId)}/messages:send`, {
        method: 'POST',
        dispatcher: this.#agent,
        headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'application/json; charset=utf-8' },
        body: JSON.stringify({ message }),
        headersTimeout: TIMEOUT_MS,
        bodyTimeout: TIMEOUT_MS
      })
      statusCode = response.statusCode
      headers = response.headers
      text = await response.body.text()
    } catch (error) {
      return { status: 'retry', reason: (error as Error).message }
    }
    if (statusCode === 200) return { status: 'sent' }

    const error = parseError(text)
    const errorCode = (error.details ?? []).find((detail) => detail['@type']?.endsWith('FcmError'))?.errorCode
    const reason = `${statusCode} ${errorCode ?? error.status ?? ''}`.trim()
    // FCM answers 404 with UNREGISTERED for a token that is gone; a 404
    // without it (a wrong project or origin) must not remove every token.
    // FCM gives no time of unregistration: "since" is when this request was
    // made, and a registration made after it is kept.
    if (errorCode === 'UNREGISTERED') return { status: 'unregistered', since: startedAt }
    if (statusCode === 400 && (errorCode === 'INVALID_ARGUMENT' || error.status === 'INVALID_ARGUMENT') && blamesToken(error)) {
      return { status: 'bad_token', reason }
    }
    // A token of another Firebase project is never valid for this one.
    if (errorCode === 'SENDER_ID_MISMATCH') return { status: 'bad_token', reason }
    if (statusCode === 401) {
      // The access token was refused (revoked, clock skew): get a new one next time.
      this.#token = undefined
      return { status: 'retry', reason }
    }
    if (statusCode === 429 || statusCode >= 500) return { status: 'retry', reason, afterMs: retryAfterMs(headers['retry-after']) }
    return { status: 'failed', reason }
  }

  async close (): Promise<void> {
    await this.#agent.close()
  }
}
