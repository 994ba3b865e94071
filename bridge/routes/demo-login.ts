// DEVELOPMENT ONLY (DEMO_LOGIN=1, refused when NODE_ENV=production):
// POST /v1/demo/token {"user"} mints a short-lived token for any user name,
// so the web page can be tried without an auth service and without ever
// holding JWT_SECRET. Real apps get tokens from their own auth service.
import type { FastifyPluginAsync } from 'fastify'
import { idSchema } from '../schemas.ts'

/** Short, so a demo token is of little use elsewhere; the SDK fetches a new one before it expires. */
export const DEMO_TOKEN_TTL_SECONDS = 15 * 60

export const demoLoginRoutes: FastifyPluginAsync = async (app) => {
  app.log.warn('DEMO_LOGIN is on: POST /v1/demo/token gives anyone a token for any user (development only)')
  app.post<{ Body: { user: string } }>('/v1/demo/token', {
    schema: {
      // Not part of the product's API: kept out of the OpenAPI document.
      hide: true,
      body: {
        type: 'object',
        required: ['user'],
        additionalProperties: false,
        properties: { user: idSchema }
      }
    }
  }, async (request) => {
    const token = app.jwt.sign({ sub: request.body.user }, { expiresIn: DEMO_TOKEN_TTL_SECONDS })
    return { token, expiresIn: DEMO_TOKEN_TTL_SECONDS, demo: true }
  })
}
