// The public key directory for end-to-end encryption: publish your own key,
// fetch anyone's. Keys are X25519 public keys (32 bytes, base64).
import type { FastifyPluginAsync } from 'fastify'
import type { KeyDirectory } from '../../keys/key-directory.ts'
import { errorSchema, sendError } from '../http-errors.ts'
import { bearerSecurity } from '../require-user.ts'
import { idSchema, ref } from '../schemas.ts'

// 32 bytes in standard base64: 43 characters and one '='.
const PUBLIC_KEY = '^[A-Za-z0-9+/]{43}=$'

export const keyRoutes: FastifyPluginAsync<{ keys: KeyDirectory }> = async (app, { keys }) => {
  app.put<{ Body: { publicKey: string } }>('/v1/keys', {
    schema: {
      operationId: 'publishKey',
      summary: 'Publish your X25519 public key',
      security: bearerSecurity,
      body: {
        type: 'object',
        required: ['publicKey'],
        additionalProperties: false,
        properties: { publicKey: { type: 'string', pattern: PUBLIC_KEY, description: '32 bytes, base64' } }
      },
      response: { 200: { description: 'Published (replacing any earlier key)', ...ref('PublicKey') }, 400: errorSchema }
    }
  }, async (request) => {
    const key = { user: request.userId, publicKey: request.body.publicKey, updatedAt: Date.now() }
    await keys.put(key)
    return key
  })

  app.get<{ Params: { user: string } }>('/v1/keys/:user', {
    schema: {
      operationId: 'getKey',
      summary: 'A user\'s published public key',
      security: bearerSecurity,
      params: { type: 'object', required: ['user'], properties: { user: idSchema } },
      response: { 200: { description: 'Their key', ...ref('PublicKey') }, 404: errorSchema }
    }
  }, async (request, reply) => {
    const key = await keys.get(request.params.user)
    if (key === undefined) return sendError(reply, 404, 'key_not_found', `${request.params.user} has published no key`)
    return key
  })
}
