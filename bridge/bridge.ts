// The Fastify bridge: JWT verification (shared with the broker), REST routes
// and the MQTT-over-WebSocket endpoint. Each feature is its own plugin.
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import fastifyJwt from '@fastify/jwt'
import fastifyWebsocket from '@fastify/websocket'
import fastifyCors from '@fastify/cors'
import type { Logger } from 'pino'
import type { Config } from '../config/config.ts'
import { createTokenVerifier, type VerifyToken } from '../auth/token-verifier.ts'
import { clientErrorHandler, frameworkErrors, installErrorHandlers, MAX_PARAM_LENGTH, sendError } from './http-errors.ts'
import { installJsonBodyParser } from './json-body.ts'
import { registerOpenApi } from './openapi.ts'
import { quietProbes } from './request-log.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** The one token verifier, for REST (bridge/require-user.ts) and MQTT CONNECT alike. */
    verifyToken: VerifyToken
  }
}

export async function createBridge (config: Config, log: Logger): Promise<FastifyInstance> {
  const app: FastifyInstance = Fastify({
    loggerInstance: log as FastifyBaseLogger,
    bodyLimit: config.maxPayloadBytes * 2,
    // Unknown body fields are refused, not silently dropped (a client sending
    // `from` should learn that the server does not take it).
    // `discriminator`: a oneOf picked by a property (POST /v1/devices), which OpenAPI 3.0 has, unlike if/then/else.
    ajv: { customOptions: { removeAdditional: false, discriminator: true } },
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    frameworkErrors,
    clientErrorHandler
  })
  installErrorHandlers(app)
  installJsonBodyParser(app)
  quietProbes(app)
  // Ajv turns "1e400" in a query into Infinity and lets it through integer
  // checks; nothing here wants a number that is not finite.
  app.addHook('preHandler', async (request, reply) => {
    for (const [part, values] of [['querystring', request.query], ['params', request.params]] as const) {
      for (const [key, value] of Object.entries((values ?? {}) as Record<string, unknown>)) {
        if (typeof value === 'number' && !Number.isFinite(value)) return sendError(reply, 400, 'invalid_request', `${part}.${key} must be a finite number`, `${part}.${key}`)
      }
    }
  })
  // Registered at the root so its headers also reach 401s from the /v1 scope.
  // Without CORS_ORIGINS nothing is registered: no CORS headers at all.
  if (config.corsOrigins.length > 0) {
    await app.register(fastifyCors, {
      origin: config.corsOrigins[0] === '*' ? '*' : config.corsOrigins,
      methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
      // tus uploads (bridge/routes/attachments.ts) send and read their own headers.
      allowedHeaders: ['Authorization', 'Content-Type', 'Tus-Resumable', 'Upload-Length', 'Upload-Offset', 'Upload-Metadata'],
      exposedHeaders: ['Location', 'Tus-Resumable', 'Upload-Offset', 'Upload-Length'],
      maxAge: 600
    })
  }
  app.decorate('verifyToken', createTokenVerifier(config.jwt, config.jwtClaims))
  // Only signs DEMO_LOGIN tokens (which need JWT_SECRET); tokens are verified by app.verifyToken.
  if (config.jwt.kind === 'secret') {
    const { issuer, audience } = config.jwtClaims
    await app.register(fastifyJwt, {
      secret: config.jwt.secret,
      sign: { ...(issuer === undefined ? {} : { iss: issuer }), ...(audience === undefined ? {} : { aud: audience }) },
      verify: { algorithms: ['HS256', 'HS384', 'HS512'] }
    })
  }
  await app.register(fastifyWebsocket, {
    options: {
      maxPayload: config.maxPayloadBytes + 16 * 1024,
      handleProtocols: (protocols: Set<string>) => protocols.has('mqtt') ? 'mqtt' : false
    }
  })
  await registerOpenApi(app)
  return app
}

/** The verifier the broker uses: the very same one the REST routes use. */
export function tokenVerifier (app: FastifyInstance): VerifyToken {
  return app.verifyToken
}
