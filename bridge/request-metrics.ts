// Every HTTP request into one histogram: by route pattern (never the raw URL,
// so ids in paths make no new series), method and status class.
import type { FastifyInstance } from 'fastify'
import type { Histogram } from 'prom-client'

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'])

/** Call before any route is registered. */
export function measureRequests (app: FastifyInstance, histogram: Histogram<'route' | 'method' | 'status'>): void {
  app.addHook('onResponse', async (request, reply) => {
    histogram.observe({
      // A request no route matched (404) has no pattern.
      route: request.routeOptions.url ?? 'unmatched',
      method: METHODS.has(request.method) ? request.method : 'other',
      status: `${Math.floor(reply.statusCode / 100)}xx`
    }, reply.elapsedTime / 1000)
  })
}
