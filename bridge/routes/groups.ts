// Groups over REST: create, read, list, update, membership and roles, and a
// group's history by gseq. Only members see a group: to anyone else it does
// not exist (404 group_not_found). Sending is POST /v1/messages with `group`,
// or a PUBLISH to group/<groupId>.
import type { FastifyPluginAsync, FastifyReply } from 'fastify'
import { GroupRejected, type GroupErrorCode, type GroupService } from '../../messaging/group-service.ts'
import { sendError, errorSchema } from '../http-errors.ts'
import { parseOutgoing } from '../../protocol/message.ts'
import { PublishRejected } from '../../protocol/errors.ts'
import { refuseOverBudget, type TakePublish } from '../publish-budget.ts'
import { bearerSecurity } from '../require-user.ts'
import { idSchema, parseEvent, ref, roleSchema, seqSchema } from '../schemas.ts'

export interface GroupRoutesOptions {
  groups: GroupService
  /** An edit's body has a send's limits. */
  maxPayloadBytes: number
  /** An edit takes from the per-user publish budget, as a send does. */
  takePublish?: TakePublish
}

const STATUS: Record<GroupErrorCode, number> = {
  group_not_found: 404,
  not_a_member: 404,
  member_not_found: 404,
  not_allowed: 403,
  already_a_member: 409,
  too_many_members: 409,
  too_many_groups: 409,
  owner_must_hand_over: 409,
  invalid_group: 400,
  id_conflict: 409,
  message_not_found: 404,
  recall_window_expired: 409,
  edit_window_expired: 409,
  message_recalled: 409,
  too_many_edits: 409
}

const groupReply = (description: string) => ({ description, type: 'object', properties: { group: ref('Group') } }) as const
const groupParams = { type: 'object', required: ['id'], properties: { id: idSchema } } as const
const memberParams = { type: 'object', required: ['id', 'user'], properties: { id: idSchema, user: idSchema } } as const
const errors = { 400: errorSchema, 403: errorSchema, 404: errorSchema, 409: errorSchema } as const
const nameSchema = { type: 'string', minLength: 1, maxLength: 100 } as const
const metaSchema = { type: 'object', additionalProperties: true, description: 'small JSON (at most 2 KB): topic, avatar URL, ...' } as const

async function answer<T> (reply: FastifyReply, work: () => Promise<T>, status = 200): Promise<unknown> {
  try {
    return reply.code(status).send(await work())
  } catch (error) {
    if (!(error instanceof GroupRejected)) throw error
    return sendError(reply, STATUS[error.code], error.code, error.message)
  }
}

