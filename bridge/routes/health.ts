// GET /healthz: 200 while the server accepts connections, 503 otherwise
// (starting up or draining on shutdown), for load balancers and orchestrators.
import type { FastifyPluginAsync } from 'fastify'

export interface HealthOptions {
  isReady: () => boolean
  mode: string
  /** Redis mode on a Redis Cluster. */
  cluster: boolean
}

export const healthRoutes: FastifyPluginAsync<HealthOptions> = async (app, { isReady, mode, cluster }) => {
  app.get('/healthz', {
    schema: {
      operationId: 'getHealth',
      summary: 'Liveness: whether this process accepts connections',
      response: {
        200: { description: 'Accepting connections', type: 'object', properties: { status: { type: 'string' }, mode: { type: 'string' }, cluster: { type: 'boolean' } } },
        503: { description: 'Starting up or draining on shutdown', type: 'object', properties: { status: { type: 'string' }, mode: { type: 'string' }, cluster: { type: 'boolean' } } }
      }
    }
  }, async (_request, reply) => {
    const ready = isReady()
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ok' : 'unavailable', mode, cluster })
  })
}
