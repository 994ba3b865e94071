// GET /v1/sync?since=<seq>: everything that happened to the caller after
// `seq`, in seq order. A device that lost its broker session (or saw a gap
// in seq) catches up here, then resumes live delivery.
import type { FastifyPluginAsync } from 'fastify'
import type { LogStore } from '../../history/history-store.ts'
import { errorSchema } from '../http-errors.ts'
import { bearerSecurity } from '../require-user.ts'
import { eventSchema, parseEvent, seqSchema } from '../schemas.ts'

export const syncRoutes: FastifyPluginAsync<{ history: Pick<LogStore, 'events'> }> = async (app, { history }) => {
  app.get<{ Querystring: { since: number, limit: number } }>('/v1/sync', {
    schema: {
      operationId: 'sync',
      summary: 'Your events after a seq, in order',
      security: bearerSecurity,
      querystring: {
        type: 'object',
        properties: { since: { ...seqSchema, default: 0 }, limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } }
      },
      response: {
        200: {
          description: 'A page of your events',
          type: 'object',
          properties: {
            events: { type: 'array', items: eventSchema },
            next: { type: 'integer', description: 'Pass as `since` to continue' },
            hasMore: { type: 'boolean' }
          }
        },
        400: errorSchema
      }
    }
  }, async (request) => {
    const { since, limit } = request.query
    const page = await history.events(request.userId, since, limit)
    const events = page.events.map(parseEvent)
    const last = events.at(-1)
    // `next` covers entries passed over (group events removed by retention), so a client never asks for them again.
    return { events, next: page.scannedTo ?? (last === undefined ? since : last.seq as number), hasMore: page.hasMore }
  })
}
