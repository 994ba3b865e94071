// Logout and revocation cut live sessions on every server process within a
// second, and the token is refused afterwards over MQTT and REST, also after
// a restart.
import t from 'tap'
import { startServerProcess, flushRedisDb, tempDataDir, freePort } from './helpers/server-process.ts'
import { connectDevice, type Device } from './helpers/devices.ts'
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

async function refusedCode (url: string, user: string, deviceId: string, jwt: string): Promise<number | undefined> {
  try {
    const device = await connectDevice({ url, userId: user, deviceId, token: jwt })
    await device.end(true)
    return undefined
  } catch (error) {
    return (error as { code?: number }).code
  }
}

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
