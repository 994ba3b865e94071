// The JSON body parser: Fastify's own (secure-json-parse, which refuses
// `__proto__` and `constructor.prototype` keys), behind a depth check on the
// raw text. Fastify copes with a deep body, but validation, handlers and
// serialisation do not (JSON.stringify overflows its stack), so a body
// nested deeper than MAX_JSON_DEPTH is a 400 before anything looks at it.
import type { FastifyInstance } from 'fastify'
import { MAX_JSON_DEPTH, nestsDeeperThan } from '../protocol/json-depth.ts'

/** Fastify error code for a body nested too deeply (mapped to 400 invalid_request in http-errors.ts). */
export const JSON_TOO_DEEP = 'INBOXD_JSON_TOO_DEEP'

export function installJsonBodyParser (app: FastifyInstance): void {
  const parseJson = app.getDefaultJsonParser('error', 'error')
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if (nestsDeeperThan(body as string)) {
      const error = Object.assign(new Error(`body is nested deeper than ${MAX_JSON_DEPTH} levels`), { code: JSON_TOO_DEEP, statusCode: 400 })
      return done(error, undefined)
    }
    parseJson(request, body as string, done)
  })
}
