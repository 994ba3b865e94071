// Attachments over HTTP (attachments/attachment-service.ts):
// - /v1/uploads: resumable uploads with the tus protocol (@tus/server): POST
//   creates one (its size declared up front in Upload-Length, checked against
//   MAX_UPLOAD_BYTES and the user's quota), HEAD tells how much arrived, PATCH
//   sends more from there. Only the uploader may resume an upload.
// - GET /v1/attachments/:id: 302 to a link that expires (presigned S3 URL, or
//   this server's signed /files/:id link on disk); /link answers it as JSON.
//   404 attachment_not_found for anyone who may not read it.
// Without attachment storage (Redis mode without S3): 501 attachments_not_configured.
import type { FastifyPluginAsync, FastifyReply } from 'fastify'
import type { IncomingMessage } from 'node:http'
import { randomBytes } from 'node:crypto'
import { Server as TusServer } from '@tus/server'
import type { AttachmentService } from '../../attachments/attachment-service.ts'
import { isMediaType } from '../../protocol/attachments.ts'
import type { Revocations } from '../../auth/revocations.ts'
import { requireUser, bearerSecurity } from '../require-user.ts'
import { documentErrors, errorSchema, sendError } from '../http-errors.ts'
import { idSchema } from '../schemas.ts'

export interface AttachmentRouteOptions {
  attachments: AttachmentService | undefined
  revocations: Revocations
  /** CORS_ORIGINS: the tus responses carry their own CORS headers. */
  corsOrigins: string[]
}

const UPLOADS = '/v1/uploads'
/** Where the server's own (disk) download links point; keep in step with AttachmentService.download. */
const FILES = '/files'
const TUS_HEADERS = { 'tus-resumable': '1.0.0' }
const idParams = { type: 'object', required: ['id'], properties: { id: idSchema } } as const

function notConfigured (reply: FastifyReply): FastifyReply {
  return sendError(reply, 501, 'attachments_not_configured', 'this server has no attachment storage: its operator sets S3_BUCKET (Redis mode), or runs embedded mode')
}

const notFound = (reply: FastifyReply): FastifyReply =>
  sendError(reply, 404, 'attachment_not_found', 'no attachment with this id that you may read')

/** A tus `onUploadCreate` refusal: tus sends the body as it is. */
const tusRefusal = (status: number, error: string, message: string): { status_code: number, body: string } =>
  ({ status_code: status, body: JSON.stringify({ error, message }) })

