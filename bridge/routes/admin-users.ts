// Account deletion over REST (issue #21), with ADMIN_TOKEN like POST /v1/admin/revoke:
//   DELETE /v1/admin/users/:user   every token revoked, groups left, push
//                                  registrations and the user's own log gone
//                                  from the hot tier and the archive
//                                  (messaging/account-deletion.ts)
// Exists only when ADMIN_TOKEN is set.
import type { FastifyPluginAsync } from 'fastify'
import { timingSafeEqual } from 'node:crypto'
import { AccountDeletionRefused, type AccountDeletion } from '../../messaging/account-deletion.ts'
import { errorBodySchema, errorSchema, sendError } from '../http-errors.ts'
import { idSchema } from '../schemas.ts'

export interface AdminUserRoutesOptions {
  adminToken: string | undefined
  accounts: Pick<AccountDeletion, 'deleteAccount' | 'close'>
}

export const adminUserRoutes: FastifyPluginAsync<AdminUserRoutesOptions> = async (app, { adminToken, accounts }) => {
  if (adminToken === undefined) return
  app.addHook('onClose', async () => accounts.close())
  const expected = Buffer.from(`Bearer ${adminToken}`)
  app.delete<{ Params: { user: string } }>('/v1/admin/users/:user', {
    schema: {
      operationId: 'adminDeleteUser',
      summary: 'Delete a user\'s account: tokens revoked, groups left, push registrations and their own history gone from both tiers (search included)',
      params: { type: 'object', required: ['user'], properties: { user: idSchema } },
      response: {
        200: { description: 'Deleted', type: 'object', properties: { user: { type: 'string' }, deleted: { type: 'boolean' }, groupsLeft: { type: 'array', items: { type: 'string' } } } },
        401: errorSchema,
        409: { ...errorBodySchema, description: 'The user owns groups with other members: hand them over first (`groups` names them)', properties: { ...errorBodySchema.properties, groups: { type: 'array', items: { type: 'string' } } } }
      }
    }
  }, async (request, reply) => {
    const given = Buffer.from(request.headers.authorization ?? '')
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return sendError(reply, 401, 'unauthorized', 'needs Authorization: Bearer <ADMIN_TOKEN>')
    try {
      const { user, groupsLeft } = await accounts.deleteAccount(request.params.user)
      return { user, deleted: true, groupsLeft }
    } catch (error) {
      if (!(error instanceof AccountDeletionRefused)) throw error
      return reply.code(409).send({ error: error.code, message: error.message, groups: error.groups })
    }
  })
}
