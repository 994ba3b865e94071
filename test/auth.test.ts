// Authentication and authorisation: every refusal case of the contract.
import t from 'tap'
import { generateKeyPairSync } from 'node:crypto'
import { createSigner } from 'fast-jwt'
import { startServerProcess } from './helpers/server-process.ts'
import { connectDevice, granted, inboxOf } from './helpers/devices.ts'
import { expiredToken, forgedToken, SECRET, token, uniqueUser, unsignedToken } from './helpers/tokens.ts'

async function refusal (promise: Promise<unknown>): Promise<number | undefined> {
  try {
    await promise
    return undefined
  } catch (error) {
    return (error as { code?: number }).code
  }
}

t.test('HS256 server', async (t) => {
  const server = await startServerProcess({ mode: 'embedded' })
  t.teardown(() => server.stop())
  const url = server.mqttUrl

  t.test('CONNECT refusals', async (t) => {
    const user = uniqueUser('carol')
    t.equal(await refusal(connectDevice({ url, userId: user, deviceId: 'd', token: expiredToken(user) })), 4, 'expired token: bad username or password')
    t.equal(await refusal(connectDevice({ url, userId: user, deviceId: 'd', token: forgedToken(user) })), 4, 'forged signature')
    t.equal(await refusal(connectDevice({ url, userId: user, deviceId: 'd', token: unsignedToken(user) })), 4, 'alg none')
    t.equal(await refusal(connectDevice({ url, userId: user, deviceId: 'd', token: 'not.a.jwt' })), 4, 'malformed')
    t.equal(await refusal(connectDevice({ url, userId: user, deviceId: 'd', token: '' })), 4, 'missing token')
    t.equal(await refusal(connectDevice({ url, userId: user, deviceId: 'd', token: token('mallory') })), 2, 'clientId of another user: identifier rejected')
    t.equal(await refusal(connectDevice({ url, userId: user, deviceId: 'd', token: token('') })), 4, 'token without a usable sub')
    t.equal(await refusal(connectDevice({ url, userId: user, deviceId: 'd:x', token: token(user) })), 2, 'deviceId with a colon')
    t.equal(await refusal(connectDevice({ url, userId: user, deviceId: 'd', token: token(user), extra: { clientId: user } })), 2, 'clientId without a device')
    const ok = await connectDevice({ url, userId: user, deviceId: 'd', token: token(user) })
    t.ok(ok.client.connected, 'a valid token and clientId connect')
    await ok.end()
  })

  t.test('SUBSCRIBE: own inbox and errors, and single users\' presence, only', async (t) => {
    const user = uniqueUser('dave')
    const victim = uniqueUser('victim')
    const device = await connectDevice({ url, userId: user, deviceId: 'd', subscribe: false })
    t.teardown(() => device.end())
    const codes = await granted(device.client, [
      inboxOf(user), `user/${user}/device/d/errors`,
      inboxOf(victim), `user/${victim}/device/d/errors`, `user/${user}/device/other/errors`,
      '#', 'user/+/inbox', 'user/#', `user/${user}/#`, '$SYS/#', 'presence/+', 'presence/#', 'presence/a|b',
      `presence/${victim}`
    ])
    t.same(codes, [2, 2, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 2],
      'own topics and one user\'s presence granted; everything else 0x80')
  })

  t.test('a refused subscription in a mixed SUBSCRIBE is never restored with the session', async (t) => {
    const attacker = uniqueUser('attacker')
    const victim = uniqueUser('victim')
    const sender = uniqueUser('sender')
    const device = await connectDevice({ url, userId: attacker, deviceId: 'd', subscribe: false })
    t.same(await granted(device.client, [inboxOf(attacker), inboxOf(victim)]), [2, 128])
    await device.end()
    const from = await connectDevice({ url, userId: sender, deviceId: 'd' })
    await from.send(victim, { id: 'secret', body: 'for the victim only' })
    await from.send(attacker, { id: 'mine', body: 'for the attacker' })
    await from.end()
    const again = await connectDevice({ url, userId: attacker, deviceId: 'd', subscribe: false })
    t.teardown(() => again.end())
    await again.waitForInbox(1)
    await new Promise((resolve) => setTimeout(resolve, 300))
    t.same(again.inbox.map((m) => m.id), ['mine'])
  })

  t.test('the connection closes when its token expires', async (t) => {
    const user = uniqueUser('erin')
    const device = await connectDevice({ url, userId: user, deviceId: 'd', token: token(user, { expiresInMs: 1500 }) })
    const closedAt = await new Promise<number>((resolve) => device.client.once('close', () => resolve(Date.now())))
    t.ok(closedAt > 0, 'closed by the server')
    await device.end(true)
  })
})

t.test('public-key server (ES256) refuses algorithm confusion', async (t) => {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const publicPem = publicKey.export({ type: 'spki', format: 'pem' }).toString()
  const privatePem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
  const server = await startServerProcess({ mode: 'embedded', env: { JWT_SECRET: '', JWT_PUBLIC_KEY: publicPem } })
  t.teardown(() => server.stop())
  const user = uniqueUser('frank')
  const es256 = createSigner({ key: privatePem, algorithm: 'ES256' })({ sub: user })
  const device = await connectDevice({ url: server.mqttUrl, userId: user, deviceId: 'd', token: es256 })
  t.ok(device.client.connected, 'ES256 token accepted')
  await device.end()
  const confused = createSigner({ key: publicPem, algorithm: 'HS256' })({ sub: user })
  t.equal(await refusal(connectDevice({ url: server.mqttUrl, userId: user, deviceId: 'd', token: confused })), 4, 'HS256 signed with the public key is refused')
})

t.test('JWT_ISSUER and JWT_AUDIENCE hold for HS256 tokens too', async (t) => {
  const server = await startServerProcess({ mode: 'embedded', env: { JWT_ISSUER: 'https://auth.example.com', JWT_AUDIENCE: 'chat' } })
  t.teardown(() => server.stop())
  const user = uniqueUser('gina')
  const signed = (claims: Record<string, unknown>): string => createSigner({ key: SECRET, algorithm: 'HS256' })({ sub: user, ...claims })
  const status = async (token: string): Promise<number> => (await fetch(`${server.httpUrl}/v1/sessions/current`, { headers: { authorization: `Bearer ${token}` } })).status
  const good = signed({ iss: 'https://auth.example.com', aud: 'chat' })
  const device = await connectDevice({ url: server.mqttUrl, userId: user, deviceId: 'd', token: good })
  t.ok(device.client.connected, 'right iss and aud connect')
  await device.end()
  t.equal(await status(good), 200, 'and are accepted over REST')
  const refused: Array<[string, string]> = [
    ['without them', token(user)],
    ['another issuer', signed({ iss: 'https://evil.example.com', aud: 'chat' })],
    ['another audience', signed({ iss: 'https://auth.example.com', aud: 'mail' })]
  ]
  for (const [what, bad] of refused) {
    t.equal(await refusal(connectDevice({ url: server.mqttUrl, userId: user, deviceId: 'd', token: bad })), 4, `${what}: CONNACK 4`)
    t.equal(await status(bad), 401, `${what}: REST 401`)
  }
})
