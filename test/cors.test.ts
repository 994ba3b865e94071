// CORS for browser apps: only origins listed in CORS_ORIGINS get CORS
// headers (on answers and on preflights); none are sent when it is unset.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { startServerProcess, serverEnv, SERVER_ARGS } from './helpers/server-process.ts'
import { token, uniqueUser } from './helpers/tokens.ts'

const APP = 'https://app.example.com'
const DEV = 'http://localhost:5173'

t.test('listed origins get CORS headers, others do not', async (t) => {
  const server = await startServerProcess({ mode: 'embedded', env: { CORS_ORIGINS: `${APP}, ${DEV}` } })
  t.teardown(() => server.stop())
  const url = `${server.httpUrl}/v1/devices`
  const auth = { authorization: `Bearer ${token(uniqueUser('alice'))}` }

  for (const origin of [APP, DEV]) {
    const ok = await fetch(url, { headers: { ...auth, origin } })
    t.equal(ok.status, 200)
    t.equal(ok.headers.get('access-control-allow-origin'), origin, `${origin}: allowed on a 200`)
  }
  const denied = await fetch(url, { headers: { origin: APP } })
  t.equal(denied.status, 401)
  t.equal(denied.headers.get('access-control-allow-origin'), APP, 'a 401 is readable by the allowed app too')

  const other = await fetch(url, { headers: { ...auth, origin: 'https://evil.example.com' } })
  t.equal(other.status, 200, 'CORS does not block the server side; the browser does')
  t.equal(other.headers.get('access-control-allow-origin'), null, 'no allow-origin for an unlisted origin')

  const preflight = await fetch(`${server.httpUrl}/v1/messages`, {
    method: 'OPTIONS',
    headers: { origin: APP, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' }
  })
  t.equal(preflight.status, 204, 'preflight answered')
  t.equal(preflight.headers.get('access-control-allow-origin'), APP)
  t.match(preflight.headers.get('access-control-allow-headers') ?? '', /Authorization/)
  t.match(preflight.headers.get('access-control-allow-headers') ?? '', /Content-Type/)
  t.match(preflight.headers.get('access-control-allow-methods') ?? '', /POST/)

  const otherPreflight = await fetch(`${server.httpUrl}/v1/messages`, {
    method: 'OPTIONS',
    headers: { origin: 'https://evil.example.com', 'access-control-request-method': 'POST' }
  })
  t.equal(otherPreflight.headers.get('access-control-allow-origin'), null, 'no allow-origin on an unlisted preflight')
})

t.test('without CORS_ORIGINS there are no CORS headers; "*" must be explicit', async (t) => {
  const plain = await startServerProcess({ mode: 'embedded' })
  t.teardown(() => plain.stop())
  const none = await fetch(`${plain.httpUrl}/healthz`, { headers: { origin: APP } })
  t.equal(none.headers.get('access-control-allow-origin'), null)

  const any = await startServerProcess({ mode: 'embedded', env: { CORS_ORIGINS: '*' } })
  t.teardown(() => any.stop())
  const star = await fetch(`${any.httpUrl}/healthz`, { headers: { origin: APP } })
  t.equal(star.headers.get('access-control-allow-origin'), '*')
})

t.test('a malformed CORS_ORIGINS is a config error naming the variable', async (t) => {
  const base = serverEnv({ mode: 'embedded' })
  for (const value of ['app.example.com', 'https://app.example.com/', 'https://app.example.com/path', 'ftp://files.example.com', `*,${APP}`]) {
    const result = spawnSync(process.execPath, SERVER_ARGS, { env: { PATH: process.env.PATH ?? '', ...base, CORS_ORIGINS: value }, encoding: 'utf8', timeout: 20_000 })
    t.not(result.status, 0, `"${value}": exits non-zero`)
    const lines = result.stderr.trim().split('\n').filter((line) => !line.includes('ExperimentalWarning'))
    t.equal(lines.length, 1, `"${value}": one line`)
    t.match(lines[0], 'CORS_ORIGINS', `"${value}": names the variable`)
  }
})
