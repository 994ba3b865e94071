// Logout and revocation over REST.
//   POST /v1/sessions/logout            the presented token stops working, and
//                                       the MQTT connections that used it close
//   POST /v1/sessions/logout {all:true} every token of yours issued until now
//   GET  /v1/sessions/current           is this token still good (the SDK asks
//                                       after a refused CONNECT)
//   POST /v1/admin/revoke {user, deviceId?}   with ADMIN_TOKEN: a user, or one
//                                       device's MQTT sessions
// Live connections on every server process close within a second.
import type { FastifyPluginAsync } from 'fastify'
import { timingSafeEqual } from 'node:crypto'
import type { Revocations } from '../../auth/revocations.ts'
import { tokenHash } from '../../auth/revocations.ts'
import type { ClusterSignal } from '../../storage/cluster-signal.ts'
import { sendError, errorSchema } from '../http-errors.ts'
import { bearerSecurity, bearerToken } from '../require-user.ts'
import { idSchema } from '../schemas.ts'

export interface SessionRoutesOptions {
  revocations: Revocations
  signal: ClusterSignal
}

const nowSeconds = (): number => Math.floor(Date.now() / 1000)

export const sessionRoutes: FastifyPluginAsync<SessionRoutesOptions> = async (app, { revocations, signal }) => {
  app.post<{ Body: { all?: boolean } }>('/v1/sessions/logout', {
    schema: {
      operationId: 'logout',
      summary: 'Log out: this token (and the MQTT connections that used it), or with {"all": true} every token of yours issued until now',
      security: bearerSecurity,
      body: { type: 'object', additionalProperties: false, properties: { all: { type: 'boolean', default: false } } },
      response: { 200: { description: 'Logged out', type: 'object', properties: { loggedOut: { type: 'string', enum: ['session', 'all'] } } }, 400: errorSchema, 401: errorSchema }
    }
  }, async (request) => {
    const token = bearerToken(request.headers.authorization)!
    await revocations.revokeToken({ token, ...request.claims })
    if (request.body?.all === true) {
      // Tokens issued in this very second are refused too: a new sign-in needs a token from the next second.
      await revocations.revokeUser(request.userId, nowSeconds())
      await signal.send({ type: 'kick', user: request.userId })
      return { loggedOut: 'all' }
    }
    await signal.send({ type: 'kick', user: request.userId, tokenHash: tokenHash(token) })
    return { loggedOut: 'session' }
  })

  app.get('/v1/sessions/current', {
    schema: {
      operationId: 'getCurrentSession',
      summary: 'The presented token\'s user and times: 200 while it is good, 401 `token_revoked` after a logout or revocation',
      security: bearerSecurity,
      response: { 200: { description: 'The token is good', type: 'object', properties: { user: { type: 'string' }, issuedAt: { type: 'integer' }, expiresAt: { type: 'integer' } } }, 401: errorSchema }
    }
  }, async (request) => {
    const claims = request.claims
    return {
      user: request.userId,
      ...(claims.iat === undefined ? {} : { issuedAt: claims.iat * 1000 }),
      ...(claims.exp === undefined ? {} : { expiresAt: claims.exp * 1000 })
    }
  })
}

export interface AdminRoutesOptions extends SessionRoutesOptions {
  adminToken: string | undefined
}

/** Admin routes exist only when ADMIN_TOKEN is set; they take that token, not a user's JWT. */
export const adminRoutes: FastifyPluginAsync<AdminRoutesOptions> = async (app, { revocations, signal, adminToken }) => {
  if (adminToken === undefined) return
  const expected = Buffer.from(`Bearer ${adminToken}`)
  app.post<{ Body: { user: string, deviceId?: string } }>('/v1/admin/revoke', {
    schema: {
      operationId: 'adminRevoke',
      summary: 'Revoke a user (every token issued until now), or one device\'s MQTT sessions; live connections close',
      body: { type: 'object', required: ['user'], additionalProperties: false, properties: { user: idSchema, deviceId: idSchema } },
      response: { 200: { description: 'Revoked: `user` or `user:deviceId`', type: 'object', properties: { revoked: { type: 'string' } } }, 400: errorSchema, 401: errorSchema }
    }
  }, async (request, reply) => {
    const given = Buffer.from(request.headers.authorization ?? '')
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return sendError(reply, 401, 'unauthorized', 'needs Authorization: Bearer <ADMIN_TOKEN>')
    const { user, deviceId } = request.body
    if (deviceId === undefined) await revocations.revokeUser(user, nowSeconds())
    else await revocations.revokeDevice(user, deviceId, nowSeconds())
    await signal.send({ type: 'kick', user, ...(deviceId === undefined ? {} : { device: deviceId }) })
    return { revoked: deviceId === undefined ? user : `${user}:${deviceId}` }
  })
}
