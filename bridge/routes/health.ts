// GET /healthz: 200 while the server accepts connections, 503 otherwise
// (starting up or draining on shutdown), for load balancers and orchestrators.
import type { FastifyPluginAsync } from 'fastify'

export interface HealthOptions {
  isReady: () => boolean
  mode: string
}

export const healthRoutes: FastifyPluginAsync<HealthOptions> = async (app, { isReady, mode }) => {
  app.get('/healthz', {
    schema: {
      response: {
        200: { type: 'object', properties: { status: { type: 'string' }, mode: { type: 'string' } } },
        503: { type: 'object', properties: { status: { type: 'string' }, mode: { type: 'string' } } }
      }
    }
  }, async (_request, reply) => {
    const ready = isReady()
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ok' : 'unavailable', mode })
  })
}
