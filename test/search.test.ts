// Search (issue #21) through the real server: embedded mode (its own archive in
// DATA_DIR), Redis mode with PostgreSQL (a database of this file's own), and
// Redis mode without DATABASE_URL (501 search_not_configured). A message is found once
// the archiver has it, so each check waits for a hit it expects; what must NOT
// be found is checked against a page that holds a later message proving the
// archiver got past it.
import t from 'tap'
import { startServerProcess, type ServerHandle } from './helpers/server-process.ts'
import { apiFor } from './helpers/rest.ts'
import { searchUntil, type Hit } from './helpers/search.ts'
import { uniqueUser } from './helpers/tokens.ts'
import { archivedRedis } from './helpers/archived-redis.ts'
import { token } from './helpers/tokens.ts'
import { createClient } from '../client-sdk/src/index.ts'

const ids = (hits: Hit[]): string[] => hits.map((hit) => hit.message.id)

function searchSuite (name: string, start: () => Promise<ServerHandle>): void {
  t.test(name, async (t) => {
    const server = await start()
    t.teardown(() => server.stop())

    t.test('Chinese inside a sentence, one character, mixed with English; only your own conversations', async (t) => {
      const alice = uniqueUser('alice')
      const bob = uniqueUser('bob')
      const carol = uniqueUser('carol')
      const a = apiFor(server.httpUrl, alice)
      await a.post('/v1/messages', { to: bob, id: 'm1', body: '我家在上海东边。' })
      await a.post('/v1/messages', { to: bob, id: 'm2', body: { text: '今天用 React 写了一个页面' } })
      await apiFor(server.httpUrl, carol).post('/v1/messages', { to: bob, id: 'c1', body: '上海下雨了' })
      const b = apiFor(server.httpUrl, bob)

      const shanghai = await searchUntil(b, '上海', (hits) => hits.length === 2)
      t.same(ids(shanghai), ['c1', 'm1'], 'both of bob\'s conversations, newest first')
      const fromAlice = shanghai.find((hit) => hit.message.id === 'm1')!
      t.same(fromAlice.conversation, { peer: alice })
      t.match(fromAlice.message, { from: alice, to: bob, body: '我家在上海东边。' })
      const [start, end] = fromAlice.snippet.marks[0]!
      t.equal(fromAlice.snippet.text.slice(start, end), '上海', 'the match is marked in the snippet')

      t.same(ids(await searchUntil(b, 'react', (hits) => hits.length === 1)), ['m2'], 'English in another case, in mixed text')
      t.same(ids(await searchUntil(b, '用 React 写', (hits) => hits.length === 1)), ['m2'])
      t.same(ids(await searchUntil(b, '东', (hits) => hits.length === 1)), ['m1'], 'one character')

      // Alice sees her own 1:1 message, not carol's; a stranger sees nothing.
      t.same(ids(await searchUntil(a, '上海', (hits) => hits.length >= 1)), ['m1'])
      const stranger = await apiFor(server.httpUrl, uniqueUser('dave')).get(`/v1/search?q=${encodeURIComponent('上海')}`)
      t.same(stranger.body.results, [])

      const onlyAlice = await b.get(`/v1/search?q=${encodeURIComponent('上海')}&peer=${alice}`)
      t.same(ids(onlyAlice.body.results), ['m1'], 'filtered to one conversation')
    })

    t.test('a run of 3+ CJK characters is found whole, not as its pairs apart', async (t) => {
      const erin = uniqueUser('erin')
      const frank = uniqueUser('frank')
      const e = apiFor(server.httpUrl, erin)
      await e.post('/v1/messages', { to: frank, id: 'apart', body: '上海很大，海东很远' })
      await e.post('/v1/messages', { to: frank, id: 'whole', body: '我家在上海东边。' })
      const f = apiFor(server.httpUrl, frank)
      // Both are in the index: 海东 is in each.
      t.same(ids(await searchUntil(f, '海东', (hits) => hits.length === 2)), ['whole', 'apart'])
      t.same(ids(await searchUntil(f, '上海东', (hits) => hits.length >= 1)), ['whole'], 'the message holding 上海 and 海东 apart is not a hit')
    })

    t.test('a recalled message is not found; an encrypted body is never indexed', async (t) => {
      const alice = uniqueUser('alice')
      const bob = uniqueUser('bob')
      const a = apiFor(server.httpUrl, alice)
      const b = apiFor(server.httpUrl, bob)
      await a.post('/v1/messages', { to: bob, id: 'r1', body: 'secret plan banana' })
      t.same(ids(await searchUntil(b, 'banana', (hits) => hits.length === 1)), ['r1'], 'found before the recall')
      t.equal((await a.post('/v1/messages/r1/recall', {})).status, 200)
      t.same(ids((await a.get('/v1/search?q=banana')).body.results), [], 'gone from the sender\'s search the moment the recall is answered')
      await a.post('/v1/messages', { to: bob, id: 'e1', body: { e2ee: 'x25519-aes256gcm-v1', ciphertext: 'YmFuYW5h', text: 'banana' } })
      await a.post('/v1/messages', { to: bob, id: 'r2', body: 'banana bread' })
      // r2 archived after the recall and the encrypted message: neither of those is found.
      t.same(ids(await searchUntil(b, 'banana', (hits) => hits.some((hit) => hit.message.id === 'r2'))), ['r2'])
      t.same(ids(await searchUntil(a, 'banana', (hits) => hits.some((hit) => hit.message.id === 'r2'))), ['r2'], 'nor in the sender\'s log')
    })

    t.test('a NUL character in a body is archived (without it in the index) and holds nothing up', async (t) => {
      const alice = uniqueUser('alice')
      const bob = uniqueUser('bob')
      const a = apiFor(server.httpUrl, alice)
      await a.post('/v1/messages', { to: bob, id: 'n1', body: 'nul\u0000byte lychee' })
      await a.post('/v1/messages', { to: bob, id: 'n2', body: 'lychee after' })
      t.same(ids(await searchUntil(apiFor(server.httpUrl, bob), 'lychee', (hits) => hits.length === 2)), ['n2', 'n1'])
      const [message] = (await apiFor(server.httpUrl, bob).get('/v1/search?q=nulbyte')).body.results
      t.equal(message?.message.body, 'nul\u0000byte lychee', 'the message itself is byte for byte what was sent')
    })

    t.test('group messages: members find them, from when they joined; others never', async (t) => {
      const owner = uniqueUser('owner')
      const member = uniqueUser('member')
      const late = uniqueUser('late')
      const outsider = uniqueUser('outsider')
      const o = apiFor(server.httpUrl, owner)
      const created = await o.post('/v1/groups', { name: 'trip', members: [member] })
      const group = created.body.group.id as string
      await o.post('/v1/messages', { group, id: 'g1', body: '周末去杭州西湖' })
      await o.post(`/v1/groups/${group}/members`, { users: [late] })
      await o.post('/v1/messages', { group, id: 'g2', body: '西湖边见' })

      const forMember = await searchUntil(apiFor(server.httpUrl, member), '西湖', (hits) => hits.length === 2)
      t.same(ids(forMember), ['g2', 'g1'])
      t.same(forMember[0]!.conversation, { group })
      t.equal(forMember[0]!.gseq, 4, 'with its gseq')
      t.same(ids(await searchUntil(apiFor(server.httpUrl, late), '西湖', (hits) => hits.length >= 1)), ['g2'], 'not what was sent before they joined')
      const outside = await apiFor(server.httpUrl, outsider).get(`/v1/search?q=${encodeURIComponent('西湖')}&group=${group}`)
      t.same(outside.body.results, [], 'a non-member finds nothing')
    })

    t.test('newest first, or by relevance', async (t) => {
      const alice = uniqueUser('alice')
      const bob = uniqueUser('bob')
      const a = apiFor(server.httpUrl, alice)
      await a.post('/v1/messages', { to: bob, id: 'k1', body: 'kumquat kumquat kumquat' })
      await a.post('/v1/messages', { to: bob, id: 'k2', body: 'kumquat pie' })
      await a.post('/v1/messages', { to: bob, id: 'k3', body: `${'a long message about many other things, '.repeat(8)}and a kumquat` })
      const b = apiFor(server.httpUrl, bob)
      t.same(ids(await searchUntil(b, 'kumquat', (hits) => hits.length === 3)), ['k3', 'k2', 'k1'], 'newest first by default')
      const ranked = await b.get('/v1/search?q=kumquat&order=relevance')
      t.same(ids(ranked.body.results), ['k1', 'k2', 'k3'], 'by relevance: how much of the message is the query')
      t.equal(ranked.body.next, undefined, 'one page')
      t.same(ids((await b.get('/v1/search?q=kumquat%20pie&order=relevance')).body.results), ['k2'], 'every word must be there')
    })

    t.test('the SDK searches too', async (t) => {
      const alice = uniqueUser('alice')
      const bob = uniqueUser('bob')
      await apiFor(server.httpUrl, alice).post('/v1/messages', { to: bob, id: 's1', body: '明天的会议改到下午三点' })
      const client = await createClient({ url: server.wsUrl, deviceId: 'app', getToken: async () => token(bob) })
      t.teardown(() => client.stop())
      const deadline = Date.now() + 10_000
      let found = await client.search('会议')
      while (found.results.length === 0 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 50))
        found = await client.search('会议', { peer: alice })
      }
      t.match(found.results, [{ conversation: { peer: alice }, message: { id: 's1', body: '明天的会议改到下午三点' } }])
    })

    t.test('bad queries get a 400 naming the problem', async (t) => {
      const api = apiFor(server.httpUrl, uniqueUser('q'))
      const empty = await api.get('/v1/search?q=%20%20')
      t.equal(empty.status, 400)
      t.equal(empty.body.error, 'invalid_query')
      const missing = await api.get('/v1/search')
      t.equal(missing.status, 400)
      t.equal(missing.body.field, 'querystring.q')
      const both = await api.get('/v1/search?q=x&peer=a&group=b')
      t.equal(both.status, 400)
    })
  })
}

searchSuite('embedded mode', () => startServerProcess({ mode: 'embedded' }))

searchSuite('Redis mode with PostgreSQL', async () => {
  const archived = await archivedRedis()
  t.teardown(() => archived.close())
  return archived.start()
})

t.test('Redis mode without DATABASE_URL: 501 search_not_configured', async (t) => {
  const server = await startServerProcess({ mode: 'redis', redisDb: 5 })
  t.teardown(() => server.stop())
  const response = await apiFor(server.httpUrl, uniqueUser('u')).get('/v1/search?q=hello')
  t.equal(response.status, 501)
  t.equal(response.body.error, 'search_not_configured')
})
