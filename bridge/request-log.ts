// Probes (load balancers, orchestrators, Prometheus) call /healthz, /readyz
// and /metrics every few seconds: at info they were most lines of a run's log.
// Their requests are logged from `warn` up only; every other route keeps
// Fastify's request lines.
import type { FastifyInstance } from 'fastify'

export const PROBE_ROUTES = new Set(['/healthz', '/readyz', '/metrics'])

/** Call before the probe routes are registered. */
export function quietProbes (app: FastifyInstance): void {
  app.addHook('onRoute', (route) => {
    if (PROBE_ROUTES.has(route.url)) route.logLevel = 'warn'
  })
}
