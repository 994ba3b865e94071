// DEMO_LOGIN=1: a development-only route that mints short-lived tokens for
// any user. Off by default, refused in production.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { startServerProcess, serverEnv, SERVER_ARGS } from './helpers/server-process.ts'
import { apiFor } from './helpers/rest.ts'

function startWith (env: Record<string, string>): { status: number | null, lines: string[] } {
  const result = spawnSync(process.execPath, SERVER_ARGS, {
    env: { PATH: process.env.PATH ?? '', ...serverEnv({ mode: 'embedded' }), ...env },
    encoding: 'utf8',
    timeout: 20_000
  })
  return { status: result.status, lines: result.stderr.trim().split('\n').filter((line) => !line.includes('ExperimentalWarning')) }
}

const mint = (httpUrl: string, body: unknown): Promise<Response> =>
  fetch(`${httpUrl}/v1/demo/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })

t.test('DEMO_LOGIN is refused in production and must be 1 or 0', async (t) => {
  const cases: Array<Record<string, string>> = [{ DEMO_LOGIN: '1', NODE_ENV: 'production' }, { DEMO_LOGIN: 'yes' }]
  for (const env of cases) {
    const { status, lines } = startWith(env)
    t.equal(status, 1, `${JSON.stringify(env)}: exit code 1`)
    t.equal(lines.length, 1, 'one line')
    t.match(lines[0], /DEMO_LOGIN/, 'names the variable')
  }
})

t.test('off by default: no such route', async (t) => {
  const server = await startServerProcess({ mode: 'embedded' })
  t.teardown(() => server.stop())
  t.equal((await mint(server.httpUrl, { user: 'dora' })).status, 404)
})

t.test('on: a short-lived token for any valid user name, which the API accepts', async (t) => {
  const server = await startServerProcess({ mode: 'embedded', env: { DEMO_LOGIN: '1' } })
  t.teardown(() => server.stop())
  t.match(server.output(), /DEMO_LOGIN is on/, 'says so in the log')

  const response = await mint(server.httpUrl, { user: 'dora' })
  t.equal(response.status, 200)
  const { token, expiresIn } = await response.json() as { token: string, expiresIn: number }
  const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { sub: string, exp: number }
  t.equal(claims.sub, 'dora')
  t.ok(claims.exp * 1000 - Date.now() <= expiresIn * 1000 && expiresIn <= 3600, 'expires within the hour')
  t.equal((await apiFor(server.httpUrl, 'dora', { token }).get('/v1/conversations')).status, 200, 'the API accepts it')

  t.equal((await mint(server.httpUrl, { user: 'no/slashes' })).status, 400, 'an invalid user id is refused')
  t.equal((await mint(server.httpUrl, {})).status, 400, 'a user is required')
  const openapi = await (await fetch(`${server.httpUrl}/openapi.json`)).json() as { paths: Record<string, unknown> }
  t.notOk('/v1/demo/token' in openapi.paths, 'not in the OpenAPI document (not part of the API)')
})

t.test('with JWT_ISSUER and JWT_AUDIENCE, demo tokens carry them (else the API would refuse its own tokens)', async (t) => {
  const server = await startServerProcess({ mode: 'embedded', env: { DEMO_LOGIN: '1', JWT_ISSUER: 'https://auth.example.com', JWT_AUDIENCE: 'chat' } })
  t.teardown(() => server.stop())
  const { token } = await (await mint(server.httpUrl, { user: 'dora' })).json() as { token: string }
  t.match(JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()), { iss: 'https://auth.example.com', aud: 'chat' })
  t.equal((await apiFor(server.httpUrl, 'dora', { token }).get('/v1/conversations')).status, 200, 'the API accepts it')
})
