// One error shape for every REST failure: `{"error": <code>, "message": ...,
// "field"?: <where>}` with a 4xx status, so clients can branch on `error`
// and show `message`. Validation errors name the offending field, e.g.
// `querystring.limit` or `body.to`.
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest, FastifySchema } from 'fastify'
import { STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'
import { JSON_TOO_DEEP } from './json-body.ts'
import { isStorageOutage } from '../storage/storage-errors.ts'
import { MAX_ID_LENGTH } from '../protocol/identity.ts'

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

/** JSON Schema of the error body: the OpenAPI component `Error` (bridge/openapi.ts adds it). */
export const errorBodySchema = {
  type: 'object',
  required: ['error', 'message'],
  properties: {
    error: { type: 'string' },
    message: { type: 'string' },
    field: { type: 'string' }
  }
} as const

/** A response that is an error body: a reference to the shared `Error` component. */
export const errorSchema = { $ref: 'Error#' } as const

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


/** The longest path parameter the router takes: an id (Fastify's default, 100, refused valid ones). */
export const MAX_PARAM_LENGTH = MAX_ID_LENGTH

/**
 * Fastify's `frameworkErrors`: what the router refuses before any route or
 * error handler runs (a path parameter over MAX_PARAM_LENGTH, a malformed
 * percent-encoding), answered in our shape instead of Fastify's.
 */
export function frameworkErrors (error: FastifyError, _request: FastifyRequest, reply: FastifyReply): void {
  const tooLong = error.code === 'FST_ERR_MAX_PARAM_LENGTH'
  sendError(reply, 400, 'invalid_request', tooLong ? `a path parameter is longer than ${MAX_PARAM_LENGTH} characters` : 'the URL path is not valid (malformed percent-encoding)', 'params')
}

/**
 * Fastify's `clientErrorHandler`: HTTP that Node's parser refuses (a request
 * line and headers over its 16 KiB, a malformed request), answered in our
 * shape. The socket is ended, not destroyed, and read to its end for a
 * moment, so a client still sending its request reads the answer instead of
 * a reset.
 */
export function clientErrorHandler (error: Error & { code?: string }, socket: Socket): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return
  const [status, code, message]: [number, string, string] = error.code === 'HPE_HEADER_OVERFLOW'
    ? [431, 'headers_too_large', 'the request line and headers are larger than the server reads']
    : error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? [408, 'request_timeout', 'the request did not arrive in time']
      : [400, 'invalid_request', 'the request is not valid HTTP']
  const body = JSON.stringify({ error: code, message })
  if (socket.writable) {
    socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`)
  }
  socket.resume()
  setTimeout(() => socket.destroy(), 1_000).unref()
}

export function installErrorHandlers (app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (error.validation !== undefined) {
      const field = fieldOf(error)
      return sendError(reply, 400, 'invalid_request', `${field ?? 'request'} ${error.validation[0]?.message ?? 'is invalid'}`, field)
    }
    if (error.code === JSON_TOO_DEEP) return sendError(reply, 400, 'invalid_request', error.message, 'body')
    const known = error.code === undefined ? undefined : BY_FASTIFY_CODE[error.code]
    if (known !== undefined) return sendError(reply, known[0], known[1], error.message)
    if (error.statusCode === 429) return sendError(reply, 429, 'rate_limited', error.message)
    if (error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500) {
      return sendError(reply, error.statusCode, 'bad_request', error.message)
    }
    // Storage unreachable (Redis down or reconnecting): the client should retry, nothing was half-done.
    if (isStorageOutage(error)) {
      request.log.warn({ err: error.message }, 'request refused: storage unavailable')
      reply.header('retry-after', '5')
      return sendError(reply, 503, 'storage_unavailable', 'the server cannot reach its storage right now; retry shortly')
    }
    request.log.error({ err: error }, 'request failed')
    return sendError(reply, 500, 'internal_error', 'the server could not complete the request')
  })
  app.setNotFoundHandler((request, reply) => sendError(reply, 404, 'not_found', `no route ${request.method} ${request.url.split('?')[0]}`))
}

const ERROR_DESCRIPTIONS: Record<number, string> = {
  400: 'Invalid request: a parameter, query or body field failed validation (`field` names it), or the body is not valid JSON',
  401: 'Missing, invalid or expired Bearer token',
  403: 'Not allowed: your role does not permit this',
  404: 'Not found (or not yours)',
  409: 'Conflict with the current state (see `error`)',
  413: 'Body too large',
  415: 'Body is not `application/json`',
  429: 'Too many requests (see `error`); `retry-after` says when to try again',
  501: 'Not configured on this server (see `error`): retrying will not help',
  503: 'Unavailable: a store this needs is not reachable now (see `error`); retry later'
}

type ResponseSchemas = Record<string, Record<string, unknown>>

/**
 * OpenAPI: declares the errors every route in this scope can answer, in one
 * place, so the document says what the server does: 401 (the scope's auth
 * hook), 400 wherever Fastify validates input, 400/413/415 wherever there is
 * a body (bad JSON, bodyLimit, content type), each with the shared `Error`
 * schema (describeErrors gives them their descriptions).
 */
export function documentErrors (app: FastifyInstance): void {
  app.addHook('onRoute', (route) => {
    const schema = route.schema as (Record<string, unknown> & { response?: ResponseSchemas, hide?: boolean }) | undefined
    if (schema === undefined || schema.hide === true) return
    const response: ResponseSchemas = { ...schema.response }
    const statuses = [401]
    // Fastify parses a body on these methods whatever the schema says.
    const takesBody = schema.body !== undefined || [route.method].flat().some((method) => ['POST', 'PUT', 'PATCH'].includes(method))
    if (takesBody || schema.params !== undefined || schema.querystring !== undefined) statuses.push(400)
    if (takesBody) statuses.push(413, 415)
    for (const status of statuses) response[status] ??= errorSchema
    route.schema = { ...schema, response }
  })
}

/**
 * For the OpenAPI document only: each declared error response without a
 * description of its own gets the standard one for its status, instead of
 * "Default Response". Returns a copy; the route's schema is left as it is.
 */
export function describeErrors (schema: FastifySchema): FastifySchema {
  const declaredResponses = schema.response as ResponseSchemas | undefined
  if (declaredResponses === undefined) return schema
  const response: ResponseSchemas = {}
  for (const [status, declared] of Object.entries(declaredResponses)) {
    const description = ERROR_DESCRIPTIONS[Number(status)]
    response[status] = description !== undefined && declared.description === undefined ? { ...declared, description } : declared
  }
  return { ...schema, response }
}
