// The OpenAPI document against what the routes really answer: every /v1
// operation declares 401 (and answers it without a token), every error it
// declares has the shared error schema and a description, and the statuses
// that bad input actually produces are all declared.
import t from 'tap'
import { startServerProcess } from './helpers/server-process.ts'
import { token, uniqueUser } from './helpers/tokens.ts'

interface Operation { responses: Record<string, { description?: string, content?: { 'application/json'?: { schema?: { required?: string[] } } } }> }
type Doc = { paths: Record<string, Record<string, Operation>> }

const server = await startServerProcess({ mode: 'embedded', env: { MAX_PAYLOAD_BYTES: '1024' } })
t.teardown(() => server.stop())
const doc = await (await fetch(`${server.httpUrl}/openapi.json`)).json() as Doc
const v1 = Object.entries(doc.paths).filter(([path]) => path.startsWith('/v1/'))

/** Declared statuses of the operation serving `method path` (path with real values). */
function declared (method: string, path: string): string[] {
  const entry = v1.find(([template]) => new RegExp(`^${template.replace(/\{[^}]+\}/g, '[^/]+')}$`).test(path.split('?')[0]!))
  const operation = entry?.[1][method.toLowerCase()]
  if (operation === undefined) throw new Error(`no ${method} ${path} in the document`)
  return Object.keys(operation.responses)
}

t.test('every /v1 operation declares 401 and answers it without a token', async (t) => {
  t.ok(v1.length >= 20, `${v1.length} /v1 paths documented`)
  for (const [template, operations] of v1) {
    const path = template.replace(/\{[^}]+\}/g, 'x1')
    for (const [method, operation] of Object.entries(operations)) {
      const response = await fetch(server.httpUrl + path, {
        method: method.toUpperCase(),
        ...(['post', 'put', 'patch'].includes(method) ? { headers: { 'content-type': 'application/json' }, body: '{}' } : {})
      })
      t.equal(response.status, 401, `${method.toUpperCase()} ${template} answers 401`)
      t.ok('401' in operation.responses, `${method.toUpperCase()} ${template} declares 401`)
      for (const [status, declaredResponse] of Object.entries(operation.responses)) {
        if (Number(status) < 400) continue
        t.not(declaredResponse.description ?? 'Default Response', 'Default Response', `${method.toUpperCase()} ${template} ${status} is described`)
        t.same(declaredResponse.content?.['application/json']?.schema?.required, ['error', 'message'], `${method.toUpperCase()} ${template} ${status} uses the error schema`)
      }
    }
  }
})

t.test('what bad input returns is declared', async (t) => {
  const alice = uniqueUser('alice')
  const auth = { authorization: `Bearer ${token(alice)}` }
  async function call (method: string, path: string, body?: string, contentType = 'application/json'): Promise<number> {
    const response = await fetch(server.httpUrl + path, { method, headers: body === undefined ? auth : { ...auth, 'content-type': contentType }, body })
    await response.arrayBuffer()
    return response.status
  }
  const json = JSON.stringify
  const first = await call('POST', '/v1/messages', json({ to: uniqueUser('bob'), id: 'm1', body: 'hi' }))
  t.equal(first, 201)
  const cases: Array<[string, string, string | undefined, string | undefined, number]> = [
    ['POST', '/v1/messages', json({ id: 'm2', body: 1 }), undefined, 400],
    ['POST', '/v1/messages', '{"to":', undefined, 400],
    ['POST', '/v1/messages', 'hello', 'application/xml', 415],
    ['POST', '/v1/messages', json({ to: 'bob', id: 'm3', body: 'x'.repeat(4096) }), undefined, 413],
    ['POST', '/v1/messages', json({ to: uniqueUser('carol'), id: 'm1', body: 'hi' }), undefined, 409],
    ['POST', '/v1/messages/nope/recall', undefined, undefined, 404],
    ['POST', '/v1/messages/bad%20id/recall', undefined, undefined, 400],
    ['GET', '/v1/sync?limit=0', undefined, undefined, 400],
    ['GET', '/v1/conversations?limit=1000', undefined, undefined, 400],
    ['GET', '/v1/conversations/bob/messages?after=-1', undefined, undefined, 400],
    ['POST', '/v1/conversations/bob/read', json({ seq: 1, id: 'm1' }), undefined, 400],
    ['POST', '/v1/conversations/bob/read', json({ id: 'nope' }), undefined, 404],
    ['GET', '/v1/presence?users=a,b%20c', undefined, undefined, 400],
    ['POST', '/v1/devices', json({}), undefined, 400],
    ['DELETE', '/v1/devices/nope', undefined, undefined, 404],
    ['PUT', '/v1/keys', json({}), undefined, 400],
    ['GET', '/v1/keys/nobody-here', undefined, undefined, 404],
    ['POST', '/v1/groups', json({}), undefined, 400],
    ['GET', '/v1/groups/nope', undefined, undefined, 404]
  ]
  for (const [method, path, body, contentType, expected] of cases) {
    const status = await call(method, path, body, contentType)
    t.equal(status, expected, `${method} ${path} answers ${expected}`)
    t.ok(declared(method, path).includes(String(status)), `${method} ${path}: ${status} is declared`)
  }
})
