// Account deletion (issue #21) through the real server: embedded mode (its own
// archive in DATA_DIR) and Redis mode with PostgreSQL. DELETE
// /v1/admin/users/:user revokes the user's tokens, leaves their groups, drops
// their push registrations, published keys and MLS KeyPackages, and removes their own log from the hot tier and the
// archive (search included); the peers keep their copies. "Nothing came back"
// is checked after the archiver has provably passed the user again: a new
// message to the new account is found by search, and it is the only thing found.
import t from 'tap'
import { join } from 'node:path'
import { startServerProcess, tempDataDir, type ServerHandle } from './helpers/server-process.ts'
import { apiFor } from './helpers/rest.ts'
import { searchUntil, type Hit } from './helpers/search.ts'
import { token, uniqueUser } from './helpers/tokens.ts'
import { archivedRedis } from './helpers/archived-redis.ts'
import { LevelHistory } from '../history/level-history.ts'
import { LevelArchive } from '../archive/level-archive.ts'
import { Archiver } from '../archive/archiver.ts'
import { LevelRevocations } from '../auth/revocations.ts'
import { AccountDeletion } from '../messaging/account-deletion.ts'
import type { LogSink } from '../history/log-sink.ts'
import { defaultCapabilities, defaultLifetime, encodeMlsMessage, generateKeyPackage, getCiphersuiteFromName, getCiphersuiteImpl } from 'ts-mls'

const ADMIN = 'admin-token-admin-token-admin-token-0123'

async function mlsKeyPackage (identity: string): Promise<string> {
  const impl = await getCiphersuiteImpl(getCiphersuiteFromName('MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519'))
  const kp = await generateKeyPackage({ credentialType: 'basic', identity: new TextEncoder().encode(identity) }, defaultCapabilities(), defaultLifetime, [], impl)
  return Buffer.from(encodeMlsMessage({ version: 'mls10', wireformat: 'mls_key_package', keyPackage: kp.publicPackage })).toString('base64')
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
      t.equal((await b.put('/v1/keys', { publicKey: `${'B'.repeat(43)}=` })).status, 200, 'he publishes an encryption key')
      t.equal((await b.post('/v1/mls/key-packages', { deviceId: 'phone', keyPackages: [], lastResort: await mlsKeyPackage(`${bob}:phone`) })).status, 200, 'and an MLS KeyPackage')
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
      t.equal((await a.get(`/v1/keys/${bob}`)).status, 404, 'no published key')
      t.same((await a.post('/v1/mls/key-packages/claim', { users: [bob] })).body, { keyPackages: [], missing: [bob] }, 'no MLS KeyPackage')
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
  const own = await archivedRedis()
  t.teardown(() => own.close())
  return own.start({ env: { ADMIN_TOKEN: ADMIN } })
})

// The archiver against a deletion, on the real embedded stores, in this process. This
// process's archiver is stopped while the logs go, so its batches cannot bring them back.
// Another process's (Redis mode) can: a batch that read the log before the deletion lands
// after it. What it then writes is written here as such a batch writes it (the rows it
// read, then the mark), and the later check must find it and delete again; without one,
// the check leaves the new log alone.
t.test('a stale archiver batch after a deletion is found and deleted again; the new log is left alone', async (t) => {
  const dir = tempDataDir()
  const history = await LevelHistory.open(join(dir, 'history'), 0)
  const archive = await LevelArchive.open(join(dir, 'archive'))
  const revocations = await LevelRevocations.open(join(dir, 'revocations'))
  const source = history.archiveSource()
  const archiver = new Archiver(source, archive, { holder: 'test', idleMs: 20 })
  archiver.start()
  t.teardown(async () => { await archiver.stop(); await history.close(); await archive.close(); await revocations.close() })
  const kicked: string[] = []
  const accounts = new AccountDeletion({
    hot: history,
    archive,
    archiveMarks: source,
    archiver,
    groups: history.groups(),
    groupService: { removeMember: async () => { throw new Error('not in a group') } },
    revocations,
    kick: async (user) => { kicked.push(user) }
  })
  const alice = uniqueUser('alice')
  const bob = uniqueUser('bob')
  const sink: LogSink = { appended () {}, appendedToMembers () {}, arrived () {} }
  const send = (from: string, to: string, id: string, body: string) => history.appendMessage({ type: 'message', from, to, id, ts: Date.now(), body }, sink)
  const archivedUntil = async (user: string, seq: number): Promise<void> => {
    for (const deadline = Date.now() + 10_000; await archive.archivedSeq(user) < seq;) {
      if (Date.now() > deadline) throw new Error(`${user} not archived up to ${seq}`)
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }
  for (let i = 0; i < 3; i++) await send(alice, bob, `old${i}`, `旧消息 ${i}`)
  await archivedUntil(bob, 3)
  // What a batch of another process read before the deletion.
  const version = (await source.position(`u:${bob}`)).version
  const read = await source.readUser(bob, 0, 100)

  await accounts.deleteAccount(bob)
  t.same(kicked, [bob], 'his connections were cut')
  t.equal(await revocations.isRevoked({ token: 'x', sub: bob, iat: Math.floor(Date.now() / 1000) - 1 }), true, 'his tokens are revoked')
  t.same(await archive.readLog(bob, 0, 100), [], 'the archive lost his log')
  t.equal(await source.archivedUpTo(`u:${bob}`), 0, 'and the hot tier his mark')
  t.equal(await accounts.settle(bob), 'clean', 'nothing stale: the check finds nothing')

  // The stale batch lands: its rows, then its mark.
  await archive.putUserEvents(read.map(({ meta, value }) => ({ owner: bob, seq: meta.seq, ts: meta.ts, conversation: meta.peer, kind: meta.kind, id: meta.id, event: value })))
  await source.archived(`u:${bob}`, 3, version, undefined)
  t.equal(await archive.archivedSeq(bob), 3, 'the old rows are back in the archive')
  t.equal(await accounts.settle(bob), 'deleted_again', 'the check finds them past the new head')
  t.same(await archive.readLog(bob, 0, 100), [], 'and deletes them')
  t.equal(await source.archivedUpTo(`u:${bob}`), 0, 'and the mark')

  // The new account's log is archived from seq 1 as usual, and a check leaves it alone.
  await send(alice, bob, 'new1', '新消息')
  await archivedUntil(bob, 1)
  t.equal(await accounts.settle(bob), 'clean')
  t.match((await archive.readLog(bob, 0, 100)).map((entry) => JSON.parse(entry.event!)), [{ seq: 1, id: 'new1' }], 'the new log is archived from seq 1')
  t.equal((await archive.readLog(alice, 0, 100)).length, 4, 'alice\'s archived log is whole')
})
