// FCM push for disconnected Android devices, against a real HTTPS server
// standing in for Google's token endpoint and FCM's v1 send endpoint: the
// OAuth2 assertion, access-token reuse and renewal, the payload without the
// body, token removal, retries (Retry-After), giving up; config errors.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { startServerProcess, serverEnv, flushRedisDb, modesUnderTest, tempDataDir, SERVER_ARGS } from './helpers/server-process.ts'
import { connectDevice } from './helpers/devices.ts'
import { apiFor, type Api } from './helpers/rest.ts'
import { uniqueUser } from './helpers/tokens.ts'
import { metricsUntil, sample, scrape } from './helpers/metrics.ts'
import { startFakeFcm, fcmToken, fcmError, CLIENT_EMAIL, PROJECT_ID, TOKEN_URI, type Reply, type SendRequest } from './helpers/fake-fcm.ts'

const REDIS_DB = 15
await flushRedisDb(REDIS_DB)

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
const WINDOW_SECONDS = 1
const MAX_ATTEMPTS = 3
/** Short-lived access tokens, so renewal is seen within the test. */
const TOKEN_SECONDS = 3

async function register (api: Api, deviceId: string, token = fcmToken()): Promise<string> {
  const response = await api.post('/v1/devices', { platform: 'android', token, deviceId })
  if (response.status !== 201) throw new Error(`register answered ${response.status}: ${JSON.stringify(response.body)}`)
  return token
}

/** A device that has a persistent session but is not connected. */
async function offlineDevice (url: string, user: string, deviceId: string): Promise<void> {
  const device = await connectDevice({ url, userId: user, deviceId })
  await device.end()
}

async function deviceIds (api: Api): Promise<string[]> {
  return (await api.get('/v1/devices')).body.devices.map((d: { deviceId: string }) => d.deviceId).sort()
}

