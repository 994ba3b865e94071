// APNs push for disconnected devices (issue 4), against a real HTTP/2 TLS
// server standing in for Apple: headers, provider JWT, payload without the
// body, no push to connected devices, coalescing, token removal, retries.
import t from 'tap'
import { startServerProcess, flushRedisDb, modesUnderTest } from './helpers/server-process.ts'
import { connectDevice } from './helpers/devices.ts'
import { apiFor, type Api } from './helpers/rest.ts'
import { uniqueUser } from './helpers/tokens.ts'
import { startFakeApns, deviceToken, KEY_ID, TEAM_ID, TOPIC, type PushRequest } from './helpers/fake-apns.ts'
import { metricsUntil, sample, scrape } from './helpers/metrics.ts'

await flushRedisDb(10)

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
const WINDOW_SECONDS = 2

async function register (api: Api, deviceId: string, token = deviceToken()): Promise<string> {
  const response = await api.post('/v1/devices', { platform: 'ios', token, deviceId })
  if (response.status !== 201) throw new Error(`register answered ${response.status}: ${JSON.stringify(response.body)}`)
  return token
}

/**
 * A device that connected once and is gone, as the server sees it: its disconnect is recorded after the
 * client has ended, and a message landing before that finds it connected (no push, as documented).
 */
async function offlineDevice (url: string, httpUrl: string, user: string, deviceId: string): Promise<void> {
  const device = await connectDevice({ url, userId: user, deviceId })
  await device.end()
  await untilOffline(httpUrl, user)
}

