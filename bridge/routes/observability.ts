// GET /metrics (Prometheus text format; with WORKERS, the whole cluster's
// figures) and GET /readyz (ready to take traffic: listeners up and, in Redis
// mode, Redis answering). /healthz stays the liveness probe.
import type { FastifyPluginAsync } from 'fastify'
import { timingSafeEqual } from 'node:crypto'
import type { Metrics } from '../../observability/metrics.ts'
import { sendError, errorSchema } from '../http-errors.ts'

export interface ObservabilityOptions {
  metrics: Metrics
  /** The cluster's metrics when this process is a worker; this process's otherwise. */
  collect: () => Promise<string>
  /** Bearer token required for /metrics, if set. */
  token: string | undefined
  isReady: () => boolean
  /** Resolves when the storage answers (Redis PING); rejects otherwise. */
  checkStorage: () => Promise<void>
}

function sameSecret (given: string, expected: string): boolean {
  const a = Buffer.from(given)
  const b = Buffer.from(expected)
  return a.length === b.length && timingSafeEqual(a, b)
}

export const observabilityRoutes: FastifyPluginAsync<ObservabilityOptions> = async (app, options) => {
  app.get('/metrics', {
    schema: {
      operationId: 'getMetrics',
      summary: 'Prometheus metrics',
      response: {
        200: { description: 'Prometheus text exposition format', content: { 'text/plain': { schema: { type: 'string' } } } },
        401: { ...errorSchema, description: 'With `METRICS_TOKEN` set: missing or wrong `Authorization: Bearer <METRICS_TOKEN>`' }
      }
    }
  }, async (request, reply) => {
    if (options.token !== undefined && !sameSecret(request.headers.authorization ?? '', `Bearer ${options.token}`)) {
      return sendError(reply, 401, 'unauthorized', 'GET /metrics needs Authorization: Bearer <METRICS_TOKEN>')
    }
    return reply.type(options.metrics.contentType).send(await options.collect())
  })

  app.get('/readyz', {
    schema: {
      operationId: 'getReadiness',
      summary: 'Ready for traffic: listeners up and storage reachable',
      response: {
        200: { description: 'Ready', type: 'object', properties: { status: { type: 'string' } } },
        503: { description: 'Not ready: starting, draining, or storage not answering (`problem` says which)', type: 'object', properties: { status: { type: 'string' }, problem: { type: 'string' } } }
      }
    }
  }, async (_request, reply) => {
    if (!options.isReady()) return reply.code(503).send({ status: 'unavailable', problem: 'not accepting connections' })
    try {
      await options.checkStorage()
    } catch (error) {
      return reply.code(503).send({ status: 'unavailable', problem: `storage: ${(error as Error).message}` })
    }
    return { status: 'ready' }
  })
}