for (const mode of modesUnderTest()) {
  t.test(`${mode} mode`, async (t) => {
    const fcm = await startFakeFcm()
    fcm.expiresIn = TOKEN_SECONDS
    t.teardown(() => fcm.close())
    const server = await startServerProcess({
      mode,
      redisDb: REDIS_DB,
      env: {
        ...fcm.env,
        PUSH_COALESCE_SECONDS: String(WINDOW_SECONDS),
        PUSH_RETRY_BASE_MS: '50',
        PUSH_MAX_ATTEMPTS: String(MAX_ATTEMPTS),
        BACKLOG_RETENTION_SECONDS: '3600'
      }
    })
    t.teardown(() => server.stop())
    const url = server.mqttUrl
    const forToken = (token: string) => (request: SendRequest) => request.token === token
    t.match(server.output(), /push enabled: FCM/)
    t.match(server.output(), /APNs push disabled/, 'APNs off, said in one line')

    t.test('a disconnected device gets a notification without the body; several pushes share one access token', async (t) => {
      const alice = uniqueUser('alice')
      const carol = uniqueUser('carol')
      const bob = uniqueUser('bob')
      const bobApi = apiFor(server.httpUrl, bob)
      const phoneToken = await register(bobApi, 'phone')
      const tabletToken = await register(bobApi, 'tablet')
      const devices = (await bobApi.get('/v1/devices')).body.devices as Array<{ deviceId: string }>
      t.match(devices.find((device) => device.deviceId === 'phone'), { deviceId: 'phone', platform: 'android', token: phoneToken, sandbox: false },
        'the FCM token is kept as given (case matters)')
      await offlineDevice(url, bob, 'phone')
      const tablet = await connectDevice({ url, userId: bob, deviceId: 'tablet' })
      t.teardown(() => tablet.end())

      const sentAt = Date.now()
      await apiFor(server.httpUrl, alice).post('/v1/messages', { to: bob, id: 'p1', body: 'secret text' })
      await fcm.waitFor(1, forToken(phoneToken))
      await apiFor(server.httpUrl, carol).post('/v1/messages', { to: bob, id: 'p2', body: 'more secret text' })
      const pushes = await fcm.waitFor(2, forToken(phoneToken))
      const push = pushes.find((request) => request.body.message.data.conversation === alice)!
      t.equal(push.path, `/v1/projects/${PROJECT_ID}/messages:send`)
      t.match(push.headers['content-type'], /^application\/json/)
      const { message } = push.body
      t.same(message.notification, { title: alice, body: 'New message' }, 'sender as title, PUSH_TEXT as body')
      t.equal(message.android.collapse_key, alice, 'one collapse key per conversation')
      t.equal(message.android.priority, 'HIGH')
      t.ok(Math.abs(Number(message.android.ttl.replace(/s$/, '')) - 3600) <= 5, 'ttl: the backlog retention')
      t.same(message.data, { conversation: alice, id: 'p1', seq: '1', badge: '1' }, 'data: strings only, with the unread badge')
      t.same(pushes.find((request) => request.body.message.data.conversation === carol)!.body.message.data,
        { conversation: carol, id: 'p2', seq: '2', badge: '2' }, 'the badge counts every conversation')
      t.notOk(JSON.stringify(pushes.map((request) => request.body)).includes('secret'), 'the body never goes to Google')

      t.equal(fcm.tokenRequests.length, 1, 'one token fetch for several pushes')
      const [fetch] = fcm.tokenRequests
      t.equal(fetch!.grantType, 'urn:ietf:params:oauth:grant-type:jwt-bearer')
      if (fetch!.assertion instanceof Error) throw fetch!.assertion
      const { header, payload } = fetch!.assertion
      t.equal(header.alg, 'RS256', 'signed RS256; the signature verifies with the service account\'s public key')
      t.equal(payload.iss, CLIENT_EMAIL)
      t.equal(payload.scope, 'https://www.googleapis.com/auth/firebase.messaging')
      t.equal(payload.aud, TOKEN_URI, 'audience: the key\'s token_uri (even when FCM_TOKEN_URL sends it elsewhere)')
      t.equal(payload.exp, (payload.iat as number) + 3600)
      t.ok(Math.abs((payload.iat as number) - sentAt / 1000) <= 5, 'issued now')
      t.ok(pushes.every((request) => request.accessToken === fetch!.issued), 'every push carries that access token')

      // The tablet goes too and another message comes (the phone unregistered): the tablet's first push is for
      // that one. A push for p1 would have come first (and opened the window, holding p3 back).
      t.equal((await bobApi.delete('/v1/devices/phone')).status, 204)
      await tablet.end()
      for (const deadline = Date.now() + 10_000; (await bobApi.get(`/v1/presence/${bob}`)).body.status !== 'offline' && Date.now() < deadline;) await sleep(20)
      await apiFor(server.httpUrl, alice).post('/v1/messages', { to: bob, id: 'p3', body: 'x' })
      const [tabletPush] = await fcm.waitFor(1, forToken(tabletToken))
      t.equal(tabletPush!.body.message.data.id, 'p3', 'the connected device got no push')
    })

    t.test('a new access token once the old one is about to expire', async (t) => {
      const alice = uniqueUser('alice')
      const bob = uniqueUser('bob')
      const token = await register(apiFor(server.httpUrl, bob), 'phone')
      await offlineDevice(url, bob, 'phone')
      const fetchesBefore = fcm.tokenRequests.length
      const previous = fcm.tokenRequests.at(-1)!.issued
      await sleep(TOKEN_SECONDS * 1000)
      await apiFor(server.httpUrl, alice).post('/v1/messages', { to: bob, id: 'e1', body: 'x' })
      const [push] = await fcm.waitFor(1, forToken(token))
      t.equal(fcm.tokenRequests.length, fetchesBefore + 1, 'one new token fetch')
      t.equal(push!.accessToken, fcm.tokenRequests.at(-1)!.issued, 'the push carries the new token')
      t.not(push!.accessToken, previous)
    })

    t.test('a burst is coalesced per conversation, as for APNs', async (t) => {
      const alice = uniqueUser('alice')
      const bob = uniqueUser('bob')
      const token = await register(apiFor(server.httpUrl, bob), 'phone')
      await offlineDevice(url, bob, 'phone')
      const aliceApi = apiFor(server.httpUrl, alice)
      for (let i = 0; i < 3; i++) await aliceApi.post('/v1/messages', { to: bob, id: `b${i}`, body: i })
      const [first] = await fcm.waitFor(1, forToken(token))
      t.equal(first!.body.message.data.id, 'b0', 'the first message is pushed at once')
      const [, trailing] = await fcm.waitFor(2, forToken(token), WINDOW_SECONDS * 1000 + 3000)
      t.same(trailing!.body.message.data, { conversation: alice, id: 'b2', seq: '3', badge: '3' }, 'one trailing push for the latest, badge current')
      // Past the trailing push's own window (time-based), a new message is pushed at once: anything that
      // window's end sent by itself would come before it.
      await sleep(trailing!.at + WINDOW_SECONDS * 1000 + 300 - Date.now())
      await aliceApi.post('/v1/messages', { to: bob, id: 'b3', body: 3 })
      const pushed = await fcm.waitFor(3, forToken(token), WINDOW_SECONDS * 1000 + 5_000)
      t.same(pushed.map((request) => request.body.message.data.id), ['b0', 'b2', 'b3'], 'nothing more')
    })

    t.test('UNREGISTERED and INVALID_ARGUMENT naming the token remove the device; other errors do not', async (t) => {
      const alice = uniqueUser('alice')
      const bob = uniqueUser('bob')
      const bobApi = apiFor(server.httpUrl, bob)
      const gone = await register(bobApi, 'gone')
      const invalid = await register(bobApi, 'invalid')
      const payload = await register(bobApi, 'payload')
      const again = await register(bobApi, 'again')
      for (const id of ['gone', 'invalid', 'payload', 'again']) await offlineDevice(url, bob, id)
      fcm.respond = (request) => {
        if (request.token === gone) return { status: 404, body: fcmError(404, 'NOT_FOUND', 'Requested entity was not found.', 'UNREGISTERED') }
        if (request.token === invalid) {
          return { status: 400, body: fcmError(400, 'INVALID_ARGUMENT', 'The registration token is not a valid FCM registration token', 'INVALID_ARGUMENT', 'message.token') }
        }
        if (request.token === payload) {
          return { status: 400, body: fcmError(400, 'INVALID_ARGUMENT', 'Invalid value at \'message.android.ttl\'', 'INVALID_ARGUMENT', 'message.android.ttl') }
        }
        // This phone re-registers (same token) while FCM is still answering.
        if (request.token === again) return { status: 404, body: fcmError(404, 'NOT_FOUND', 'Requested entity was not found.', 'UNREGISTERED'), delayMs: 600 }
        return { status: 200 }
      }
      t.teardown(() => { fcm.respond = () => ({ status: 200 }) })
      await apiFor(server.httpUrl, alice).post('/v1/messages', { to: bob, id: 'x', body: 1 })
      await fcm.waitFor(4, (r) => [gone, invalid, payload, again].includes(r.token))
      await register(bobApi, 'again', again)
      await sleep(1000)
      t.same(await deviceIds(bobApi), ['again', 'payload'],
        'UNREGISTERED and a bad token are removed; a payload error and a registration newer than the request are kept')
      t.equal(fcm.requests.filter((r) => r.token === payload).length, 1, 'a 400 is not retried')
    })

    t.test('429 with Retry-After and 5xx are retried with backoff until delivered', async (t) => {
      const alice = uniqueUser('alice')
      const bob = uniqueUser('bob')
      const token = await register(apiFor(server.httpUrl, bob), 'phone')
      await offlineDevice(url, bob, 'phone')
      const replies: Reply[] = [
        { status: 429, body: fcmError(429, 'RESOURCE_EXHAUSTED', 'Quota exceeded', 'QUOTA_EXCEEDED'), headers: { 'retry-after': '1' } },
        { status: 500, body: fcmError(500, 'INTERNAL', 'Internal error', 'INTERNAL') }
      ]
      fcm.respond = (request) => (request.token === token ? { ...(replies.shift() ?? { status: 200 }) } : { status: 200 })
      t.teardown(() => { fcm.respond = () => ({ status: 200 }) })
      const sent = (text: string): number => sample(text, 'inboxd_pushes_total', 'outcome="sent"')
      const sentBefore = sent(await scrape(server))

      const sender = await connectDevice({ url, userId: alice, deviceId: 'phone' })
      t.teardown(() => sender.end())
      await sender.send(bob, { id: 'r1', body: 'hi' })
      const attempts = await fcm.waitFor(3, forToken(token), 10_000)
      t.ok(attempts[1]!.at - attempts[0]!.at >= 950, `waited for Retry-After: 1 (${attempts[1]!.at - attempts[0]!.at} ms; backoff alone is ≤ 50)`)
      t.ok(attempts[2]!.at - attempts[1]!.at >= 50, '5xx: retried after backoff')
      t.ok(attempts.every((attempt) => attempt.body.message.data.id === 'r1'))
      // The server has read the 200 (counted as sent): the attempts end there.
      await metricsUntil(server, 'the push sent', (text) => sent(text) > sentBefore, { timeoutMs: 10_000, prefix: 'inboxd_pushes' })
      t.equal(fcm.requests.filter(forToken(token)).length, 3, 'stops once delivered')
      t.same(await deviceIds(apiFor(server.httpUrl, bob)), ['phone'])
    })

    t.test('gives up after PUSH_MAX_ATTEMPTS, keeping the device', async (t) => {
      const alice = uniqueUser('alice')
      const bob = uniqueUser('bob')
      const token = await register(apiFor(server.httpUrl, bob), 'phone')
      await offlineDevice(url, bob, 'phone')
      fcm.respond = (request) => (request.token === token
        ? { status: 503, body: fcmError(503, 'UNAVAILABLE', 'The service is currently unavailable.', 'UNAVAILABLE') }
        : { status: 200 })
      t.teardown(() => { fcm.respond = () => ({ status: 200 }) })
      await apiFor(server.httpUrl, alice).post('/v1/messages', { to: bob, id: 'g1', body: 'x' })
      await fcm.waitFor(MAX_ATTEMPTS, forToken(token))
      // The server says when it gives up: the attempts are over.
      const givenUp = new RegExp(`"id":"g1"[^\\n]*push given up after retries`)
      for (const deadline = Date.now() + 10_000; !givenUp.test(server.output()) && Date.now() < deadline;) await sleep(20)
      t.match(server.output(), givenUp)
      t.equal(fcm.requests.filter(forToken(token)).length, MAX_ATTEMPTS, `${MAX_ATTEMPTS} attempts, then no more`)
      t.same(await deviceIds(apiFor(server.httpUrl, bob)), ['phone'], 'service trouble does not remove the device')
    })
  })
}

