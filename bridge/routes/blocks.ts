// Blocking over REST: PUT /v1/blocks/:user, DELETE /v1/blocks/:user,
// GET /v1/blocks. What a block does is in messaging/block-service.ts.
import type { FastifyPluginAsync } from 'fastify'
import { BlockRejected, type BlockService } from '../../messaging/block-service.ts'
import { errorSchema, sendError } from '../http-errors.ts'
import { bearerSecurity } from '../require-user.ts'
import { idSchema, ref } from '../schemas.ts'

const userParams = { type: 'object', required: ['user'], properties: { user: idSchema } } as const

export const blockRoutes: FastifyPluginAsync<{ blocks: BlockService }> = async (app, { blocks }) => {
  app.put<{ Params: { user: string } }>('/v1/blocks/:user', {
    schema: {
      operationId: 'blockUser',
      summary: 'Block a user: their 1:1 messages and typing no longer reach you, and they no longer see your presence. They are not told',
      security: bearerSecurity,
      params: userParams,
      response: { 200: { description: 'Blocked (or already blocked)', ...ref('Block') }, 400: errorSchema, 409: { ...errorSchema, description: 'You have blocked `MAX_BLOCKS_PER_USER` users (`too_many_blocks`)' } }
    }
  }, async (request, reply) => {
    if (request.params.user === request.userId) return sendError(reply, 400, 'invalid_request', 'you cannot block yourself', 'user')
    try {
      return await blocks.block(request.userId, request.params.user)
    } catch (error) {
      if (error instanceof BlockRejected) return sendError(reply, 409, error.code, error.message)
      throw error
    }
  })

  app.delete<{ Params: { user: string } }>('/v1/blocks/:user', {
    schema: {
      operationId: 'unblockUser',
      summary: 'Unblock a user (messages they sent meanwhile stay undelivered)',
      security: bearerSecurity,
      params: userParams,
      response: { 200: { description: 'Unblocked', type: 'object', properties: { user: { type: 'string' }, unblocked: { type: 'boolean' } } }, 400: errorSchema, 404: errorSchema }
    }
  }, async (request, reply) => {
    if (!await blocks.unblock(request.userId, request.params.user)) return sendError(reply, 404, 'not_blocked', `you have not blocked ${request.params.user}`)
    return { user: request.params.user, unblocked: true }
  })

  app.get('/v1/blocks', {
    schema: {
      operationId: 'listBlocks',
      summary: 'The users you have blocked, most recent first',
      security: bearerSecurity,
      response: { 200: { description: 'Your blocks', type: 'object', properties: { blocks: { type: 'array', items: ref('Block') } } } }
    }
  }, async (request) => ({ blocks: await blocks.list(request.userId) }))
}
