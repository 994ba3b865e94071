// A local stand-in for api.push.apple.com: a real HTTP/2 server over TLS
// (self-signed certificate made with openssl), which records every request
// and answers as each test tells it to. The server under test reaches it
// through APNS_ORIGIN and trusts it through APNS_CA.
import { createSecureServer, type Http2Server, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2'
import { generateKeyPairSync } from 'node:crypto'
import { execFileSync } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createVerifier } from 'fast-jwt'
import { tempDataDir } from './server-process.ts'

export interface PushRequest {
  token: string
  headers: IncomingHttpHeaders
  payload: any
  /** The provider token's verified claims and header, or the verification error. */
  jwt: { iss?: string, kid?: string } | Error
  at: number
}

export interface Reply { status: number, body?: unknown, delayMs?: number }

export interface FakeApns {
  requests: PushRequest[]
  /** Decides each answer; by default 200. */
  respond: (request: PushRequest, index: number) => Reply
  /** Environment for the server under test. */
  env: Record<string, string>
  waitFor (count: number, match?: (request: PushRequest) => boolean, timeoutMs?: number): Promise<PushRequest[]>
  close (): Promise<void>
}

export const TEAM_ID = 'TEAM123456'
export const KEY_ID = 'KEY1234567'
export const TOPIC = 'com.example.chat'

export async function startFakeApns (): Promise<FakeApns> {
  const dir = tempDataDir()
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', join(dir, 'tls-key.pem'), '-out', join(dir, 'tls-cert.pem'), '-days', '1',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' })
  // The provider signing key (what Apple gives you as a .p8).
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  writeFileSync(join(dir, 'AuthKey.p8'), privateKey.export({ type: 'pkcs8', format: 'pem' }))
  const verify = createVerifier({ key: publicKey.export({ type: 'spki', format: 'pem' }) as string, algorithms: ['ES256'], complete: true })

  const fake: FakeApns = {
    requests: [],
    respond: () => ({ status: 200 }),
    env: {},
    async waitFor (count, match = () => true, timeoutMs = 10_000) {
      const started = Date.now()
      for (;;) {
        const matching = fake.requests.filter(match)
        if (matching.length >= count) return matching
        if (Date.now() - started > timeoutMs) throw new Error(`fake APNs: wanted ${count} requests, got ${matching.length}`)
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
    },
    async close () {
      server.close()
    }
  }

  const server: Http2Server = createSecureServer({
    key: readFileSync(join(dir, 'tls-key.pem')),
    cert: readFileSync(join(dir, 'tls-cert.pem'))
  })
  server.on('stream', (stream: ServerHttp2Stream, headers) => {
    let body = ''
    stream.on('data', (chunk: Buffer) => { body += chunk.toString() })
    stream.on('end', () => {
      const path = String(headers[':path'])
      let jwt: PushRequest['jwt']
      try {
        const decoded = verify(String(headers.authorization).replace(/^bearer /, '')) as { header: { kid: string }, payload: { iss: string } }
        jwt = { iss: decoded.payload.iss, kid: decoded.header.kid }
      } catch (error) {
        jwt = error as Error
      }
      const request: PushRequest = { token: path.replace('/3/device/', ''), headers, payload: JSON.parse(body), jwt, at: Date.now() }
      const index = fake.requests.push(request) - 1
      const reply = fake.respond(request, index)
      const answer = (): void => {
        if (stream.destroyed) return
        stream.respond({ ':status': reply.status, 'apns-id': `id-${index}` })
        stream.end(reply.body === undefined ? undefined : JSON.stringify(reply.body))
      }
      if (reply.delayMs === undefined) answer()
      else setTimeout(answer, reply.delayMs)
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as { port: number }).port
  fake.env = {
    APNS_KEY: join(dir, 'AuthKey.p8'),
    APNS_KEY_ID: KEY_ID,
    APNS_TEAM_ID: TEAM_ID,
    APNS_TOPIC: TOPIC,
    APNS_ORIGIN: `https://127.0.0.1:${port}`,
    APNS_CA: join(dir, 'tls-cert.pem')
  }
  return fake
}

/** A plausible APNs device token (64 hex characters). */
export function deviceToken (): string {
  return Array.from({ length: 64 }, () => '0123456789abcdef'[Math.floor(Math.random() * 16)]).join('')
}
