// REST rate limit (@fastify/rate-limit): requests per minute per user (or,
// before sign-in, per address), counted in Redis in Redis mode so the limit
// holds across processes. On a Redis Cluster too: the plugin's Redis store
// (11.x) sends only two scripts (EVALSHA, defined with ioredis'
// defineCommand, which a Cluster routes by KEYS[1]), each touching its one
// declared key: `inboxd:rl:{u:<user>}` (the user's slot) or
// `inboxd:rl:{ip:<address>}`. Over it: 429 {"error":"rate_limited"} with
// `retry-after`. Health, metrics and the MQTT WebSocket are not limited.
import type { FastifyInstance } from 'fastify'
import fastifyRateLimit from '@fastify/rate-limit'
import type { RedisClient } from '../storage/redis-client.ts'
import { userTag } from '../storage/redis-keys.ts'

export async function limitRest (app: FastifyInstance, perMinute: number, redis: RedisClient | undefined): Promise<void> {
  if (perMinute === 0) return
  await app.register(fastifyRateLimit, {
    max: perMinute,
    timeWindow: 60_000,
    ...(redis === undefined ? {} : { redis, nameSpace: 'inboxd:rl:' }),
    allowList: (request) => !request.url.startsWith('/v1/'),
    // After authentication (onRequest), so the key is the verified user: a new
    // token does not reset the count, and a forged one cannot spend another's.
    hook: 'preHandler',
    // (userId is only decorated inside the /v1 scope: elsewhere it is undefined.)
    keyGenerator: (request) => typeof request.userId === 'string' && request.userId !== '' ? userTag(request.userId) : `{ip:${request.ip}}`,
    // Our error shape whether the plugin throws it (to the error handler) or sends it.
    errorResponseBuilder: (_request, context) => ({ statusCode: 429, error: 'rate_limited', message: `more than ${context.max} requests per minute; retry in ${context.after}` })
  })
}
