// JWT_JWKS_URL: tokens checked against keys a local JWKS server publishes,
// over MQTT and REST, through rotation and outages of that server.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { createServer, type Server } from 'node:http'
import { once } from 'node:events'
import { createServer as createNetServer, type Socket } from 'node:net'
import { generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto'
import { createSigner } from 'fast-jwt'
import { freePort, serverEnv, startServerProcess, SERVER_ARGS, type ServerHandle } from './helpers/server-process.ts'
import { connackRefusal } from './helpers/devices.ts'
import { uniqueUser, unsignedToken } from './helpers/tokens.ts'

interface SigningKey {
  kid: string
  alg: string
  privatePem: string
  publicPem: string
  jwk: Record<string, unknown>
}

function signingKey (type: 'rsa' | 'ec' | 'ed25519', kid: string): SigningKey {
  const pair = type === 'rsa'
    ? generateKeyPairSync('rsa', { modulusLength: 2048 })
    : type === 'ec' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('ed25519')
  const alg = type === 'rsa' ? 'RS256' : type === 'ec' ? 'ES256' : 'EdDSA'
  const publicKey: KeyObject = pair.publicKey
  return {
    kid,
    alg,
    privatePem: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    jwk: { ...publicKey.export({ format: 'jwk' }), kid, alg, use: 'sig' }
  }
}

interface SignOptions {
  kid?: string | null
  claims?: Record<string, unknown>
  expiresInMs?: number
}

/** A token for `sub` signed by `key`, with its kid unless another (or, with null, none) is given. */
function sign (key: SigningKey, sub: string, options: SignOptions = {}): string {
  const kid = options.kid === null ? undefined : options.kid ?? key.kid
  return createSigner({
    key: key.privatePem,
    algorithm: key.alg as 'RS256',
    ...(kid === undefined ? {} : { kid }),
    ...(options.expiresInMs === undefined ? {} : { expiresIn: options.expiresInMs })
  })({ sub, ...options.claims })
}

/** An identity provider's JWKS endpoint: serves `keys`, counts fetches, and can go down (connections reset). */
interface JwksServer {
  url: string
  keys: Array<Record<string, unknown>>
  fetches: number
  down: boolean
  close (): Promise<void>
}

async function startJwksServer (keys: SigningKey[]): Promise<JwksServer> {
  const jwks: JwksServer = {
    url: '',
    keys: keys.map((key) => key.jwk),
    fetches: 0,
    down: false,
    close: async () => {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    }
  }
  const server: Server = createServer((request, response) => {
    jwks.fetches++
    if (jwks.down) return request.socket.destroy()
    if (request.url !== '/.well-known/jwks.json') return response.writeHead(404).end()
    response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: jwks.keys }))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  jwks.url = `http://127.0.0.1:${(server.address() as { port: number }).port}/.well-known/jwks.json`
  return jwks
}

async function startWithJwks (t: { teardown (fn: () => unknown): void }, url: string, env: Record<string, string> = {}): Promise<ServerHandle> {
  const server = await startServerProcess({ mode: 'embedded', env: { JWT_SECRET: '', JWT_JWKS_URL: url, ...env } })
  t.teardown(() => server.stop())
  return server
}

/** Whether `token` connects as `user` over MQTT: undefined when accepted, else the CONNACK code. */
function connack (server: ServerHandle, user: string, token: string): Promise<number | undefined> {
  return connackRefusal({ url: server.mqttUrl, userId: user, deviceId: 'd', token })
}

