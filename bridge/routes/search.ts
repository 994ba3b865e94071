// GET /v1/search: the caller's own messages matching a query (archive/search-service.ts).
// Without a search index (Redis mode without DATABASE_URL), or while it cannot
// be reached (PostgreSQL not open yet, or failing): 503 search_unavailable.
import type { FastifyPluginAsync } from 'fastify'
import { MAX_QUERY_LENGTH, SearchQueryError, SearchUnavailableError, type SearchService } from '../../archive/search-service.ts'
import { errorSchema, sendError } from '../http-errors.ts'
import { bearerSecurity } from '../require-user.ts'
import { eventSchema, idSchema, seqSchema } from '../schemas.ts'

interface Query { q: string, peer?: string, group?: string, before?: number, limit: number, order: 'newest' | 'relevance' }

export const searchRoutes: FastifyPluginAsync<{ search: SearchService | undefined }> = async (app, { search }) => {
  app.get<{ Querystring: Query }>('/v1/search', {
    schema: {
      operationId: 'searchMessages',
      summary: 'Search your own messages (newest first, or by relevance)',
      security: bearerSecurity,
      querystring: {
        type: 'object',
        required: ['q'],
        additionalProperties: false,
        properties: {
          q: { type: 'string', minLength: 1, maxLength: MAX_QUERY_LENGTH },
          peer: idSchema,
          group: idSchema,
          before: { ...seqSchema, description: 'The `next` of the previous page' },
          limit: { type: 'integer', minimum: 1, maximum: 100, default: 20 },
          order: { type: 'string', enum: ['newest', 'relevance'], default: 'newest', description: '`relevance`: the best `limit` of your newest 200 matches (one page, no `next`)' }
        }
      },
      response: {
        200: {
          description: 'A page of matches',
          type: 'object',
          properties: {
            results: {
              type: 'array',
              items: {
                type: 'object',
                properties: {
                  conversation: { type: 'object', properties: { peer: { type: 'string' }, group: { type: 'string' } } },
                  seq: { type: 'integer' },
                  gseq: { type: 'integer' },
                  ts: { type: 'integer' },
                  message: eventSchema,
                  snippet: {
                    type: 'object',
                    properties: {
                      text: { type: 'string' },
                      marks: { type: 'array', items: { type: 'array', items: { type: 'integer' } }, description: '[start, end) offsets (UTF-16) of the matches in `text`' }
                    }
                  }
                }
              }
            },
            next: { type: 'integer', description: 'Pass as `before` for the next page (absent on the last)' }
          }
        },
        400: errorSchema,
        501: errorSchema,
        503: errorSchema
      }
    }
  }, async (request, reply) => {
    // Not configured is permanent (retrying will not help), unlike an index that cannot be reached now.
    if (search === undefined) return sendError(reply, 501, 'search_not_configured', 'this server has no search index: its operator sets DATABASE_URL (Redis mode), or runs embedded mode')
    if (request.query.peer !== undefined && request.query.group !== undefined) return sendError(reply, 400, 'invalid_request', 'give peer or group, not both', 'querystring')
    try {
      return await search.search(request.userId, request.query)
    } catch (error) {
      if (error instanceof SearchQueryError) return sendError(reply, 400, error.code, error.message, 'querystring.q')
      if (error instanceof SearchUnavailableError) {
        if (error.cause !== undefined) request.log.warn({ err: error.cause }, 'search failed: the index did not answer')
        return sendError(reply, 503, error.code, error.message)
      }
      throw error
    }
  })
}
