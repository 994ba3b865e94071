// The MLS KeyPackage directory (docs/protocol.md, "MLS KeyPackages"): a device
// uploads its KeyPackages and tops them up; a member adding users to an
// encrypted group claims one per device of each.
import type { FastifyPluginAsync, FastifyReply } from 'fastify'
import { MlsKeyPackageRejected, type MlsKeyPackageErrorCode, type MlsKeyPackageService } from '../../keys/mls-key-package-service.ts'
import { MAX_KEY_PACKAGE_BYTES } from '../../keys/mls-key-package-check.ts'
import { errorSchema, sendError } from '../http-errors.ts'
import { bearerSecurity } from '../require-user.ts'
import { idSchema } from '../schemas.ts'

const STATUS: Record<MlsKeyPackageErrorCode, number> = {
  invalid_key_package: 400,
  last_resort_required: 400,
  duplicate_key_package: 409,
  too_many_key_packages: 409,
  too_many_key_package_devices: 409
}

/** Standard base64 of one KeyPackage (an MLSMessage), at most MAX_KEY_PACKAGE_BYTES. */
const keyPackageSchema = { type: 'string', minLength: 1, maxLength: Math.ceil(MAX_KEY_PACKAGE_BYTES / 3) * 4, description: `base64 of an MLSMessage (wire format mls_key_package), at most ${MAX_KEY_PACKAGE_BYTES} bytes` } as const
const countSchema = {
  type: 'object',
  properties: { deviceId: { type: 'string' }, oneTime: { type: 'integer' }, lastResort: { type: 'boolean' } }
} as const

class UploadsLimited extends Error {
  constructor (readonly waitMs: number) { super(`more KeyPackage uploads than allowed; retry in ${waitMs} ms`) }
}

async function answer<T> (reply: FastifyReply, work: () => Promise<T>): Promise<unknown> {
  try {
    return reply.send(await work())
  } catch (error) {
    if (error instanceof UploadsLimited) return sendError(reply, 429, 'rate_limited', error.message)
    if (!(error instanceof MlsKeyPackageRejected)) throw error
    return sendError(reply, STATUS[error.code], error.code, error.message, error.field)
  }
}

export interface MlsKeyPackageRoutesOptions {
  keyPackages: MlsKeyPackageService
  /** The per-user upload budget (MLS_UPLOADS_PER_MINUTE): 0 when an upload is allowed, else ms until one is. */
  takeUpload?: (user: string) => number
}

export const mlsKeyPackageRoutes: FastifyPluginAsync<MlsKeyPackageRoutesOptions> = async (app, { keyPackages, takeUpload }) => {
  const { perDevice, usersPerClaim } = keyPackages.limits

  app.post<{ Body: { deviceId: string, keyPackages: string[], lastResort?: string } }>('/v1/mls/key-packages', {
    // 100 packages of the largest size, base64, fit.
    bodyLimit: 64 * 1024 + perDevice * Math.ceil(MAX_KEY_PACKAGE_BYTES / 3) * 4,
    schema: {
      summary: 'Upload one-time MLS KeyPackages (and the last-resort one) for one of your devices',
      operationId: 'uploadMlsKeyPackages',
      security: bearerSecurity,
      body: {
        type: 'object',
        required: ['deviceId', 'keyPackages'],
        additionalProperties: false,
        properties: {
          deviceId: idSchema,
          keyPackages: { type: 'array', items: keyPackageSchema, maxItems: perDevice },
          lastResort: { ...keyPackageSchema, description: 'required with the device\'s first upload; replaces its previous one' }
        }
      },
      response: {
        200: { description: 'Stored: how many one-time packages the device now holds', ...countSchema },
        400: errorSchema,
        409: errorSchema,
        429: { description: 'More uploads than `MLS_UPLOADS_PER_MINUTE` allows (after a burst of 10); `retry-after` says when to try again', ...errorSchema }
      }
    }
  }, (request, reply) => answer(reply, async () => {
    const wait = takeUpload?.(request.userId) ?? 0
    if (wait > 0) {
      reply.header('retry-after', String(Math.ceil(wait / 1000)))
      throw new UploadsLimited(wait)
    }
    const { deviceId, keyPackages: packages, lastResort } = request.body
    return { deviceId, ...await keyPackages.upload(request.userId, deviceId, packages, lastResort) }
  }))

  app.get<{ Querystring: { deviceId: string } }>('/v1/mls/key-packages/count', {
    schema: {
      summary: 'How many one-time KeyPackages one of your devices still holds',
      operationId: 'countMlsKeyPackages',
      security: bearerSecurity,
      querystring: { type: 'object', required: ['deviceId'], additionalProperties: false, properties: { deviceId: idSchema } },
      response: { 200: { description: 'The device\'s supply (top it up when low)', ...countSchema }, 400: errorSchema }
    }
  }, async (request) => ({ deviceId: request.query.deviceId, ...await keyPackages.count(request.userId, request.query.deviceId) }))

  app.post<{ Body: { users: string[] } }>('/v1/mls/key-packages/claim', {
    schema: {
      summary: 'Claim one KeyPackage per device of each user, to add them to an MLS group',
      operationId: 'claimMlsKeyPackages',
      security: bearerSecurity,
      body: {
        type: 'object',
        required: ['users'],
        additionalProperties: false,
        properties: { users: { type: 'array', items: idSchema, minItems: 1, maxItems: usersPerClaim } }
      },
      response: {
        200: {
          description: 'One package per device of each user named; `missing`: users with none (or who blocked you)',
          type: 'object',
          properties: {
            keyPackages: {
              type: 'array',
              items: { type: 'object', properties: { user: { type: 'string' }, deviceId: { type: 'string' }, keyPackage: { type: 'string' }, lastResort: { type: 'boolean' } } }
            },
            missing: { type: 'array', items: { type: 'string' } }
          }
        },
        400: errorSchema
      }
    }
  }, async (request) => await keyPackages.claim(request.userId, request.body.users))

  app.delete<{ Params: { deviceId: string } }>('/v1/mls/key-packages/:deviceId', {
    schema: {
      summary: 'Retire one of your devices from the directory: its KeyPackages are deleted',
      operationId: 'deleteMlsKeyPackages',
      security: bearerSecurity,
      params: { type: 'object', required: ['deviceId'], properties: { deviceId: idSchema } },
      response: { 204: { description: 'Deleted', type: 'null' }, 404: errorSchema }
    }
  }, async (request, reply) => {
    if (!await keyPackages.removeDevice(request.userId, request.params.deviceId)) {
      return sendError(reply, 404, 'device_not_found', `your device ${request.params.deviceId} holds no KeyPackages`)
    }
    return reply.code(204).send()
  })
}