/** Until the server has recorded that none of `user`'s devices is connected. */
async function untilOffline (httpUrl: string, user: string): Promise<void> {
  const api = apiFor(httpUrl, user)
  const deadline = Date.now() + 10_000
  while ((await api.get(`/v1/presence/${user}`)).body.status !== 'offline') {
    if (Date.now() > deadline) throw new Error(`${user} still online 10 s after the device ended`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

for (const mode of modesUnderTest()) {
  t.test(`${mode} mode`, async (t) => {
    const apns = await startFakeApns()
    t.teardown(() => apns.close())
    const server = await startServerProcess({
      mode,
      redisDb: 10,
      env: { ...apns.env, PUSH_COALESCE_SECONDS: String(WINDOW_SECONDS), PUSH_RETRY_BASE_MS: '50', BACKLOG_RETENTION_SECONDS: '3600' }
    })
    t.teardown(() => server.stop())
    const url = server.mqttUrl
    const forToken = (token: string) => (request: PushRequest) => request.token === token
    t.match(server.output(), /push enabled: APNs/)
    t.match(server.output(), /FCM push disabled: set FCM_SERVICE_ACCOUNT/, 'FCM off, said in one line')

    t.test('a disconnected device gets an alert without the body; a connected one gets none', async (t) => {
      const alice = uniqueUser('alice')
      const bob = uniqueUser('bob')
      const bobApi = apiFor(server.httpUrl, bob)
      const phoneToken = await register(bobApi, 'phone')
      const tabletToken = await register(bobApi, 'tablet')
      await offlineDevice(url, server.httpUrl, bob, 'phone')
      const tablet = await connectDevice({ url, userId: bob, deviceId: 'tablet' })

      const sentAt = Date.now()
      const aliceApi = apiFor(server.httpUrl, alice)
      const sent = await aliceApi.post('/v1/messages', { to: bob, id: 'p1', body: 'secret text' })
      const [push] = await apns.waitFor(1, forToken(phoneToken))
      const { headers, payload, jwt } = push!
      t.equal(headers[':method'], 'POST')
      t.equal(headers['apns-push-type'], 'alert')
      t.equal(headers['apns-topic'], TOPIC)
      t.equal(headers['apns-collapse-id'], alice, 'one collapse id per conversation')
      const expiration = Number(headers['apns-expiration'])
      t.ok(Math.abs(expiration - (Math.floor(sentAt / 1000) + 3600)) <= 5, 'expires with the backlog retention')
      t.same(jwt, { iss: TEAM_ID, kid: KEY_ID }, 'provider token: ES256, signed by the .p8, team and key id')
      t.same(payload.aps, { alert: { title: alice, body: 'New message' }, badge: 1, sound: 'default', 'mutable-content': 1 })
      t.same({ conversation: payload.conversation, id: payload.id, seq: payload.seq }, { conversation: alice, id: 'p1', seq: 1 })
      t.notOk(JSON.stringify(payload).includes('secret text'), 'the body never goes to Apple')
      t.equal(sent.body.message.id, 'p1')

      // The tablet goes too and another message comes (the phone unregistered): the tablet's first push is for
      // that one. A push for p1 would have come first (and opened the window, holding p2 back).
      t.equal((await bobApi.delete('/v1/devices/phone')).status, 204)
      await tablet.end()
      await untilOffline(server.httpUrl, bob)
      await aliceApi.post('/v1/messages', { to: bob, id: 'p2', body: 'x' })
      const [tabletPush] = await apns.waitFor(1, forToken(tabletToken))
      t.equal(tabletPush!.payload.id, 'p2', 'the connected device got no push')
    })

    t.test('a group message: the group name as title, the sender in the text, muting stops alerts', async (t) => {
      const alice = uniqueUser('alice')
      const bob = uniqueUser('bob')
      const bobApi = apiFor(server.httpUrl, bob)
      const token = await register(bobApi, 'phone')
      await offlineDevice(url, server.httpUrl, bob, 'phone')
      // Carol is in the group too, and never mutes it.
      const carol = uniqueUser('carol')
      const carolToken = await register(apiFor(server.httpUrl, carol), 'phone')
      await offlineDevice(url, server.httpUrl, carol, 'phone')
      const aliceApi = apiFor(server.httpUrl, alice)
      const group = (await aliceApi.post('/v1/groups', { name: 'Weekend plans', members: [bob, carol] })).body.group.id as string
      await aliceApi.post('/v1/messages', { group, id: 'g1', body: 'secret text' })
      const [push] = await apns.waitFor(1, forToken(token))
      t.same(push!.payload.aps.alert, { title: 'Weekend plans', body: `${alice}: New message` })
      t.equal(push!.headers['apns-collapse-id'], `g:${group}`, 'one collapse id per group')
      t.match(push!.payload, { conversation: `g:${group}`, id: 'g1' })
      t.notOk(JSON.stringify(push!.payload).includes('secret text'), 'never the body')
      t.same((await bobApi.post(`/v1/groups/${group}/mute`, {})).body, { mutedUntil: 0 })
      // Once g1's window is over (a time-based window), an alert for g2 would go at once.
      await sleep(push!.at + WINDOW_SECONDS * 1000 + 300 - Date.now())
      await aliceApi.post('/v1/messages', { group, id: 'g2', body: 'x' })
      // g2 goes to push for every member at once, bob's muted check first of all its steps:
      // carol's alert for it comes after bob's was decided.
      await apns.waitFor(2, forToken(carolToken))
      t.same((await bobApi.post(`/v1/groups/${group}/mute`, { until: null })).body, { mutedUntil: null }, 'unmuted')
      // The next alert is for g3: one for g2 would have come before it (and opened a window holding g3 back).
      await aliceApi.post('/v1/messages', { group, id: 'g3', body: 'x' })
      const [, next] = await apns.waitFor(2, forToken(token), WINDOW_SECONDS * 1000 + 5_000)
      t.equal(next!.payload.id, 'g3', 'a muted group sends no alert')
      t.match((await bobApi.get('/v1/conversations')).body.conversations, [{ group, unread: 3 }], 'but unread counts go on')
    })

    t.test('a burst is coalesced: one push per conversation per window, badge current', async (t) => {
      const alice = uniqueUser('alice')
      const carol = uniqueUser('carol')
      const bob = uniqueUser('bob')
      const token = await register(apiFor(server.httpUrl, bob), 'phone')
      await offlineDevice(url, server.httpUrl, bob, 'phone')
      const aliceApi = apiFor(server.httpUrl, alice)
      // The window opens when the server pushes b0: after this, and before the fake APNs sees it (its delivery may be slow).
      const burstAt = Date.now()
      for (let i = 0; i < 5; i++) await aliceApi.post('/v1/messages', { to: bob, id: `b${i}`, body: i })
      await apiFor(server.httpUrl, carol).post('/v1/messages', { to: bob, id: 'c0', body: 'x' })
      const fromAlice = (request: PushRequest) => request.token === token && request.payload.conversation === alice

      const [first] = await apns.waitFor(1, fromAlice)
      // With several server processes (WORKERS), whichever reaches the shared
      // window first is pushed: usually b0, but not necessarily.
      t.match(first!.payload.id, /^b[0-3]$/, 'a message of the burst is pushed at once')
      t.equal((await apns.waitFor(1, (r) => r.token === token && r.payload.conversation === carol))[0]!.headers['apns-collapse-id'], carol,
        'another conversation has its own window')
      // The second push is the trailing one, at the window's end: the rest of the burst waited for it.
      const [, trailing] = await apns.waitFor(2, fromAlice, WINDOW_SECONDS * 1000 + 3000)
      t.equal(trailing!.payload.id, 'b4', 'one trailing push for the latest')
      t.equal(trailing!.payload.aps.badge, 6, 'with the current unread total')
      t.ok(trailing!.at - burstAt >= WINDOW_SECONDS * 1000 - 100, 'the rest wait for the window to end')
      // After the trailing push's own window (time-based), a new message is pushed at once: anything
      // that window's end sent by itself would come before it.
      await sleep(trailing!.at + WINDOW_SECONDS * 1000 + 300 - Date.now())
      await aliceApi.post('/v1/messages', { to: bob, id: 'b5', body: 5 })
      const pushed = await apns.waitFor(3, fromAlice, WINDOW_SECONDS * 1000 + 5_000)
      t.same(pushed.map((request) => request.payload.id).slice(1), ['b4', 'b5'], 'nothing more when nothing more arrived')
    })

    t.test('410 Unregistered (newer than the registration) and BadDeviceToken remove the token', async (t) => {
      const alice = uniqueUser('alice')
      const bob = uniqueUser('bob')
      const bobApi = apiFor(server.httpUrl, bob)
      const stale = await register(bobApi, 'old')
      const gone = await register(bobApi, 'gone')
      const bad = await register(bobApi, 'bad')
      for (const id of ['old', 'gone', 'bad']) await offlineDevice(url, server.httpUrl, bob, id)
      // A device is pushed only once the server has seen it go (the DISCONNECT is processed after end() returns).
      for (const deadline = Date.now() + 5_000; (await bobApi.get(`/v1/presence/${bob}`)).body.status !== 'offline' && Date.now() < deadline;) await sleep(20)
      const registeredAt = Date.now()
      apns.respond = (request) => {
        if (request.token === stale) return { status: 410, body: { reason: 'Unregistered', timestamp: registeredAt - 60_000 } }
        if (request.token === gone) return { status: 410, body: { reason: 'Unregistered', timestamp: registeredAt + 1000 } }
        if (request.token === bad) return { status: 400, body: { reason: 'BadDeviceToken' } }
        return { status: 200 }
      }
      t.teardown(() => { apns.respond = () => ({ status: 200 }) })
      const outcomes = (text: string): number => sample(text, 'inboxd_pushes_total', 'outcome="unregistered"') + sample(text, 'inboxd_pushes_total', 'outcome="bad_token"')
      const answered = outcomes(await scrape(server))
      await apiFor(server.httpUrl, alice).post('/v1/messages', { to: bob, id: 'x', body: 1 })
      await apns.waitFor(3, (r) => [stale, gone, bad].includes(r.token))
      // Each answer is counted as the server reads it, and its token is removed or kept right then.
      await metricsUntil(server, 'the three answers read', (text) => outcomes(text) >= answered + 3, { timeoutMs: 10_000, prefix: 'inboxd_pushes' })
      const devices = async (): Promise<string[]> => (await bobApi.get('/v1/devices')).body.devices.map((d: { deviceId: string }) => d.deviceId)
      for (const deadline = Date.now() + 10_000; (await devices()).length > 1 && Date.now() < deadline;) await sleep(20)
      t.same(await devices(), ['old'], 'a 410 from before the registration keeps the token; the others are removed')
    })

    t.test('429 and 503 are retried with backoff; delivery never waits for push', async (t) => {
      const alice = uniqueUser('alice')
      const bob = uniqueUser('bob')
      const token = await register(apiFor(server.httpUrl, bob), 'phone')
      await offlineDevice(url, server.httpUrl, bob, 'phone')
      const replies = [{ status: 429, body: { reason: 'TooManyRequests' } }, { status: 503, body: { reason: 'ServiceUnavailable' } }]
      apns.respond = (request) => (request.token === token ? { ...(replies.shift() ?? { status: 200 }), delayMs: 700 } : { status: 200 })
      t.teardown(() => { apns.respond = () => ({ status: 200 }) })
      const sent = (text: string): number => sample(text, 'inboxd_pushes_total', 'outcome="sent"')
      const sentBefore = sent(await scrape(server))

      const sender = await connectDevice({ url, userId: alice, deviceId: 'phone' })
      t.teardown(() => sender.end())
      await sender.send(bob, { id: 'r1', body: 'hi' })
      const ackedAt = Date.now()
      const attempts = await apns.waitFor(3, (r) => r.token === token)
      t.ok(ackedAt < attempts[0]!.at + 700, 'the PUBACK came before APNs answered the first attempt')
      t.ok(attempts[1]!.at - attempts[0]!.at >= 700 + 25 && attempts[2]!.at > attempts[1]!.at, 'retried after backoff')
      // The server has read the 200 (counted as sent): the attempts end there.
      await metricsUntil(server, 'the push sent', (text) => sent(text) > sentBefore, { timeoutMs: 10_000, prefix: 'inboxd_pushes' })
      t.equal(apns.requests.filter((r) => r.token === token).length, 3, 'stops once delivered')
    })

    t.test('device registration: validation, deletion, and a token moving to another user', async (t) => {
      const bob = uniqueUser('bob')
      const carol = uniqueUser('carol')
      const bobApi = apiFor(server.httpUrl, bob)
      const carolApi = apiFor(server.httpUrl, carol)
      t.match(await bobApi.post('/v1/devices', { platform: 'windows', token: deviceToken(), deviceId: 'p' }), { status: 400, body: { field: 'body.platform' } })
      t.match(await bobApi.post('/v1/devices', { platform: 'android', token: 'has spaces in it, which no FCM token has', deviceId: 'p' }), { status: 400, body: { field: 'body.token' } })
      t.match(await bobApi.post('/v1/devices', { platform: 'ios', token: 'not-hex', deviceId: 'p' }), { status: 400, body: { field: 'body.token' } })
      t.match(await bobApi.post('/v1/devices', { platform: 'ios', token: deviceToken() }), { status: 400, body: { field: 'body.deviceId' } })
      t.match(await bobApi.post('/v1/devices', { platform: 'ios', token: deviceToken(), deviceId: 'a:b' }), { status: 400, body: { field: 'body.deviceId' } })
      t.match(await bobApi.post('/v1/devices/none', undefined), { status: 404 })
      const del = await fetch(`${server.httpUrl}/v1/devices/none`, { method: 'DELETE', headers: { authorization: `Bearer ${(await import('./helpers/tokens.ts')).token(bob)}` } })
      t.equal(del.status, 404)

      const shared = await register(bobApi, 'phone')
      t.match((await bobApi.get('/v1/devices')).body.devices, [{ deviceId: 'phone', platform: 'ios', token: shared, sandbox: false }])
      await register(carolApi, 'phone', shared)
      t.same((await bobApi.get('/v1/devices')).body.devices, [], 'the phone now belongs to carol: bob no longer pushes to it')
      const removed = await fetch(`${server.httpUrl}/v1/devices/phone`, { method: 'DELETE', headers: { authorization: `Bearer ${(await import('./helpers/tokens.ts')).token(carol)}` } })
      t.equal(removed.status, 204)
      t.same((await carolApi.get('/v1/devices')).body.devices, [])
    })
  })
}
