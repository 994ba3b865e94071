// The caller's conversations, one conversation's history, and read marks.
// Every route is scoped to the authenticated user: `:peer` is the other
// party, so no URL can name someone else's conversation.
import type { FastifyPluginAsync } from 'fastify'
import type { LogStore } from '../../history/history-store.ts'
import type { ReceiptService } from '../../messaging/receipt-service.ts'
import { sendError, errorSchema } from '../http-errors.ts'
import { bearerSecurity } from '../require-user.ts'
import { eventSchema, idSchema, parseEvent, peerParams, ref, seqSchema } from '../schemas.ts'

export interface ConversationRoutesOptions {
  history: LogStore
  receipts: ReceiptService
}

const limitSchema = { type: 'integer', minimum: 1, maximum: 100, default: 50 } as const

export const conversationRoutes: FastifyPluginAsync<ConversationRoutesOptions> = async (app, { history, receipts }) => {
  app.get<{ Querystring: { before?: number, limit: number } }>('/v1/conversations', {
    schema: {
      operationId: 'listConversations',
      summary: 'Your conversations, most recent first, each with its last message and unread count',
      security: bearerSecurity,
      querystring: {
        type: 'object',
        properties: { before: { ...seqSchema, description: 'lastSeq cursor: conversations whose last message is older' }, limit: limitSchema }
      },
      response: {
        200: {
          description: 'A page of your conversations',
          type: 'object',
          properties: { conversations: { type: 'array', items: ref('Conversation') }, hasMore: { type: 'boolean' } }
        },
        400: errorSchema
      }
    }
  }, async (request) => {
    const page = await history.conversations(request.userId, request.query)
    return {
      hasMore: page.hasMore,
      conversations: page.conversations.map(({ peer, ...summary }) => ({
        // A group is the conversation `g:<groupId>` in your log.
        ...(peer.startsWith('g:') ? { group: peer.slice(2) } : { peer }),
        ...summary,
        lastMessage: summary.lastMessage === undefined ? null : parseEvent(summary.lastMessage)
      }))
    }
  })

  app.get<{ Params: { peer: string }, Querystring: { before?: number, after?: number, limit: number } }>('/v1/conversations/:peer/messages', {
    schema: {
      operationId: 'listConversationMessages',
      summary: 'Messages with one peer, oldest first; cursors are your seqs, stable while messages arrive',
      description: 'With `after`: the oldest `limit` messages after it. Otherwise: the newest `limit` before `before` (or the newest of all).',
      security: bearerSecurity,
      params: peerParams,
      querystring: {
        type: 'object',
        properties: { before: seqSchema, after: seqSchema, limit: limitSchema }
      },
      response: {
        200: { description: 'A page of the conversation', type: 'object', properties: { messages: { type: 'array', items: eventSchema }, hasMore: { type: 'boolean' } } },
        400: errorSchema
      }
    }
  }, async (request) => {
    const page = await history.conversation(request.userId, request.params.peer, request.query)
    return { messages: page.events.map(parseEvent), hasMore: page.hasMore }
  })

  app.post<{ Params: { peer: string }, Body: { seq?: number, id?: string } }>('/v1/conversations/:peer/read', {
    schema: {
      operationId: 'markConversationRead',
      summary: 'Mark the conversation read up to a message (your seq, or a message id); the peer gets a read receipt',
      security: bearerSecurity,
      params: peerParams,
      body: {
        type: 'object',
        additionalProperties: false,
        properties: { seq: seqSchema, id: idSchema }
      },
      response: {
        200: { description: 'Marked: your read mark and unread count now', type: 'object', properties: { peer: { type: 'string' }, readUpTo: { type: 'integer' }, unread: { type: 'integer' } } },
        400: errorSchema,
        404: errorSchema
      }
    }
  }, async (request, reply) => {
    const { peer } = request.params
    const { seq, id } = request.body ?? {}
    if ((seq === undefined) === (id === undefined)) return sendError(reply, 400, 'invalid_request', 'give exactly one of "seq" or "id"', 'body')
    const upTo = seq ?? await history.seqOfMessage(request.userId, peer, id!)
    if (upTo === undefined) return sendError(reply, 404, 'message_not_found', `no message "${id}" in your conversation with ${peer}`)
    const result = await receipts.mark('read', request.userId, peer, upTo)
    return { peer, readUpTo: result.upTo, unread: result.unread ?? 0 }
  })
}
