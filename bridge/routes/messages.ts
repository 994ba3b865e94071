// POST /v1/messages: send over HTTP, with the same validation, envelope,
// idempotency and delivery as an MQTT publish (both go through
// MessageService), and from the same per-user publish budget (over it: 429
// `rate_limited` with `retry-after`, answered at once: an HTTP client waits
// for each answer anyway). POST /v1/messages/:id/recall: the sender takes one back.
import type { FastifyPluginAsync } from 'fastify'
import type { MessageService } from '../../messaging/message-service.ts'
import type { GroupService } from '../../messaging/group-service.ts'
import type { Metrics } from '../../observability/metrics.ts'
import { parseOutgoing } from '../../protocol/message.ts'
import { PublishRejected, type ErrorCode } from '../../protocol/errors.ts'
import { sendError, errorSchema } from '../http-errors.ts'
import { bearerSecurity } from '../require-user.ts'
import { eventSchema, idSchema, parseEvent } from '../schemas.ts'
import { refuseOverBudget, type TakePublish } from '../publish-budget.ts'
import { MAX_EDITS_PER_MESSAGE } from '../../history/events.ts'

export interface MessageRoutesOptions {
  messages: MessageService
  groups: GroupService
  metrics?: Metrics
  maxPayloadBytes: number
  /** The per-user publish budget, shared with MQTT: 0 when allowed, else ms until the next send is. */
  takePublish?: TakePublish
}

const STATUS_FOR: Partial<Record<ErrorCode, number>> = { payload_too_large: 413, id_conflict: 409, not_a_member: 404, invalid_attachment: 400 }

export const messageRoutes: FastifyPluginAsync<MessageRoutesOptions> = async (app, { messages, groups, maxPayloadBytes, metrics, takePublish }) => {
  app.post<{ Body: { to?: string, group?: string, id: string, replyTo?: unknown, body: unknown, attachments?: unknown } }>('/v1/messages', {
    schema: {
      operationId: 'sendMessage',
      summary: 'Send a message (idempotent per sender and id)',
      security: bearerSecurity,
      body: {
        type: 'object',
        required: ['id', 'body'],
        additionalProperties: false,
        // Exactly one of `to` (a person) and `group`.
        oneOf: [{ required: ['to'] }, { required: ['group'] }],
        properties: {
          to: idSchema,
          group: idSchema,
          id: idSchema,
          replyTo: {
            type: 'object',
            description: 'A reply: the message it answers, `{"id", "from"?}` or `{"gseq"}` (checked for shape, not existence)',
            additionalProperties: false,
            properties: { id: idSchema, from: idSchema, gseq: { type: 'integer', minimum: 1 } }
          },
          body: { description: 'Any JSON value; the server never reads it' },
          attachments: { type: 'array', description: 'Uploads this message references: [{"id", "thumbnail"?}] (docs/protocol.md, Attachments)', items: { type: 'object' } }
        }
      },
      response: {
        200: { description: 'Already sent earlier: the stored message', type: 'object', properties: { message: eventSchema } },
        201: { description: 'Stored and queued for delivery', type: 'object', properties: { message: eventSchema } },
        400: errorSchema,
        404: errorSchema,
        409: errorSchema,
        413: errorSchema,
        429: { description: 'More sends than the per-user publish rate (`PUBLISH_RATE`, shared with MQTT); `retry-after` says when to try again', ...errorSchema }
      }
    }
  }, async (request, reply) => {
    const { to, group, id, replyTo, body, attachments } = request.body
    const refused = refuseOverBudget(reply, request.userId, takePublish, metrics)
    if (refused !== undefined) return refused
    try {
      // The same size and shape rules as an MQTT payload.
      const message = parseOutgoing(Buffer.from(JSON.stringify({ id, replyTo, body, attachments })), maxPayloadBytes)
      const result = group === undefined
        ? await messages.send(request.userId, to!, message, true)
        : await groups.send(request.userId, group, message, true)
      metrics?.accepted.inc({ kind: group === undefined ? 'direct' : 'group' })
      return reply.code(result.created ? 201 : 200).send({ message: result.event === undefined ? undefined : parseEvent(result.event) })
    } catch (error) {
      if (!(error instanceof PublishRejected)) throw error
      metrics?.rejected.inc({ code: error.code })
      return sendError(reply, STATUS_FOR[error.code] ?? 400, error.code, error.message)
    }
  })

  app.post<{ Params: { id: string } }>('/v1/messages/:id/recall', {
    schema: {
      operationId: 'recallMessage',
      summary: 'Recall one of your own messages within the recall window',
      security: bearerSecurity,
      params: { type: 'object', required: ['id'], properties: { id: idSchema } },
      response: {
        200: { description: 'Recalled: the recall event', type: 'object', properties: { message: eventSchema } },
        404: errorSchema,
        409: errorSchema
      }
    }
  }, async (request, reply) => {
    const outcome = await messages.recall(request.userId, request.params.id)
    if (outcome.status === 'recalled') return { message: parseEvent(outcome.message) }
    if (outcome.status === 'window_expired') return sendError(reply, 409, 'recall_window_expired', 'the recall window for this message has passed')
    return sendError(reply, 404, 'message_not_found', 'you sent no message with this id (or it is past retention)')
  })

  app.post<{ Params: { id: string }, Body: { body: unknown } }>('/v1/messages/:id/edit', {
    schema: {
      summary: 'Edit one of your own messages within the edit window: its body is replaced in both logs, and both sides get an edit event',
      operationId: 'editMessage',
      security: bearerSecurity,
      params: { type: 'object', required: ['id'], properties: { id: idSchema } },
      body: { type: 'object', required: ['body'], additionalProperties: false, properties: { body: { description: 'The new body: any JSON value, the same limits as a send' } } },
      response: {
        200: { description: 'The edited message (your seq, `edited`, `editedAt`)', type: 'object', properties: { message: eventSchema } },
        400: errorSchema,
        404: errorSchema,
        409: errorSchema,
        413: errorSchema,
        429: { description: 'Over the per-user publish rate (an edit is a write, like a send)', ...errorSchema }
      }
    }
  }, async (request, reply) => {
    const refused = refuseOverBudget(reply, request.userId, takePublish, metrics)
    if (refused !== undefined) return refused
    let body: unknown
    try {
      // The same size and shape rules as a send.
      body = parseOutgoing(Buffer.from(JSON.stringify({ id: request.params.id, body: request.body.body })), maxPayloadBytes).body
    } catch (error) {
      if (!(error instanceof PublishRejected)) throw error
      return sendError(reply, STATUS_FOR[error.code] ?? 400, error.code, error.message)
    }
    const outcome = await messages.edit(request.userId, request.params.id, body)
    if (outcome.status === 'edited') return { message: parseEvent(outcome.message) }
    if (outcome.status === 'window_expired') return sendError(reply, 409, 'edit_window_expired', 'the edit window for this message has passed')
    if (outcome.status === 'recalled') return sendError(reply, 409, 'message_recalled', 'the message was recalled')
    if (outcome.status === 'too_many_edits') return sendError(reply, 409, 'too_many_edits', `a message may be edited at most ${MAX_EDITS_PER_MESSAGE} times`)
    return sendError(reply, 404, 'message_not_found', 'you sent no message with this id (or it is past retention)')
  })
}