t.test('FCM configuration: an unusable key refuses to start, naming FCM_SERVICE_ACCOUNT', async (t) => {
  const dir = tempDataDir()
  writeFileSync(join(dir, 'not-json.json'), 'nope')
  writeFileSync(join(dir, 'no-key.json'), JSON.stringify({ project_id: 'p', client_email: 'e@x', token_uri: TOKEN_URI }))
  writeFileSync(join(dir, 'bad-key.json'), JSON.stringify({ project_id: 'p', client_email: 'e@x', token_uri: TOKEN_URI, private_key: '-----BEGIN PRIVATE KEY-----\nnonsense\n-----END PRIVATE KEY-----\n' }))
  const fcm = await startFakeFcm()
  t.teardown(() => fcm.close())
  const base = serverEnv({ mode: 'embedded' })
  const cases: Array<[string, Record<string, string>]> = [
    ['FCM_SERVICE_ACCOUNT', { FCM_SERVICE_ACCOUNT: join(dir, 'missing.json') }],
    ['FCM_SERVICE_ACCOUNT', { FCM_SERVICE_ACCOUNT: join(dir, 'not-json.json') }],
    ['FCM_SERVICE_ACCOUNT', { FCM_SERVICE_ACCOUNT: join(dir, 'no-key.json') }],
    ['FCM_SERVICE_ACCOUNT', { FCM_SERVICE_ACCOUNT: join(dir, 'bad-key.json') }],
    ['FCM_ORIGIN', { ...fcm.env, FCM_ORIGIN: 'http://127.0.0.1:1' }],
    ['FCM_TOKEN_URL', { ...fcm.env, FCM_TOKEN_URL: 'not a url' }],
    ['FCM_CA', { ...fcm.env, FCM_CA: join(dir, 'missing.pem') }]
  ]
  for (const [variable, env] of cases) {
    const result = spawnSync(process.execPath, SERVER_ARGS, { env: { PATH: process.env.PATH ?? '', ...base, ...env }, encoding: 'utf8', timeout: 20_000 })
    t.equal(result.status, 1, `${variable}: exits with 1`)
    const lines = result.stderr.trim().split('\n').filter((line) => !line.includes('ExperimentalWarning'))
    t.equal(lines.length, 1, `${variable}: one line`)
    t.match(lines[0], variable, `${variable}: names the variable`)
  }
})
