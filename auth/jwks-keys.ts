// Public keys from an identity provider's JWKS (JWT_JWKS_URL), so it can
// rotate keys without a restart. jose fetches and caches the set (10 minutes),
// fetches it again when a token names an unknown `kid` but at most once per
// cooldown, and gives up on a fetch after 5 s. On top of that, a failed fetch
// is not retried for a few seconds: a flood of tokens, whatever their kids,
// cannot make us hammer an IdP that is down.
import { KeyObject } from 'node:crypto'
import { createRemoteJWKSet, customFetch } from 'jose'

/** The keys could not be fetched, so the token was not judged: try again later (CONNACK 3, HTTP 503). */
export class KeysUnavailableError extends Error {}

/** Asymmetric only: never HS* (a published key is no secret), never none. */
export const ASYMMETRIC_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA']

// jose's errors that judge the token (or its key), not the IdP's availability.
const TOKEN_PROBLEMS: Record<string, string> = {
  ERR_JWKS_NO_MATCHING_KEY: 'no key in the JWKS matches the token\'s kid and alg',
  ERR_JWKS_MULTIPLE_MATCHING_KEYS: 'the token has no kid and several keys in the JWKS fit it',
  ERR_JOSE_NOT_SUPPORTED: 'the JWKS key for this token is of an unsupported kind'
}

/** Our own refusal to fetch while backing off; never counted as a new failure. */
class BackingOff extends Error {}

const FETCH_TIMEOUT_MS = 5_000
const CACHE_MAX_AGE_MS = 10 * 60_000
/** After a failed fetch; never longer than the cooldown, which tests shorten. */
const RETRY_AFTER_FAILURE_MS = 5_000

export interface JwksKeys {
  /** The PEM public key for a token's header; throws KeysUnavailableError, or an Error that refuses the token. */
  keyFor (header: { alg?: unknown, kid?: unknown }): Promise<string>
}

export function createJwksKeys (url: string, cooldownMs: number): JwksKeys {
  const retryMs = Math.min(cooldownMs, RETRY_AFTER_FAILURE_MS)
  let lastFailure = -Infinity
  const remote = createRemoteJWKSet(new URL(url), {
    timeoutDuration: FETCH_TIMEOUT_MS,
    cooldownDuration: cooldownMs,
    cacheMaxAge: CACHE_MAX_AGE_MS,
    [customFetch]: async (resource, options) => {
      const wait = lastFailure + retryMs - Date.now()
      if (wait > 0) throw new BackingOff(`a fetch failed less than ${retryMs / 1000} s ago; not tried again yet`)
      return await fetch(resource, options)
    }
  })
  // jose hands back the same CryptoKey for the same JWK: convert each once.
  const pems = new WeakMap<CryptoKey, string>()

  return {
    async keyFor (header) {
      const { alg, kid } = header
      // Checked before anything is fetched: such a token never gets a key.
      if (typeof alg !== 'string' || !ASYMMETRIC_ALGORITHMS.includes(alg)) throw new Error(`algorithm ${String(alg)} is not accepted (JWKS keys: ${ASYMMETRIC_ALGORITHMS.join(', ')})`)
      if (kid !== undefined && typeof kid !== 'string') throw new Error('the token\'s kid must be a string')
      let key: CryptoKey
      try {
        key = await remote({ alg, ...(kid === undefined ? {} : { kid }) })
      } catch (error) {
        const problem = TOKEN_PROBLEMS[(error as { code?: string }).code ?? '']
        if (problem !== undefined) throw new Error(problem)
        if (!(error instanceof BackingOff)) lastFailure = Date.now()
        throw new KeysUnavailableError(`the JWKS could not be fetched from ${url}: ${(error as Error).message}`)
      }
      // A token without a kid could be meant for any key: accepted only when there is just one.
      if (kid === undefined && remote.jwks()?.keys.length !== 1) throw new Error('the token has no kid and the JWKS has several keys')
      let pem = pems.get(key)
      if (pem === undefined) {
        pem = KeyObject.from(key).export({ type: 'spki', format: 'pem' }).toString()
        pems.set(key, pem)
      }
      return pem
    }
  }
}