export const groupRoutes: FastifyPluginAsync<GroupRoutesOptions> = async (app, { groups, maxPayloadBytes, takePublish }) => {
  app.post<{ Body: { name: string, meta?: Record<string, unknown>, members?: string[] } }>('/v1/groups', {
    schema: {
      operationId: 'createGroup',
      summary: 'Create a group; you are its owner',
      security: bearerSecurity,
      body: {
        type: 'object',
        required: ['name'],
        additionalProperties: false,
        properties: { name: nameSchema, meta: metaSchema, members: { type: 'array', items: idSchema, maxItems: 100_000 } }
      },
      response: { 201: groupReply('Created'), ...errors }
    }
  }, (request, reply) => answer(reply, async () => ({ group: await groups.create(request.userId, request.body) }), 201))

  app.get('/v1/groups', {
    schema: { operationId: 'listGroups', summary: 'Your groups', security: bearerSecurity, response: { 200: { description: 'The groups you are a member of', type: 'object', properties: { groups: { type: 'array', items: ref('Group') } } } } }
  }, async (request) => ({ groups: await groups.list(request.userId) }))

  app.get<{ Params: { id: string } }>('/v1/groups/:id', {
    schema: { operationId: 'getGroup', summary: 'One of your groups, with its members', security: bearerSecurity, params: groupParams, response: { 200: groupReply('The group'), ...errors } }
  }, (request, reply) => answer(reply, async () => ({ group: await groups.get(request.userId, request.params.id) })))

  app.patch<{ Params: { id: string }, Body: { name?: string, meta?: Record<string, unknown> | null } }>('/v1/groups/:id', {
    schema: {
      operationId: 'updateGroup',
      summary: 'Rename the group or replace its metadata (admin or owner)',
      security: bearerSecurity,
      params: groupParams,
      body: { type: 'object', additionalProperties: false, minProperties: 1, properties: { name: nameSchema, meta: { ...metaSchema, nullable: true } } },
      response: { 200: groupReply('Updated'), ...errors }
    }
  }, (request, reply) => answer(reply, async () => ({ group: await groups.update(request.userId, request.params.id, request.body) })))

  app.post<{ Params: { id: string }, Body: { users: string[] } }>('/v1/groups/:id/members', {
    schema: {
      operationId: 'addGroupMembers',
      summary: 'Add members (admin or owner)',
      security: bearerSecurity,
      params: groupParams,
      body: { type: 'object', required: ['users'], additionalProperties: false, properties: { users: { type: 'array', items: idSchema, minItems: 1, maxItems: 100_000 } } },
      response: { 200: groupReply('Added: the group with its new members'), ...errors }
    }
  }, (request, reply) => answer(reply, async () => ({ group: await groups.addMembers(request.userId, request.params.id, request.body.users) })))

  app.delete<{ Params: { id: string, user: string } }>('/v1/groups/:id/members/:user', {
    schema: {
      operationId: 'removeGroupMember',
      summary: 'Remove a member (admin or owner; an admin cannot remove the owner or another admin); your own id: leave',
      security: bearerSecurity,
      params: memberParams,
      response: { 200: groupReply('Removed: the group without them'), ...errors }
    }
  }, (request, reply) => answer(reply, async () => ({ group: await groups.removeMember(request.userId, request.params.id, request.params.user) })))

  app.post<{ Params: { id: string } }>('/v1/groups/:id/leave', {
    schema: { operationId: 'leaveGroup', summary: 'Leave the group (the owner must hand ownership over first)', security: bearerSecurity, params: groupParams, response: { 200: groupReply('Left: the group as it now is'), ...errors } }
  }, (request, reply) => answer(reply, async () => ({ group: await groups.removeMember(request.userId, request.params.id, request.userId) })))

  app.put<{ Params: { id: string, user: string }, Body: { role: 'owner' | 'admin' | 'member' } }>('/v1/groups/:id/members/:user/role', {
    schema: {
      operationId: 'setGroupMemberRole',
      summary: 'Change a member\'s role (owner only); making someone the owner hands ownership over',
      security: bearerSecurity,
      params: memberParams,
      body: { type: 'object', required: ['role'], additionalProperties: false, properties: { role: roleSchema } },
      response: { 200: groupReply('Changed'), ...errors }
    }
  }, (request, reply) => answer(reply, async () => ({ group: await groups.setRole(request.userId, request.params.id, request.params.user, request.body.role) })))

  app.post<{ Params: { id: string }, Body: { gseq: number } }>('/v1/groups/:id/read', {
    schema: {
      operationId: 'markGroupRead',
      summary: 'Mark the group read up to a gseq; your other devices get a receipt event',
      security: bearerSecurity,
      params: groupParams,
      body: { type: 'object', required: ['gseq'], additionalProperties: false, properties: { gseq: seqSchema } },
      response: { 200: { description: 'Marked: your read mark and unread count now', type: 'object', properties: { readUpTo: { type: 'integer' }, unread: { type: 'integer' } } }, ...errors }
    }
  }, (request, reply) => answer(reply, () => groups.read(request.userId, request.params.id, request.body.gseq)))

  app.post<{ Params: { id: string, gseq: number } }>('/v1/groups/:id/messages/:gseq/recall', {
    schema: {
      operationId: 'recallGroupMessage',
      summary: 'Recall a group message: its sender within the recall window, an admin or the owner at any time',
      security: bearerSecurity,
      params: { type: 'object', required: ['id', 'gseq'], properties: { id: idSchema, gseq: seqSchema } },
      response: { 200: { description: 'Recalled: the recall event', type: 'object', properties: { message: ref('GroupEvent') } }, ...errors }
    }
  }, (request, reply) => answer(reply, async () => ({ message: await groups.recall(request.userId, request.params.id, request.params.gseq) })))

  app.post<{ Params: { id: string, gseq: number }, Body: { body: unknown } }>('/v1/groups/:id/messages/:gseq/edit', {
    schema: {
      summary: 'Edit a group message: only its sender, within the edit window; every member gets an edit event',
      operationId: 'editGroupMessage',
      security: bearerSecurity,
      params: { type: 'object', required: ['id', 'gseq'], properties: { id: idSchema, gseq: seqSchema } },
      body: { type: 'object', required: ['body'], additionalProperties: false, properties: { body: { description: 'The new body: any JSON value, the same limits as a send' } } },
      response: { 200: { description: 'The edited message', type: 'object', properties: { message: { type: 'object', additionalProperties: true } } }, 413: errorSchema, 429: { description: 'Over the per-user publish rate (an edit is a write, like a send)', ...errorSchema }, ...errors }
    }
  }, async (request, reply) => {
    const refused = refuseOverBudget(reply, request.userId, takePublish)
    if (refused !== undefined) return refused
    let body: unknown
    try {
      // The same size and shape rules as a send (the id only labels the check).
      body = parseOutgoing(Buffer.from(JSON.stringify({ id: 'edit', body: request.body.body })), maxPayloadBytes).body
    } catch (error) {
      if (!(error instanceof PublishRejected)) throw error
      return sendError(reply, error.code === 'payload_too_large' ? 413 : 400, error.code, error.message)
    }
    return answer(reply, async () => ({ message: await groups.edit(request.userId, request.params.id, request.params.gseq, body) }))
  })

  app.post<{ Params: { id: string }, Body: { until?: number | null } }>('/v1/groups/:id/mute', {
    schema: {
      operationId: 'muteGroup',
      summary: 'Mute the group\'s push alerts (until a time in ms since the epoch, or until unmuted; null unmutes); unread counts go on',
      security: bearerSecurity,
      params: groupParams,
      body: { type: 'object', additionalProperties: false, properties: { until: { ...seqSchema, nullable: true } } },
      response: { 200: { description: 'Muted (or unmuted)', type: 'object', properties: { mutedUntil: { type: 'integer', nullable: true, description: '0: until unmuted' } } }, ...errors }
    }
  }, (request, reply) => answer(reply, () => groups.mute(request.userId, request.params.id, request.body?.until)))

  app.get<{ Params: { id: string, gseq: number } }>('/v1/groups/:id/messages/:gseq/receipts', {
    schema: {
      operationId: 'getGroupMessageReceipts',
      summary: 'Which current members have read, and whose devices have received, this group event',
      security: bearerSecurity,
      params: { type: 'object', required: ['id', 'gseq'], properties: { id: idSchema, gseq: seqSchema } },
      response: { 200: { description: 'Who has read and received it', type: 'object', properties: { read: { type: 'array', items: { type: 'string' } }, delivered: { type: 'array', items: { type: 'string' } } } }, ...errors }
    }
  }, (request, reply) => answer(reply, () => groups.receipts(request.userId, request.params.id, request.params.gseq)))

  app.get<{ Params: { id: string }, Querystring: { after?: number, before?: number, limit: number } }>('/v1/groups/:id/messages', {
    schema: {
      operationId: 'listGroupMessages',
      summary: 'The group\'s events you may read (from when you joined), by gseq, oldest first',
      security: bearerSecurity,
      params: groupParams,
      querystring: {
        type: 'object',
        properties: { after: seqSchema, before: seqSchema, limit: { type: 'integer', minimum: 1, maximum: 100, default: 50 } }
      },
      response: { 200: { description: 'A page of the group\'s events', type: 'object', properties: { events: { type: 'array', items: ref('GroupEvent') }, hasMore: { type: 'boolean' } } }, ...errors }
    }
  }, (request, reply) => answer(reply, async () => {
    const page = await groups.history(request.userId, request.params.id, request.query)
    return { events: page.events.map(parseEvent), hasMore: page.hasMore }
  }))
}
