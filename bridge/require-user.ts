// Authentication for REST: the Bearer token is verified by the same
// @fastify/jwt instance the broker uses, with the same claim rules. Every
// route registered inside this plugin's scope sees `request.userId`.
import type { FastifyInstance, FastifyRequest, FastifyReply } from 'fastify'
import { claimsProblem } from '../protocol/identity.ts'
import { sendError } from './http-errors.ts'
import type { Revocations } from '../auth/revocations.ts'

declare module 'fastify' {
  interface FastifyRequest {
    /** The authenticated user (the token's `sub`). */
    userId: string
  }
}

export function requireUser (app: FastifyInstance, revocations?: Revocations): void {
  app.decorateRequest('userId', '')
  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    let claims: unknown
    try {
      claims = await request.jwtVerify()
    } catch (error) {
      return sendError(reply, 401, 'unauthorized', (error as Error).message)
    }
    const problem = claimsProblem(claims)
    if (problem !== undefined) return sendError(reply, 401, 'unauthorized', problem)
    if (revocations !== undefined) {
      const facts = claims as { sub: string, iat?: number, exp?: number }
      const token = request.headers.authorization!.slice('Bearer '.length)
      if (await revocations.isRevoked({ token, ...facts })) return sendError(reply, 401, 'token_revoked', 'this token was revoked (logout); sign in again')
    }
    request.userId = (claims as { sub: string }).sub
  })
}

/** OpenAPI: every /v1 route takes a Bearer token and may answer 401. */
export const bearerSecurity = [{ bearerAuth: [] }]