/** GET /v1/sessions/current with `token`: status and body. */
async function rest (server: ServerHandle, token: string): Promise<{ status: number, body: any, retryAfter: string | null }> {
  const response = await fetch(`${server.httpUrl}/v1/sessions/current`, { headers: { authorization: `Bearer ${token}` } })
  return { status: response.status, body: await response.json(), retryAfter: response.headers.get('retry-after') }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

const rsa = signingKey('rsa', 'rsa-1')
const ec = signingKey('ec', 'ec-1')
const stranger = signingKey('rsa', 'stranger')

t.test('tokens signed by a key in the JWKS are accepted over MQTT and REST; no others', async (t) => {
  const jwks = await startJwksServer([rsa, ec])
  t.teardown(() => jwks.close())
  const server = await startWithJwks(t, jwks.url)
  const user = uniqueUser('jo')

  t.equal(await connack(server, user, sign(rsa, user)), undefined, 'RS256 token connects')
  t.equal(await connack(server, user, sign(ec, user)), undefined, 'ES256 token connects')
  const accepted = await rest(server, sign(rsa, user))
  t.equal(accepted.status, 200, 'RS256 token accepted over REST')
  t.equal(accepted.body.user, user)
  t.equal((await rest(server, sign(ec, user))).status, 200, 'ES256 token accepted over REST')

  const refused: Array<[string, string]> = [
    ['a key not in the JWKS', sign(stranger, user)],
    ['a key not in the JWKS, naming a kid that is', sign(stranger, user, { kid: rsa.kid })],
    ['the kid of another key type', sign(rsa, user, { kid: ec.kid })],
    ['HS256 with some secret', createSigner({ key: 'some-secret-some-secret-some-secret-0123', algorithm: 'HS256', kid: rsa.kid })({ sub: user })],
    ['HS256 signed with the public key (algorithm confusion)', createSigner({ key: rsa.publicPem, algorithm: 'HS256', kid: rsa.kid })({ sub: user })],
    ['alg none', unsignedToken(user)],
    ['no kid while the JWKS has two keys', sign(rsa, user, { kid: null })],
    ['expired', sign(rsa, user, { claims: { iat: Math.floor(Date.now() / 1000) - 120, exp: Math.floor(Date.now() / 1000) - 60 } })]
  ]
  for (const [what, token] of refused) {
    t.equal(await connack(server, user, token), 4, `${what}: CONNACK 4`)
    const answer = await rest(server, token)
    t.equal(answer.status, 401, `${what}: REST 401`)
    t.equal(answer.body.error, 'unauthorized')
  }
  t.equal(jwks.fetches, 1, 'one fetch so far: unknown kids within the cooldown (30 s) do not refetch')
})

t.test('a flood of tokens with random kids does not hammer the IdP', async (t) => {
  const jwks = await startJwksServer([rsa])
  t.teardown(() => jwks.close())
  const server = await startWithJwks(t, jwks.url)
  const user = uniqueUser('flood')
  t.equal((await rest(server, sign(rsa, user))).status, 200)
  const statuses = await Promise.all(Array.from({ length: 100 }, () => rest(server, sign(stranger, user, { kid: randomUUID() })).then((answer) => answer.status)))
  t.same(new Set(statuses), new Set([401]), 'all 100 refused')
  const codes = await Promise.all(Array.from({ length: 20 }, (_, i) => connackRefusal({ url: server.mqttUrl, userId: user, deviceId: `d${i}`, token: sign(stranger, user, { kid: randomUUID() }) })))
  t.same(new Set(codes), new Set([4]), 'all 20 CONNECTs refused')
  t.ok(jwks.fetches <= 2, `the JWKS was fetched ${jwks.fetches} times (once, and at most once more per 30 s cooldown)`)
})

t.test('rotation, a single key without kid, and an outage of the JWKS server', async (t) => {
  const jwks = await startJwksServer([rsa])
  t.teardown(() => jwks.close())
  const server = await startWithJwks(t, jwks.url, { JWT_JWKS_COOLDOWN_SECONDS: '1' })
  const user = uniqueUser('rota')
  t.equal(await connack(server, user, sign(rsa, user)), undefined, 'the first key connects')
  t.equal(await connack(server, user, sign(rsa, user, { kid: null })), undefined, 'a token without kid is accepted while the JWKS has one key')

  // The IdP rotates: the new key is published, the old one still listed.
  const next = signingKey('ec', 'ec-next')
  jwks.keys = [rsa.jwk, next.jwk]
  await sleep(1_100)
  t.equal(await connack(server, user, sign(next, user)), undefined, 'a token of the new key connects, no restart')
  t.equal((await rest(server, sign(next, user))).status, 200, 'and is accepted over REST')
  t.equal(await connack(server, user, sign(rsa, user, { kid: null })), 4, 'without kid: refused now that the JWKS has two keys')

  // The IdP goes down (connections reset). Known keys keep working from the cache.
  jwks.down = true
  const newer = signingKey('ed25519', 'ed-newer')
  await sleep(1_100)
  t.equal(await connack(server, user, sign(next, user)), undefined, 'a cached key still connects')
  t.equal(await connack(server, user, sign(newer, user)), 3, 'an unknown kid: CONNACK 3 (server unavailable), not 4')
  const unavailable = await rest(server, sign(newer, user))
  t.equal(unavailable.status, 503, 'REST: 503')
  t.equal(unavailable.body.error, 'auth_unavailable')
  t.type(unavailable.body.message, 'string')
  t.equal(unavailable.retryAfter, '5', 'with retry-after')

  // Failed fetches are not retried at once: ten more tokens in a row reach the IdP at most twice.
  const before = jwks.fetches
  for (let i = 0; i < 10; i++) t.equal((await rest(server, sign(newer, user, { kid: randomUUID() }))).status, 503)
  t.ok(jwks.fetches - before <= 2, `${jwks.fetches - before} fetch attempts for 10 tokens while down`)

  // Back up, with the newest key: accepted once the short backoff has passed.
  jwks.keys = [next.jwk, newer.jwk]
  jwks.down = false
  await sleep(1_100)
  t.equal(await connack(server, user, sign(newer, user)), undefined, 'EdDSA key published after the outage connects')
})

t.test('a JWKS server that cannot be reached: CONNACK 3 and 503', async (t) => {
  const server = await startWithJwks(t, `http://127.0.0.1:${await freePort()}/jwks.json`)
  const user = uniqueUser('nobody')
  t.equal(await connack(server, user, sign(rsa, user)), 3, 'CONNACK 3')
  const answer = await rest(server, sign(rsa, user))
  t.equal(answer.status, 503, 'REST 503')
  t.match(answer.body, { error: 'auth_unavailable', message: /retry/ })
  t.equal(await connack(server, user, createSigner({ key: 'some-secret-some-secret-some-secret-0123', algorithm: 'HS256' })({ sub: user })), 4, 'an HS256 token is refused outright (4): no key could ever check it')
})

t.test('a JWKS server that never answers: CONNACK 3 once the 5 s fetch timeout passes', async (t) => {
  const held: Socket[] = []
  const silent = createNetServer((socket) => held.push(socket))
  silent.listen(0, '127.0.0.1')
  await once(silent, 'listening')
  t.teardown(() => {
    for (const socket of held) socket.destroy()
    silent.close()
  })
  const server = await startWithJwks(t, `http://127.0.0.1:${(silent.address() as { port: number }).port}/jwks.json`)
  const user = uniqueUser('silent')
  const started = Date.now()
  t.equal(await connack(server, user, sign(rsa, user)), 3, 'CONNACK 3')
  const elapsed = Date.now() - started
  t.ok(elapsed >= 4_500 && elapsed < 9_000, `after ${elapsed} ms`)
})

t.test('JWT_ISSUER and JWT_AUDIENCE are enforced when set', async (t) => {
  const jwks = await startJwksServer([rsa])
  t.teardown(() => jwks.close())
  const server = await startWithJwks(t, jwks.url, { JWT_ISSUER: 'https://idp.example.com/', JWT_AUDIENCE: 'inboxd' })
  const user = uniqueUser('iss')
  const good = { iss: 'https://idp.example.com/', aud: 'inboxd' }
  t.equal(await connack(server, user, sign(rsa, user, { claims: good })), undefined, 'right iss and aud connect')
  t.equal((await rest(server, sign(rsa, user, { claims: good }))).status, 200, 'and are accepted over REST')
  t.equal(await connack(server, user, sign(rsa, user, { claims: { ...good, aud: ['other', 'inboxd'] } })), undefined, 'aud as a list containing ours')
  const refused: Array<[string, Record<string, unknown>]> = [
    ['another issuer', { ...good, iss: 'https://evil.example.com/' }],
    ['another audience', { ...good, aud: 'someone-else' }],
    ['no iss', { aud: 'inboxd' }],
    ['no aud', { iss: good.iss }]
  ]
  for (const [what, claims] of refused) {
    t.equal(await connack(server, user, sign(rsa, user, { claims })), 4, `${what}: CONNACK 4`)
    t.equal((await rest(server, sign(rsa, user, { claims }))).status, 401, `${what}: REST 401`)
  }
})

t.test('configuration errors: exit 1 with one line naming the variable', async (t) => {
  const base = serverEnv({ mode: 'embedded' })
  const url = 'https://idp.example.com/.well-known/jwks.json'
  const cases: Array<[RegExp, Record<string, string>]> = [
    [/JWT_SECRET and JWT_JWKS_URL are set together/, { JWT_JWKS_URL: url }],
    [/JWT_PUBLIC_KEY and JWT_JWKS_URL are set together/, { JWT_SECRET: '', JWT_PUBLIC_KEY: rsa.publicPem, JWT_JWKS_URL: url }],
    [/JWT_JWKS_URL is not a URL/, { JWT_SECRET: '', JWT_JWKS_URL: 'idp.example.com/jwks' }],
    [/JWT_JWKS_URL must be an https:\/\//, { JWT_SECRET: '', JWT_JWKS_URL: 'ftp://idp.example.com/jwks' }],
    [/JWT_JWKS_URL must not contain a user name or password/, { JWT_SECRET: '', JWT_JWKS_URL: 'https://me:pw@idp.example.com/jwks' }],
    [/JWT_JWKS_COOLDOWN_SECONDS/, { JWT_SECRET: '', JWT_JWKS_URL: url, JWT_JWKS_COOLDOWN_SECONDS: '0' }],
    [/DEMO_LOGIN needs JWT_SECRET/, { JWT_SECRET: '', JWT_JWKS_URL: url, DEMO_LOGIN: '1' }]
  ]
  for (const [message, env] of cases) {
    const result = spawnSync(process.execPath, SERVER_ARGS, { env: { PATH: process.env.PATH ?? '', ...base, ...env }, encoding: 'utf8', timeout: 20_000 })
    const lines = result.stderr.trim().split('\n').filter((line) => !line.includes('ExperimentalWarning'))
    t.equal(result.status, 1, `${message}: exit 1`)
    t.equal(lines.length, 1, `${message}: one line`)
    t.match(lines[0], message)
  }
})
