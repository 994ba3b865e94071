// Account deletion (issue #21) through the real server: embedded mode (its own
// archive in DATA_DIR) and Redis mode with PostgreSQL. DELETE
// /v1/admin/users/:user revokes the user's tokens, leaves their groups, drops
// their push registrations and removes their own log from the hot tier and the
// archive (search included); the peers keep their copies. "Nothing came back"
// is checked after the archiver has provably passed the user again: a new
// message to the new account is found by search, and it is the only thing found.
import t from 'tap'
import { startServerProcess, type ServerHandle } from './helpers/server-process.ts'
import { apiFor, type Api } from './helpers/rest.ts'
import { token, uniqueUser } from './helpers/tokens.ts'
import { createTestDatabase } from './helpers/postgres.ts'

const ADMIN = 'admin-token-admin-token-admin-token-0123'

interface Hit { conversation: { peer?: string, group?: string }, message: Record<string, any> }

/** Searches until `found` holds (the archiver runs every fraction of a second), or fails after 10 s. */
async function searchUntil (api: Api, query: string, found: (hits: Hit[]) => boolean): Promise<Hit[]> {
  const deadline = Date.now() + 10_000
  for (;;) {
    const response = await api.get(`/v1/search?q=${encodeURIComponent(query)}`)
    if (response.status !== 200) throw new Error(`search answered ${response.status}: ${JSON.stringify(response.body)}`)
    const hits = response.body.results as Hit[]
    if (found(hits)) return hits
    if (Date.now() > deadline) throw new Error(`no matching hits for ${query}: ${JSON.stringify(hits)}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

const ids = (hits: Hit[]): string[] => hits.map((hit) => hit.message.id).sort()

async function deleteUser (server: ServerHandle, user: string, secret = ADMIN): Promise<{ status: number, body: any }> {
  const response = await fetch(`${server.httpUrl}/v1/admin/users/${user}`, { method: 'DELETE', headers: { authorization: `Bearer ${secret}` } })
  return { status: response.status, body: await response.json() }
}

/** A token from a later second than a revocation mark made now (marks refuse tokens of their own second). */
async function tokenAfterMark (user: string): Promise<string> {
  const second = Math.floor(Date.now() / 1000)
  while (Math.floor(Date.now() / 1000) === second) await new Promise((resolve) => setTimeout(resolve, 50))
  return token(user)
}

function deletionSuite (name: string, start: () => Promise<ServerHandle>): void {
  t.test(name, async (t) => {
    const server = await start()
    t.teardown(() => server.stop())

    t.test('both tiers forget the user; the peer keeps her copies', async (t) => {
      const alice = uniqueUser('alice')
      const bob = uniqueUser('bob')
      const a = apiFor(server.httpUrl, alice)
      const bobToken = token(bob, { expiresInMs: 3_600_000 })
      const b = apiFor(server.httpUrl, bob, { token: bobToken })
      const group = (await a.post('/v1/groups', { name: '旅行', members: [bob] })).body.group.id as string
      t.equal((await a.post('/v1/messages', { to: bob, id: 'm1', body: '我们明天在北京见面' })).status, 201)
      t.equal((await b.post('/v1/messages', { to: alice, id: 'm2', body: '好的，北京见！' })).status, 201)
      t.equal((await b.post('/v1/messages', { to: alice, id: 'm3', body: 'see you in Beijing' })).status, 201)
      t.equal((await b.post('/v1/messages', { group, id: 'g1', body: '北京烤鸭' })).status, 201)
      t.equal((await b.post('/v1/devices', { deviceId: 'phone', platform: 'android', token: 'fcm-token-fcm-token-fcm-token-0123456789' })).status, 201)
      // The archiver has everything: search finds it for both.
      t.same(ids(await searchUntil(b, '北京', (hits) => hits.length === 3)), ['g1', 'm1', 'm2'], 'bob finds his messages before')
      t.same(ids(await searchUntil(a, '北京', (hits) => hits.length === 3)), ['g1', 'm1', 'm2'])
      const alicesSync = await a.syncAll()
      const alicesConversation = (await a.get(`/v1/conversations/${bob}/messages?limit=50`)).body
      t.same(alicesConversation.messages.map((m: { id: string }) => m.id), ['m1', 'm2', 'm3'])

      t.match(await deleteUser(server, bob, 'wrong-wrong-wrong-wrong-wrong-wrong-wrong0'), { status: 401, body: { error: 'unauthorized' } }, 'the route needs ADMIN_TOKEN')
      t.same(await deleteUser(server, bob), { status: 200, body: { user: bob, deleted: true, groupsLeft: [group] } })

      t.match(await b.get('/v1/conversations'), { status: 401, body: { error: 'token_revoked' } }, 'his token is refused')
      const fresh = apiFor(server.httpUrl, bob, { token: await tokenAfterMark(bob) })
      t.same(await fresh.syncAll(), [], 'a token issued after the deletion works, on an empty log')
      t.same((await fresh.get('/v1/conversations')).body.conversations, [], 'no conversations')
      t.same((await fresh.get('/v1/groups')).body.groups, [], 'no groups: he left them')
      t.same((await fresh.get('/v1/devices')).body.devices, [], 'no push registrations')
      t.same((await fresh.get(`/v1/search?q=${encodeURIComponent('北京')}`)).body.results, [], 'search finds nothing of his')

      // A new message to the new account: seq 1, and once search finds it, the archiver has passed
      // him again since the deletion; it is the only hit, so none of the old rows came back.
      t.equal((await a.post('/v1/messages', { to: bob, id: 'm4', body: '北京欢迎你' })).status, 201)
      t.same(ids(await searchUntil(fresh, '北京', (hits) => hits.length > 0)), ['m4'], 'only what came after the deletion')
      t.match(await fresh.syncAll(), [{ seq: 1, id: 'm4', from: alice }], 'a new log from seq 1')
      t.same((await searchUntil(fresh, 'Beijing', () => true)), [], 'nor in English')

      const after = await a.syncAll()
      t.same(after.slice(0, alicesSync.length), alicesSync, 'alice\'s log is intact')
      t.same((await a.get(`/v1/conversations/${bob}/messages?limit=50`)).body.messages.slice(0, alicesConversation.messages.length), alicesConversation.messages, 'her conversation with him too')
      t.same(ids(await searchUntil(a, '北京', (hits) => hits.length === 4)), ['g1', 'm1', 'm2', 'm4'], 'and her search: his messages to her, his group message')
      t.match((await a.get(`/v1/groups/${group}`)).body.group.members, [{ user: alice, role: 'owner' }], 'the group lost him')
    })

    t.test('an owner of a group with other members is refused until they hand over; nothing is done', async (t) => {
      const carol = uniqueUser('carol')
      const dave = uniqueUser('dave')
      const c = apiFor(server.httpUrl, carol)
      const group = (await c.post('/v1/groups', { name: 'club', members: [dave] })).body.group.id as string
      await c.post('/v1/messages', { to: dave, id: 'x1', body: 'hello' })
      t.match(await deleteUser(server, carol), { status: 409, body: { error: 'owner_must_hand_over', groups: [group] } })
      t.equal((await c.get('/v1/conversations')).status, 200, 'her token still works')
      t.match(await c.syncAll(), [{ type: 'group_created' }, { id: 'x1' }], 'her log is there')
      t.match(await deleteUser(server, 'not a user'), { status: 400, body: { error: 'invalid_request' } })
      t.equal((await c.put(`/v1/groups/${group}/members/${dave}/role`, { role: 'owner' })).status, 200)
      t.match(await deleteUser(server, carol), { status: 200, body: { deleted: true, groupsLeft: [group] } }, 'once she handed over')
      t.same(await deleteUser(server, carol), { status: 200, body: { user: carol, deleted: true, groupsLeft: [] } }, 'deleting again is harmless')
    })
  })
}

deletionSuite('embedded mode', () => startServerProcess({ mode: 'embedded', env: { ADMIN_TOKEN: ADMIN } }))

deletionSuite('Redis mode with PostgreSQL', async () => {
  const db = await createTestDatabase()
  const server = await startServerProcess({ mode: 'redis', redisDb: 5, env: { DATABASE_URL: db.url, ADMIN_TOKEN: ADMIN } })
  t.teardown(() => db.drop())
  return server
})
