// One error shape for every REST failure: `{"error": <code>, "message": ...,
// "field"?: <where>}` with a 4xx status, so clients can branch on `error`
// and show `message`. Validation errors name the offending field, e.g.
// `querystring.limit` or `body.to`.
import type { FastifyError, FastifyInstance, FastifyReply } from 'fastify'

export interface ApiError {
  error: string
  message: string
  field?: string
}

export function sendError (reply: FastifyReply, status: number, error: string, message: string, field?: string): FastifyReply {
  const body: ApiError = { error, message }
  if (field !== undefined) body.field = field
  return reply.code(status).send(body)
}

/** JSON Schema for the error body, for the OpenAPI document. */
export const errorSchema = {
  type: 'object',
  required: ['error', 'message'],
  properties: {
    error: { type: 'string' },
    message: { type: 'string' },
    field: { type: 'string' }
  }
} as const

function fieldOf (error: FastifyError): string | undefined {
  const first = error.validation?.[0]
  if (first === undefined) return undefined
  const missing = (first.params as { missingProperty?: string }).missingProperty
  const path = first.instancePath.replace(/^\//, '').replace(/\//g, '.')
  const name = [path, missing].filter((part) => part !== undefined && part !== '').join('.')
  return [error.validationContext, name].filter((part) => part !== undefined && part !== '').join('.')
}

const BY_FASTIFY_CODE: Record<string, [number, string]> = {
  FST_ERR_CTP_INVALID_JSON_BODY: [400, 'invalid_json'],
  FST_ERR_CTP_EMPTY_JSON_BODY: [400, 'invalid_json'],
  FST_ERR_CTP_BODY_TOO_LARGE: [413, 'payload_too_large'],
  FST_ERR_CTP_INVALID_MEDIA_TYPE: [415, 'unsupported_media_type']
}

export function installErrorHandlers (app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (error.validation !== undefined) {
      const field = fieldOf(error)
      return sendError(reply, 400, 'invalid_request', `${field ?? 'request'} ${error.validation[0]?.message ?? 'is invalid'}`, field)
    }
    const known = error.code === undefined ? undefined : BY_FASTIFY_CODE[error.code]
    if (known !== undefined) return sendError(reply, known[0], known[1], error.message)
    if (error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500) {
      return sendError(reply, error.statusCode, 'bad_request', error.message)
    }
    request.log.error({ err: error }, 'request failed')
    return sendError(reply, 500, 'internal_error', 'the server could not complete the request')
  })
  app.setNotFoundHandler((request, reply) => sendError(reply, 404, 'not_found', `no route ${request.method} ${request.url.split('?')[0]}`))
}
