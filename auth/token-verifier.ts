// The one token verifier: the broker's CONNECT hook and the REST routes both
// call it, so they can never disagree. fast-jwt checks signature and claims;
// the key is JWT_SECRET, JWT_PUBLIC_KEY, or the JWKS key the token's kid
// names. Algorithms are pinned to the key type, so a token can never choose
// its own verification method (no `alg: none`, no HS256 signed with a public key).
import { createPublicKey } from 'node:crypto'
import { createVerifier, type Algorithm, type VerifierOptions } from 'fast-jwt'
import { ConfigError, type JwtClaims, type JwtKey } from '../config/config.ts'
import { ASYMMETRIC_ALGORITHMS, createJwksKeys, KeysUnavailableError } from './jwks-keys.ts'

export { KeysUnavailableError }

/** Resolves with the token's claims, or rejects: KeysUnavailableError (try later) or any other Error (refused). */
export type VerifyToken = (token: string) => Promise<unknown>

function algorithmsFor (publicKeyPem: string): Algorithm[] {
  let type: string | undefined
  try {
    type = createPublicKey(publicKeyPem).asymmetricKeyType
  } catch {
    throw new ConfigError('JWT_PUBLIC_KEY', 'is not a readable PEM public key')
  }
  if (type === 'rsa') return ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512']
  if (type === 'ec') return ['ES256', 'ES384', 'ES512']
  if (type === 'ed25519') return ['EdDSA']
  throw new ConfigError('JWT_PUBLIC_KEY', `has unsupported key type ${type ?? 'unknown'}`)
}

// fast-jwt skips a claim check when the claim is absent: require it too.
function claimOptions ({ issuer, audience }: JwtClaims): Partial<VerifierOptions> {
  return {
    ...(issuer === undefined ? {} : { allowedIss: issuer }),
    ...(audience === undefined ? {} : { allowedAud: audience }),
    requiredClaims: [...(issuer === undefined ? [] : ['iss']), ...(audience === undefined ? [] : ['aud'])]
  }
}

export function createTokenVerifier (key: JwtKey, claims: JwtClaims): VerifyToken {
  const checks = claimOptions(claims)
  if (key.kind === 'secret') {
    const verify = createVerifier({ key: key.secret, algorithms: ['HS256', 'HS384', 'HS512'], ...checks })
    return async (token) => verify(token)
  }
  if (key.kind === 'public-key') {
    const verify = createVerifier({ key: key.publicKey, algorithms: algorithmsFor(key.publicKey), ...checks })
    return async (token) => verify(token)
  }
  const keys = createJwksKeys(key.url, key.cooldownMs)
  const verify = createVerifier({
    key: async ({ header }: { header: { alg?: unknown, kid?: unknown } }) => keys.keyFor(header),
    algorithms: ASYMMETRIC_ALGORITHMS as Algorithm[],
    ...checks
  })
  return async (token) => {
    try {
      return await verify(token)
    } catch (error) {
      // fast-jwt wraps what the key lookup threw as "Cannot fetch key.": pass on the real reason.
      const cause = (error as { originalError?: unknown }).originalError
      throw cause instanceof Error ? cause : error
    }
  }
}
