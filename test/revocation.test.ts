// Logout and revocation cut live sessions on every server process within a
// second, and the token is refused afterwards over MQTT and REST, also after
// a restart.
import t from 'tap'
import { startServerProcess, flushRedisDb, tempDataDir, freePort } from './helpers/server-process.ts'
import { connackRefusal, connectDevice, type Device } from './helpers/devices.ts'
import { token, uniqueUser } from './helpers/tokens.ts'
import { apiFor } from './helpers/rest.ts'

const REDIS_DB = 7
await flushRedisDb(REDIS_DB)
const ADMIN = 'admin-token-0123456789-0123456789-x'
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Resolves with how long until the device's connection closed (rejects after `ms`). */
function closedWithin (device: Device, ms: number): Promise<number> {
  const started = Date.now()
  return new Promise((resolve, reject) => {
    if (!device.client.connected) return resolve(0)
    const timer = setTimeout(() => reject(new Error(`still connected after ${ms} ms`)), ms)
    device.client.once('close', () => { clearTimeout(timer); resolve(Date.now() - started) })
  })
}

const refusedCode = (url: string, user: string, deviceId: string, jwt: string): Promise<number | undefined> =>
  connackRefusal({ url, userId: user, deviceId, token: jwt })

t.test('redis, two processes: logout, logout everywhere, admin revoke', async (t) => {
  const nodeA = await startServerProcess({ mode: 'redis', redisDb: REDIS_DB, env: { WORKERS: '1', ADMIN_TOKEN: ADMIN } })
  const nodeB = await startServerProcess({ mode: 'redis', redisDb: REDIS_DB, env: { WORKERS: '1', ADMIN_TOKEN: ADMIN } })
  t.teardown(async () => { await nodeA.stop(); await nodeB.stop() })
  const alice = uniqueUser('alice')
  const phoneToken = token(alice, { expiresInMs: 3_600_000 })
  const laptopToken = token(alice, { expiresInMs: 7_200_000 })
  const phone = await connectDevice({ url: nodeA.mqttUrl, userId: alice, deviceId: 'phone', token: phoneToken })
  const laptop = await connectDevice({ url: nodeB.mqttUrl, userId: alice, deviceId: 'laptop', token: laptopToken })
  t.teardown(async () => { await phone.end(true); await laptop.end(true) })

  t.same((await apiFor(nodeB.httpUrl, alice, { token: phoneToken }).post('/v1/sessions/logout')).body, { loggedOut: 'session' })
  t.ok(await closedWithin(phone, 1_000) <= 1_000, 'the phone\'s connection on the other process closed within 1 s')
  await sleep(200)
  t.ok(laptop.client.connected, 'the laptop, with another token, stays')
  t.match(await apiFor(nodeA.httpUrl, alice, { token: phoneToken }).get('/v1/conversations'), { status: 401, body: { error: 'token_revoked' } }, 'REST refuses the token')
  t.equal(await refusedCode(nodeA.mqttUrl, alice, 'phone', phoneToken), 4, 'and so does MQTT')

  t.same((await apiFor(nodeA.httpUrl, alice, { token: laptopToken }).post('/v1/sessions/logout', { all: true })).body, { loggedOut: 'all' })
  t.ok(await closedWithin(laptop, 1_000) <= 1_000, 'logout everywhere closes the rest')
  t.equal(await refusedCode(nodeB.mqttUrl, alice, 'tablet', laptopToken), 4)
  await sleep(1_100) // a token issued after the mark
  const fresh = token(alice)
  t.equal((await apiFor(nodeA.httpUrl, alice, { token: fresh }).get('/v1/conversations')).status, 200, 'a new sign-in works')

  const bob = uniqueUser('bob')
  const bobPhone = await connectDevice({ url: nodeA.mqttUrl, userId: bob, deviceId: 'phone' })
  const bobLaptop = await connectDevice({ url: nodeB.mqttUrl, userId: bob, deviceId: 'laptop' })
  t.teardown(async () => { await bobPhone.end(true); await bobLaptop.end(true) })
  const admin = async (body: unknown, secret = ADMIN): Promise<{ status: number, body: unknown }> => {
    const response = await fetch(`${nodeB.httpUrl}/v1/admin/revoke`, { method: 'POST', headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
    return { status: response.status, body: await response.json() }
  }
  t.equal((await admin({ user: bob }, 'wrong-wrong-wrong-wrong-wrong-wrong-wrong')).status, 401, 'the admin route needs ADMIN_TOKEN')
  const issuedBefore = token(bob, { expiresInMs: 1000 * 60 })
  t.same((await admin({ user: bob, deviceId: 'phone' })).body, { revoked: `${bob}:phone` })
  t.ok(await closedWithin(bobPhone, 1_000) <= 1_000, 'an admin revokes one device')
  await sleep(200)
  t.ok(bobLaptop.client.connected, 'the user\'s other device stays')
  t.equal(await refusedCode(nodeA.mqttUrl, bob, 'phone', issuedBefore), 4, 'that device cannot reconnect with a token issued before')
})

t.test('embedded: a revocation survives a restart', async (t) => {
  const options = { mode: 'embedded' as const, dataDir: tempDataDir(), mqttPort: await freePort(), httpPort: await freePort() }
  let server = await startServerProcess(options)
  t.teardown(() => server.stop())
  const carol = uniqueUser('carol')
  const jwt = token(carol)
  t.equal((await apiFor(server.httpUrl, carol, { token: jwt }).post('/v1/sessions/logout')).status, 200)
  await server.stop()
  server = await startServerProcess(options)
  t.match(await apiFor(server.httpUrl, carol, { token: jwt }).get('/v1/conversations'), { status: 401, body: { error: 'token_revoked' } })
  t.equal(await refusedCode(server.mqttUrl, carol, 'phone', jwt), 4)
})

t.test('the SDK: logout() ends in "loggedOut"; a logout everywhere from another device ends it in "revoked", and it stops reconnecting', async (t) => {
  const { createClient } = await import('../client-sdk/src/index.ts')
  const server = await startServerProcess({ mode: 'embedded' })
  t.teardown(() => server.stop())
  const dave = uniqueUser('dave')
  const started = async (deviceId: string, jwt: string) => {
    let tokens = 0
    const states: string[] = []
    const client = await createClient({ url: server.wsUrl, deviceId, getToken: async () => { tokens++; return jwt }, reconnect: { minDelayMs: 100, maxDelayMs: 200 } })
    client.on('state', (state) => states.push(state))
    client.on('error', () => {})
    t.teardown(() => client.stop())
    return { client, states, tokens: () => tokens }
  }
  const until = async (check: () => boolean, what: string): Promise<void> => {
    // Generous: a wait for an event, which a loaded machine (CI beside other work) can make slow.
    for (const deadline = Date.now() + 20_000; !check(); await sleep(20)) if (Date.now() > deadline) throw new Error(`timed out: ${what}`)
  }

  // Distinct tokens (different expiry) even when signed in the same second.
  const tabletToken = token(dave, { expiresInMs: 3_600_000 })
  const tablet = await started('tablet', tabletToken)
  t.match((await apiFor(server.httpUrl, dave, { token: tabletToken }).get('/v1/sessions/current')).body, { user: dave, issuedAt: Number, expiresAt: Number }, 'GET /v1/sessions/current: the token is good')
  await tablet.client.logout()
  t.equal(tablet.client.state, 'loggedOut')
  t.match(await apiFor(server.httpUrl, dave, { token: tabletToken }).get('/v1/sessions/current'), { status: 401, body: { error: 'token_revoked' } }, 'and the server refuses its token')

  await sleep(1_100) // a token from a later second than the logout mark
  const phone = await started('phone', token(dave, { expiresInMs: 3_601_000 }))
  const laptopToken = token(dave, { expiresInMs: 3_602_000 })
  t.same((await apiFor(server.httpUrl, dave, { token: laptopToken }).post('/v1/sessions/logout', { all: true })).body, { loggedOut: 'all' })
  await until(() => phone.client.state === 'revoked', 'the phone client to be revoked').catch((error: Error) => { throw new Error(`${error.message}; its states: ${phone.states.join(' → ')}`) })
  t.pass(`the phone's client went ${phone.states.join(' → ')}`)
  const attempts = phone.tokens()
  await sleep(1_000)
  t.equal(phone.client.state, 'revoked', 'and stays there')
  t.equal(phone.tokens(), attempts, 'without asking for tokens (no reconnect attempts)')
})
