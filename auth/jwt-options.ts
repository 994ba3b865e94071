// Builds the @fastify/jwt options from config. The algorithm list is pinned
// to the key type, so a token can never choose its own verification method
// (no `alg: none`, no HS256-with-the-public-key confusion).
import { createPublicKey } from 'node:crypto'
import type { FastifyJWTOptions } from '@fastify/jwt'
import { ConfigError, type JwtKey } from '../config/config.ts'

type Algorithm = 'HS256' | 'HS384' | 'HS512' | 'RS256' | 'RS384' | 'RS512' | 'PS256' | 'PS384' | 'PS512' | 'ES256' | 'ES384' | 'ES512' | 'EdDSA'

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

export function jwtOptions (key: JwtKey): FastifyJWTOptions {
  if (key.kind === 'secret') {
    return { secret: key.secret, verify: { algorithms: ['HS256', 'HS384', 'HS512'] } }
  }
  return {
    secret: { public: key.publicKey },
    verify: { algorithms: algorithmsFor(key.publicKey) }
  }
}
