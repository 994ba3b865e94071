// The OpenAPI document: valid OpenAPI 3.0.3 (swagger-parser), every
// operation named and every response described (the rules a new route must
// follow), shared schemas as components, and checked against what the routes
// really answer: every /v1 operation declares 401 (and answers it without a
// token), every error it declares has the shared error schema and a
// description, and the statuses that bad input actually produces are all declared.
import t from 'tap'
import SwaggerParser from '@apidevtools/swagger-parser'
import { startServerProcess } from './helpers/server-process.ts'
import { token, uniqueUser } from './helpers/tokens.ts'

interface Response { description?: string, content?: Record<string, { schema?: { required?: string[], $ref?: string } }> }
interface Operation { operationId?: string, tags?: string[], security?: unknown[], responses: Record<string, Response> }
interface Doc { openapi: string, paths: Record<string, Record<string, Operation>>, components: { schemas: Record<string, unknown> } }

// ADMIN_TOKEN and METRICS_TOKEN: the routes that exist only with them are in the document too.
const server = await startServerProcess({ mode: 'embedded', env: { MAX_PAYLOAD_BYTES: '1024', ADMIN_TOKEN: 'a'.repeat(32), METRICS_TOKEN: 'm'.repeat(16) } })
t.teardown(() => server.stop())
const raw = await (await fetch(`${server.httpUrl}/openapi.json`)).json() as Doc
// swagger-parser resolves (and so changes) what it is given.
const doc = await SwaggerParser.dereference(structuredClone(raw) as never) as unknown as Doc
const operations = Object.entries(raw.paths).flatMap(([path, byMethod]) => Object.entries(byMethod).map(([method, operation]) => ({ name: `${method.toUpperCase()} ${path}`, operation })))
const v1 = Object.entries(doc.paths).filter(([path]) => path.startsWith('/v1/'))

t.test('the document is valid OpenAPI 3.0.3', async (t) => {
  t.equal(raw.openapi, '3.0.3')
  await t.resolves(SwaggerParser.validate(structuredClone(raw) as never), 'swagger-parser validates it')
})

t.test('every operation has a camelCase operationId and every response a description', async (t) => {
  t.ok(operations.length >= 30, `${operations.length} operations`)
  const ids = new Map<string, string>()
  for (const { name, operation } of operations) {
    const id = operation.operationId
    t.match(id, /^[a-z][A-Za-z0-9]*$/, `${name} has a camelCase operationId (${id})`)
    if (id !== undefined) {
      t.notOk(ids.has(id), `${name}: operationId ${id} is not also ${ids.get(id)}'s`)
      ids.set(id, name)
    }
    // A download answers with a redirect (302) to its expiring link: that is its success.
    t.ok(Object.keys(operation.responses).some((status) => status.startsWith('2') || status === '302'), `${name} declares its success response`)
    t.equal(operation.tags?.length, 1, `${name} has a tag (${operation.tags})`)
    for (const [status, response] of Object.entries(operation.responses)) {
      t.ok(response.description !== undefined && response.description !== '' && response.description !== 'Default Response', `${name} ${status} is described (${response.description})`)
    }
  }
})

t.test('operationIds are never renamed (generated clients call them by name)', async (t) => {
  // New operations need not be listed here; these must keep their names.
  const stable = {
    getHealth: 'GET /healthz', getReadiness: 'GET /readyz', getMetrics: 'GET /metrics',
    adminRevoke: 'POST /v1/admin/revoke', adminDeleteUser: 'DELETE /v1/admin/users/{user}',
    logout: 'POST /v1/sessions/logout', getCurrentSession: 'GET /v1/sessions/current',
    sendMessage: 'POST /v1/messages', recallMessage: 'POST /v1/messages/{id}/recall',
    createGroup: 'POST /v1/groups', listGroups: 'GET /v1/groups', getGroup: 'GET /v1/groups/{id}', updateGroup: 'PATCH /v1/groups/{id}',
    addGroupMembers: 'POST /v1/groups/{id}/members', removeGroupMember: 'DELETE /v1/groups/{id}/members/{user}', leaveGroup: 'POST /v1/groups/{id}/leave',
    setGroupMemberRole: 'PUT /v1/groups/{id}/members/{user}/role', markGroupRead: 'POST /v1/groups/{id}/read',
    recallGroupMessage: 'POST /v1/groups/{id}/messages/{gseq}/recall', muteGroup: 'POST /v1/groups/{id}/mute',
    getGroupMessageReceipts: 'GET /v1/groups/{id}/messages/{gseq}/receipts', listGroupMessages: 'GET /v1/groups/{id}/messages',
    listConversations: 'GET /v1/conversations', listConversationMessages: 'GET /v1/conversations/{peer}/messages',
    markConversationRead: 'POST /v1/conversations/{peer}/read', sync: 'GET /v1/sync',
    getPresence: 'GET /v1/presence/{user}', listPresence: 'GET /v1/presence',
    blockUser: 'PUT /v1/blocks/{user}', unblockUser: 'DELETE /v1/blocks/{user}', listBlocks: 'GET /v1/blocks',
    registerDevice: 'POST /v1/devices', listDevices: 'GET /v1/devices', removeDevice: 'DELETE /v1/devices/{deviceId}',
    publishKey: 'PUT /v1/keys', getKey: 'GET /v1/keys/{user}', searchMessages: 'GET /v1/search'
  }
  const actual = Object.fromEntries(operations.map(({ name, operation }) => [operation.operationId, name]))
  for (const [id, name] of Object.entries(stable)) t.equal(actual[id], name, `${id} is still ${name}`)
})

t.test('shared schemas are components, by name', async (t) => {
  t.same(Object.keys(raw.components.schemas).filter((name) => !/^[A-Z][A-Za-z]*$/.test(name)), [], 'no generated names (def-0, ...)')
  for (const name of ['Error', 'Event', 'Group', 'Conversation', 'Device', 'Presence', 'PublicKey', 'Block']) t.ok(name in raw.components.schemas, name)
  const { responses } = raw.paths['/v1/groups/{id}']!.get!
  t.equal(responses['404']?.content?.['application/json']?.schema?.$ref, '#/components/schemas/Error', 'an error response refers to Error')
  t.match(responses['200']?.content?.['application/json']?.schema, { type: 'object', properties: { group: { $ref: '#/components/schemas/Group' } } }, 'a group refers to Group')
})

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
      t.ok('401' in operation.responses, `${method.toUpperCase()} ${template} declares 401`)
      for (const [status, declaredResponse] of Object.entries(operation.responses)) {
        if (Number(status) < 400) continue
        t.same(declaredResponse.content?.['application/json']?.schema?.required, ['error', 'message'], `${method.toUpperCase()} ${template} ${status} uses the error schema`)
      }
      // The admin routes take ADMIN_TOKEN, checked after the body is validated (see test/revocation.test.ts).
      if (operation.security === undefined) continue
      const response = await fetch(server.httpUrl + path, {
        method: method.toUpperCase(),
        ...(['post', 'put', 'patch'].includes(method) ? { headers: { 'content-type': 'application/json' }, body: '{}' } : {})
      })
      t.equal(response.status, 401, `${method.toUpperCase()} ${template} answers 401`)
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
