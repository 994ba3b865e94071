// REST rate limit (@fastify/rate-limit): requests per minute per token (or,
// without one, per address), counted in Redis in Redis mode so the limit
// holds across processes. Over it: 429 {"error":"rate_limited"} with
// `retry-after`. Health, metrics and the MQTT WebSocket are not limited.
import type { FastifyInstance } from 'fastify'
import fastifyRateLimit from '@fastify/rate-limit'
import type { Redis } from 'ioredis'
import { createHash } from 'node:crypto'

export async function limitRest (app: FastifyInstance, perMinute: number, redis: Redis | undefined): Promise<void> {
  if (perMinute === 0) return
  await app.register(fastifyRateLimit, {
    max: perMinute,
    timeWindow: 60_000,
    ...(redis === undefined ? {} : { redis, nameSpace: 'inboxd:rl:' }),
    allowList: (request) => !request.url.startsWith('/v1/'),
    keyGenerator: (request) => {
      const authorization = request.headers.authorization
      return authorization === undefined ? `ip:${request.ip}` : `t:${createHash('sha256').update(authorization).digest('base64url')}`
    },
    // Our error shape whether the plugin throws it (to the error handler) or sends it.
    errorResponseBuilder: (_request, context) => ({ statusCode: 429, error: 'rate_limited', message: `more than ${context.max} requests per minute; retry in ${context.after}` })
  })
}
