// Authentication for REST: the Bearer token is verified by the same verifier
// the broker uses (app.verifyToken), with the same claim rules. Every route
// registered inside this plugin's scope sees `request.userId` and `request.claims`.
import type { FastifyInstance, FastifyRequest, FastifyReply } from 'fastify'
import { claimsProblem, type TokenClaims } from '../protocol/identity.ts'
import { sendError } from './http-errors.ts'
import type { Revocations } from '../auth/revocations.ts'
import { KeysUnavailableError } from '../auth/token-verifier.ts'

declare module 'fastify' {
  interface FastifyRequest {
    /** The authenticated user (the token's `sub`). */
    userId: string
    /** The verified token's claims. */
    claims: TokenClaims
  }
}

/** `Authorization: Bearer <token>`, one space, as the SDK and docs send it. */
export function bearerToken (authorization: string | undefined): string | undefined {
  return /^Bearer ([^ ]+)$/i.exec(authorization ?? '')?.[1]
}

export function requireUser (app: FastifyInstance, revocations?: Revocations): void {
  app.decorateRequest('userId', '')
  app.decorateRequest('claims', null as unknown as TokenClaims)
  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    const token = bearerToken(request.headers.authorization)
    if (token === undefined) return sendError(reply, 401, 'unauthorized', 'needs Authorization: Bearer <token>')
    let claims: unknown
    try {
      claims = await app.verifyToken(token)
    } catch (error) {
      if (error instanceof KeysUnavailableError) {
        request.log.warn({ err: error.message }, 'request refused: token keys unavailable')
        reply.header('retry-after', '5')
        return sendError(reply, 503, 'auth_unavailable', 'the server cannot fetch the keys that check tokens right now; retry shortly')
      }
      return sendError(reply, 401, 'unauthorized', (error as Error).message)
    }
    const problem = claimsProblem(claims)
    if (problem !== undefined) return sendError(reply, 401, 'unauthorized', problem)
    const facts = claims as TokenClaims
    if (revocations !== undefined && await revocations.isRevoked({ token, ...facts })) {
      return sendError(reply, 401, 'token_revoked', 'this token was revoked (logout); sign in again')
    }
    request.userId = facts.sub
    request.claims = facts
  })
}

/** OpenAPI: every /v1 route takes a Bearer token and may answer 401. */
export const bearerSecurity = [{ bearerAuth: [] }]
