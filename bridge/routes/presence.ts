// Presence over REST: one user, or up to 100 at once. Who may see whom is
// decided as for presence/<user> subscriptions (presence/presence-visibility.ts);
// a hidden user looks like one never seen, so nothing tells them apart.
import type { FastifyPluginAsync } from 'fastify'
import { isValidId } from '../../protocol/identity.ts'
import type { PresenceRegistry, PresenceState } from '../../presence/presence-registry.ts'
import type { PresenceVisibility } from '../../presence/presence-visibility.ts'
import { errorSchema, sendError } from '../http-errors.ts'
import { bearerSecurity } from '../require-user.ts'
import { idSchema, ref } from '../schemas.ts'

const MAX_USERS = 100

const NEVER_SEEN: PresenceState = { status: 'offline', ts: 0, lastSeen: 0 }

export const presenceRoutes: FastifyPluginAsync<{ presence: PresenceRegistry, visibility: PresenceVisibility }> = async (app, { presence, visibility }) => {
  async function visibleStates (viewer: string, users: string[]): Promise<PresenceState[]> {
    const [states, visible] = await Promise.all([presence.states(users), Promise.all(users.map((user) => visibility.check(viewer, user)))])
    return states.map((state, i) => visible[i] === true ? state : NEVER_SEEN)
  }

  app.get<{ Params: { user: string } }>('/v1/presence/:user', {
    schema: {
      operationId: 'getPresence',
      summary: 'A user\'s presence, aggregated over all of their devices',
      security: bearerSecurity,
      params: { type: 'object', required: ['user'], properties: { user: idSchema } },
      response: { 200: { description: 'Their presence (as if never seen, if hidden from you)', ...ref('Presence') }, 400: errorSchema }
    }
  }, async (request) => {
    const [state] = await visibleStates(request.userId, [request.params.user])
    return { user: request.params.user, ...state }
  })

  app.get<{ Querystring: { users: string } }>('/v1/presence', {
    schema: {
      operationId: 'listPresence',
      summary: `Presence of up to ${MAX_USERS} users: ?users=a,b,c`,
      security: bearerSecurity,
      querystring: { type: 'object', required: ['users'], properties: { users: { type: 'string', minLength: 1 } } },
      response: { 200: { description: 'Their presence, in the order asked', type: 'object', properties: { presence: { type: 'array', items: ref('Presence') } } }, 400: errorSchema }
    }
  }, async (request, reply) => {
    const users = [...new Set(request.query.users.split(','))]
    if (users.length > MAX_USERS) return sendError(reply, 400, 'invalid_request', `at most ${MAX_USERS} users per request`, 'querystring.users')
    const invalid = users.find((user) => !isValidId(user))
    if (invalid !== undefined) return sendError(reply, 400, 'invalid_request', `"${invalid}" is not a valid user id`, 'querystring.users')
    const states = await visibleStates(request.userId, users)
    return { presence: users.map((user, i) => ({ user, ...states[i] })) }
  })
}