export const attachmentRoutes: FastifyPluginAsync<AttachmentRouteOptions> = async (app, { attachments, revocations, corsOrigins }) => {
  // Who is uploading: tus hands its hooks the Node request, which the route saw authenticated.
  const uploaders = new WeakMap<IncomingMessage, string>()
  const tus = attachments === undefined
    ? undefined
    : new TusServer({
      path: UPLOADS,
      datastore: attachments.bytes.datastore,
      ...(attachments.locker === undefined ? {} : { locker: attachments.locker }),
      maxSize: attachments.limits.maxUploadBytes,
      relativeLocation: true,
      allowedOrigins: corsOrigins[0] === '*' ? undefined : (origin) => corsOrigins.includes(origin),
      namingFunction: () => randomBytes(16).toString('base64url'),
      async onUploadCreate (request, upload) {
        const node = (request as unknown as { runtime?: { node?: { req: IncomingMessage } } }).runtime?.node?.req
        const owner = node === undefined ? undefined : uploaders.get(node)
        if (owner === undefined || upload.size === undefined) throw tusRefusal(400, 'invalid_request', 'uploads declare their size in Upload-Length')
        const type = upload.metadata?.filetype ?? upload.metadata?.type ?? 'application/octet-stream'
        if (!isMediaType(type)) throw tusRefusal(400, 'invalid_request', 'Upload-Metadata "filetype" must be a media type such as image/jpeg')
        const refusal = await attachments.beginUpload(owner, upload.id, upload.size, type)
        if (refusal !== undefined) throw tusRefusal(413, refusal.code, refusal.message)
        return {}
      },
      onResponseError (_request, error) {
        if (error instanceof Error) app.log.warn({ err: error }, 'upload request failed')
        return undefined
      },
      async onUploadFinish (_request, upload) {
        await attachments.finishUpload(upload.id)
        return {}
      }
    })

  // Upload bodies are streamed to the store by tus, never parsed or buffered here.
  app.addContentTypeParser('application/offset+octet-stream', (_request, _payload, done) => { done(null) })

  await app.register(async (authed) => {
    requireUser(authed, revocations)
    documentErrors(authed)

    const handOver = async (request: { raw: IncomingMessage, userId: string }, reply: FastifyReply): Promise<void> => {
      uploaders.set(request.raw, request.userId)
      reply.hijack()
      try {
        await tus!.handle(request.raw, reply.raw)
      } catch (error) {
        // Hijacked: Fastify answers nothing now, so a failure must not leave the client waiting.
        app.log.error({ err: error }, 'upload request failed')
        if (!reply.raw.headersSent) reply.raw.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'internal_error', message: 'the upload request failed; resume it' }))
        else reply.raw.destroy()
      }
    }

    authed.post(UPLOADS, {
      schema: {
        summary: 'Create a resumable upload (tus 1.0: Upload-Length, Upload-Metadata "filetype")',
        operationId: 'createUpload',
        security: bearerSecurity,
        response: { 201: { description: 'Created: `Location` is the upload\'s URL, whose last segment is the attachment id' }, 400: errorSchema, 413: errorSchema, 501: errorSchema }
      }
    }, async (request, reply) => {
      if (attachments === undefined) return notConfigured(reply)
      const length = request.headers['upload-length']
      if (typeof length !== 'string' || !/^\d{1,16}$/.test(length)) {
        return reply.headers(TUS_HEADERS).code(400).send({ error: 'invalid_request', message: 'uploads declare their size up front in Upload-Length', field: 'headers.upload-length' })
      }
      const refusal = await attachments.checkUpload(request.userId, Number(length))
      if (refusal !== undefined) return reply.headers(TUS_HEADERS).code(413).send({ error: refusal.code, message: refusal.message })
      await handOver(request, reply)
    })

    for (const method of ['HEAD', 'PATCH'] as const) {
      authed.route<{ Params: { id: string } }>({
        method,
        url: `${UPLOADS}/:id`,
        schema: {
          summary: method === 'HEAD' ? 'How much of an upload arrived (Upload-Offset)' : 'Send more of an upload, from Upload-Offset',
          operationId: method === 'HEAD' ? 'getUploadOffset' : 'continueUpload',
          security: bearerSecurity,
          params: idParams,
          response: { 204: { description: 'Upload-Offset says how much is stored' }, 404: errorSchema, 409: errorSchema, 501: errorSchema }
        },
        handler: async (request, reply) => {
          if (attachments === undefined) return notConfigured(reply)
          // Someone else's upload does not exist, as far as this caller can tell.
          if (!await attachments.isOwnUpload(request.userId, request.params.id)) return reply.headers(TUS_HEADERS).code(404).send({ error: 'attachment_not_found', message: 'no upload of yours with this id' })
          await handOver(request, reply)
        }
      })
    }

    const linkFor = async (user: string, id: string): Promise<{ url: string, expiresAt: number, size: number, type: string } | undefined> => {
      const download = await attachments!.download(user, id)
      return download === undefined ? undefined : { url: download.url, expiresAt: download.expiresAt, size: download.record.size, type: download.record.type }
    }

    authed.get<{ Params: { id: string } }>('/v1/attachments/:id', {
      schema: {
        summary: 'Download an attachment: a redirect to a link that expires',
        operationId: 'downloadAttachment',
        security: bearerSecurity,
        params: idParams,
        response: { 302: { description: '`Location`: the bytes, for ATTACHMENT_LINK_TTL_SECONDS, without Authorization' }, 404: errorSchema, 501: errorSchema }
      }
    }, async (request, reply) => {
      if (attachments === undefined) return notConfigured(reply)
      const link = await linkFor(request.userId, request.params.id)
      if (link === undefined) return notFound(reply)
      return reply.header('cache-control', 'no-store').redirect(link.url, 302)
    })

    authed.get<{ Params: { id: string } }>('/v1/attachments/:id/link', {
      schema: {
        summary: 'A link to an attachment\'s bytes that expires (for clients that cannot follow a redirect without sending Authorization on)',
        operationId: 'getAttachmentLink',
        security: bearerSecurity,
        params: idParams,
        response: {
          200: { description: 'The link, its expiry (ms), and the attachment\'s size and type', type: 'object', properties: { url: { type: 'string' }, expiresAt: { type: 'integer' }, size: { type: 'integer' }, type: { type: 'string' } } },
          404: errorSchema,
          501: errorSchema
        }
      }
    }, async (request, reply) => {
      if (attachments === undefined) return notConfigured(reply)
      const link = await linkFor(request.userId, request.params.id)
      if (link === undefined) return notFound(reply)
      return reply.header('cache-control', 'no-store').send(link)
    })
  })

  // The server's own links (disk): the signature is the credential, as with a presigned S3 URL,
  // so it is outside the API (/v1, which takes tokens) and its document.
  app.get<{ Params: { id: string }, Querystring: { expires: number, sig: string } }>(`${FILES}/:id`, {
    schema: {
      hide: true,
      params: idParams,
      querystring: { type: 'object', required: ['expires', 'sig'], properties: { expires: { type: 'integer', minimum: 0 }, sig: { type: 'string', maxLength: 64 } } },
      response: { 200: { description: 'The bytes' }, 403: errorSchema, 404: errorSchema, 501: errorSchema }
    }
  }, async (request, reply) => {
    if (attachments === undefined) return notConfigured(reply)
    const found = await attachments.content(request.params.id, request.query.expires, request.query.sig)
    if (found === 'expired') return sendError(reply, 403, 'link_expired', 'this link has expired: ask GET /v1/attachments/:id for a new one')
    if (found === undefined) return notFound(reply)
    // A download, never a page of this origin (an uploaded HTML file must not run here).
    return reply
      .header('content-type', found.record.type)
      .header('content-length', String(found.bytes.size))
      .header('content-disposition', 'attachment')
      .header('x-content-type-options', 'nosniff')
      .header('content-security-policy', 'sandbox')
      .header('cache-control', 'private, no-store')
      .send(found.bytes.stream)
  })
}
