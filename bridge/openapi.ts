// The OpenAPI 3.0.3 document at /openapi.json, made by @fastify/swagger from
// the routes' own schemas. Shared schemas (bridge/schemas.ts `components`)
// become `#/components/schemas/<name>`. Rules for every route, checked by
// test/openapi.test.ts: an `operationId` (camelCase, never renamed: clients
// are generated from it) and a `description` on each success response;
// error responses get theirs from describeErrors, and tags come from the path.
import type { FastifyInstance } from 'fastify'
import fastifySwagger from '@fastify/swagger'
import { describeErrors } from './http-errors.ts'
import { components } from './schemas.ts'

/** Operations grouped by what they act on (a generated client's classes): `/v1/groups/:id` → `groups`; `/healthz` → `operations`. */
function tagOf (url: string): string {
  return /^\/v1\/([^/]+)/.exec(url)?.[1] ?? 'operations'
}

export async function registerOpenApi (app: FastifyInstance): Promise<void> {
  for (const [name, schema] of Object.entries(components)) app.addSchema({ $id: name, ...schema })
  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'inboxd REST API', version: '1', description: 'See docs/protocol.md for the MQTT side of the contract.' },
      components: { securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } }
    },
    // Components by their own names (the default is def-0, def-1, ...).
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => typeof json.$id === 'string' ? json.$id : `def-${i}` },
    transform: ({ schema, url }) => ({ schema: schema === undefined ? schema : { tags: [tagOf(url)], ...describeErrors(schema) }, url })
  })
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger())
}
