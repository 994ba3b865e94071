// A local stand-in for Google's OAuth2 token endpoint and FCM's HTTP v1 send
// endpoint: one real HTTPS server (self-signed certificate made with
// openssl), which records every request and answers as each test tells it
// to. It writes a service-account key (a fresh RSA key pair) whose
// token_uri is Google's; the server under test reaches the stand-in through
// FCM_TOKEN_URL and FCM_ORIGIN and trusts it through FCM_CA.
import { createServer, type Server } from 'node:https'
import type { IncomingMessage, IncomingHttpHeaders } from 'node:http'
import { generateKeyPairSync } from 'node:crypto'
import { execFileSync } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createVerifier } from 'fast-jwt'
import { tempDataDir } from './server-process.ts'

export const PROJECT_ID = 'inboxd-test'
export const CLIENT_EMAIL = 'push@inboxd-test.iam.gserviceaccount.com'
export const TOKEN_URI = 'https://oauth2.googleapis.com/token'

export interface TokenRequest {
  grantType: string | null
  /** The assertion's verified header and claims (RS256, the service account's public key), or the verification error. */
  assertion: { header: Record<string, unknown>, payload: Record<string, unknown> } | Error
  /** The access token handed out (if the reply was 200). */
  issued: string | undefined
  at: number
}

export interface SendRequest {
  path: string
  headers: IncomingHttpHeaders
  /** The bearer token the request carried. */
  accessToken: string
  body: any
  /** body.message.token */
  token: string
  at: number
}

export interface Reply { status: number, body?: unknown, headers?: Record<string, string>, delayMs?: number }

export interface FakeFcm {
  tokenRequests: TokenRequest[]
  requests: SendRequest[]
  /** `expires_in` of the access tokens handed out, seconds. */
  expiresIn: number
  /** Decides each send answer; by default 200. */
  respond: (request: SendRequest, index: number) => Reply
  /** Environment for the server under test. */
  env: Record<string, string>
  waitFor (count: number, match?: (request: SendRequest) => boolean, timeoutMs?: number): Promise<SendRequest[]>
  close (): Promise<void>
}

/** An FCM error body as Google sends it. */
export function fcmError (code: number, status: string, message: string, errorCode?: string, fieldViolation?: string): unknown {
  const details: unknown[] = []
  if (errorCode !== undefined) details.push({ '@type': 'type.googleapis.com/google.firebase.fcm.v1.FcmError', errorCode })
  if (fieldViolation !== undefined) {
    details.push({ '@type': 'type.googleapis.com/google.rpc.BadRequest', fieldViolations: [{ field: fieldViolation, description: message }] })
  }
  return { error: { code, message, status, details } }
}

async function readBody (request: IncomingMessage): Promise<string> {
  let body = ''
  for await (const chunk of request) body += (chunk as Buffer).toString()
  return body
}

export async function startFakeFcm (): Promise<FakeFcm> {
  const dir = tempDataDir()
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', join(dir, 'tls-key.pem'), '-out', join(dir, 'tls-cert.pem'), '-days', '1',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' })
  // The service account's key pair: the private half goes into the JSON key
  // the server reads; the public half verifies its assertions here.
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  writeFileSync(join(dir, 'service-account.json'), JSON.stringify({
    type: 'service_account',
    project_id: PROJECT_ID,
    private_key_id: 'k1',
    private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }),
    client_email: CLIENT_EMAIL,
    client_id: '1234567890',
    auth_uri: 'https://accounts.google.com/o/oauth2/auth',
    token_uri: TOKEN_URI
  }))
  const verify = createVerifier({ key: publicKey.export({ type: 'spki', format: 'pem' }) as string, algorithms: ['RS256'], complete: true })
  let issuedCount = 0

  const fake: FakeFcm = {
    tokenRequests: [],
    requests: [],
    expiresIn: 3600,
    respond: () => ({ status: 200 }),
    env: {},
    async waitFor (count, match = () => true, timeoutMs = 10_000) {
      const started = Date.now()
      for (;;) {
        const matching = fake.requests.filter(match)
        if (matching.length >= count) return matching
        if (Date.now() - started > timeoutMs) throw new Error(`fake FCM: wanted ${count} requests, got ${matching.length}`)
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
    },
    async close () {
      server.closeAllConnections()
      server.close()
    }
  }

  const server: Server = createServer({
    key: readFileSync(join(dir, 'tls-key.pem')),
    cert: readFileSync(join(dir, 'tls-cert.pem'))
  }, (request, response) => {
    void (async () => {
      const text = await readBody(request)
      const send = (reply: Reply): void => {
        const answer = (): void => {
          if (response.destroyed) return
          response.writeHead(reply.status, { 'content-type': 'application/json', ...reply.headers })
          response.end(reply.body === undefined ? undefined : JSON.stringify(reply.body))
        }
        if (reply.delayMs === undefined) answer()
        else setTimeout(answer, reply.delayMs)
      }
      if (request.method === 'POST' && request.url === '/token') {
        const form = new URLSearchParams(text)
        let assertion: TokenRequest['assertion']
        try {
          assertion = verify(form.get('assertion') ?? '') as { header: Record<string, unknown>, payload: Record<string, unknown> }
        } catch (error) {
          assertion = error as Error
        }
        const ok = !(assertion instanceof Error) && form.get('grant_type') === 'urn:ietf:params:oauth:grant-type:jwt-bearer'
        const issued = ok ? `ya29.fake-${++issuedCount}` : undefined
        fake.tokenRequests.push({ grantType: form.get('grant_type'), assertion, issued, at: Date.now() })
        return send(ok
          ? { status: 200, body: { access_token: issued, expires_in: fake.expiresIn, token_type: 'Bearer' } }
          : { status: 400, body: { error: 'invalid_grant', error_description: 'Invalid JWT Signature.' } })
      }
      if (request.method === 'POST' && request.url === `/v1/projects/${PROJECT_ID}/messages:send`) {
        let body: any
        try { body = JSON.parse(text) } catch { body = undefined }
        const sendRequest: SendRequest = {
          path: request.url,
          headers: request.headers,
          accessToken: String(request.headers.authorization).replace(/^Bearer /, ''),
          body,
          token: body?.message?.token,
          at: Date.now()
        }
        const index = fake.requests.push(sendRequest) - 1
        return send(fake.respond(sendRequest, index))
      }
      send({ status: 404, body: fcmError(404, 'NOT_FOUND', `no route ${request.method} ${request.url}`) })
    })()
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as { port: number }).port
  fake.env = {
    FCM_SERVICE_ACCOUNT: join(dir, 'service-account.json'),
    FCM_ORIGIN: `https://127.0.0.1:${port}`,
    FCM_TOKEN_URL: `https://127.0.0.1:${port}/token`,
    FCM_CA: join(dir, 'tls-cert.pem')
  }
  return fake
}

/** A plausible FCM registration token (case matters in them). */
export function fcmToken (): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
  const part = (length: number): string => Array.from({ length }, () => alphabet[Math.floor(Math.random() * alphabet.length)]).join('')
  return `${part(22)}:APA91b${part(134)}`
}
