// Push device registration. A device is the MQTT clientId `<you>:<deviceId>`;
// it gets an alert when a message arrives and that session is not connected.
import type { FastifyPluginAsync } from 'fastify'
import type { DeviceRegistry } from '../../push/device-registry.ts'
import { errorSchema, sendError } from '../http-errors.ts'
import { bearerSecurity } from '../require-user.ts'
import { idSchema, ref } from '../schemas.ts'

export interface DeviceRoutesOptions {
  devices: DeviceRegistry
  /** Registrations one user may hold (0: no limit). */
  maxDevices: number
}

export const deviceRoutes: FastifyPluginAsync<DeviceRoutesOptions> = async (app, { devices, maxDevices }) => {
  app.post<{ Body: { platform: 'ios' | 'android', token: string, deviceId: string, sandbox?: boolean } }>('/v1/devices', {
    schema: {
      operationId: 'registerDevice',
      summary: 'Register (or update) a device for push',
      security: bearerSecurity,
      body: {
        type: 'object',
        required: ['platform', 'token', 'deviceId'],
        additionalProperties: false,
        properties: {
          platform: { type: 'string', enum: ['ios', 'android'] },
          token: { type: 'string', description: 'ios: the APNs device token, hex; android: the FCM registration token' },
          deviceId: idSchema,
          sandbox: { type: 'boolean', default: false, description: 'a development build (APNs sandbox); ignored for android' }
        },
        // The token's form depends on the platform.
        discriminator: { propertyName: 'platform' },
        oneOf: [
          { properties: { platform: { enum: ['ios'] }, token: { type: 'string', pattern: '^[0-9a-fA-F]{32,200}$' } } },
          { properties: { platform: { enum: ['android'] }, token: { type: 'string', pattern: '^[A-Za-z0-9_.:-]{32,1024}$' } } }
        ]
      },
      response: {
        201: { description: 'Registered (or updated)', type: 'object', properties: { device: ref('Device') } },
        400: errorSchema,
        409: { ...errorSchema, description: 'You have `MAX_PUSH_DEVICES_PER_USER` devices registered (`too_many_devices`)' }
      }
    }
  }, async (request, reply) => {
    const { platform, token, deviceId, sandbox = false } = request.body
    // APNs tokens are hex (any case); FCM tokens are case-sensitive.
    const device = platform === 'ios'
      ? { deviceId, platform, token: token.toLowerCase(), sandbox, registeredAt: Date.now() }
      : { deviceId, platform, token, sandbox: false, registeredAt: Date.now() }
    if (await devices.put(request.userId, device, maxDevices) === 'limit') {
      return sendError(reply, 409, 'too_many_devices', `you have ${maxDevices} devices registered for push, the most allowed; remove one with DELETE /v1/devices/:deviceId`)
    }
    return reply.code(201).send({ device })
  })

  app.get('/v1/devices', {
    schema: {
      operationId: 'listDevices',
      summary: 'Your registered devices',
      security: bearerSecurity,
      response: { 200: { description: 'Your devices registered for push', type: 'object', properties: { devices: { type: 'array', items: ref('Device') } } } }
    }
  }, async (request) => ({ devices: await devices.list(request.userId) }))

  app.delete<{ Params: { deviceId: string } }>('/v1/devices/:deviceId', {
    schema: {
      operationId: 'removeDevice',
      summary: 'Stop pushing to a device',
      security: bearerSecurity,
      params: { type: 'object', required: ['deviceId'], properties: { deviceId: idSchema } },
      response: { 204: { description: 'Removed', type: 'null' }, 404: errorSchema }
    }
  }, async (request, reply) => {
    if (!await devices.remove(request.userId, request.params.deviceId)) {
      return sendError(reply, 404, 'device_not_found', 'you have no device registered with this id')
    }
    return reply.code(204).send()
  })
}
