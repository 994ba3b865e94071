// What one account may keep on the server, in both modes: push registrations
// (MAX_PUSH_DEVICES_PER_USER), blocks (MAX_BLOCKS_PER_USER) and group
// memberships (MAX_GROUPS_PER_USER). At the bound the request is refused with
// a 409 naming it and nothing changes; what does not add an entry (updating a
// registration, blocking again, changing a role) is never refused; concurrent
// requests cannot overshoot. The key directory holds one key per user.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { ClassicLevel } from 'classic-level'
import { GroupsFull } from '../history/group-store.ts'
import { LevelHistory } from '../history/level-history.ts'
import { modesUnderTest, startServerProcess, tempDataDir } from './helpers/server-process.ts'
import { uniqueUser } from './helpers/tokens.ts'
import { apiFor, type Api } from './helpers/rest.ts'

const LIMIT = 3
const hexToken = (bytes = 32): string => randomBytes(bytes).toString('hex')
const fcmToken = (): string => `fcm:${randomBytes(60).toString('base64url')}`
const ids = (list: Array<{ deviceId: string }>): string[] => list.map(({ deviceId }) => deviceId).sort()

for (const mode of modesUnderTest()) {
  t.test(`${mode}: per-user bounds`, async (t) => {
    const server = await startServerProcess({
      mode,
      env: { MAX_PUSH_DEVICES_PER_USER: String(LIMIT), MAX_BLOCKS_PER_USER: String(LIMIT), MAX_GROUPS_PER_USER: String(LIMIT) }
    })
    t.teardown(() => server.stop())
    const api = (user: string): Api => apiFor(server.httpUrl, user)

    t.test('push registrations: at most MAX_PUSH_DEVICES_PER_USER, updates are free', async (t) => {
      const bob = api(uniqueUser('bob'))
      const register = (deviceId: string, token = hexToken()) => bob.post('/v1/devices', { platform: 'ios', token, deviceId })
      const phoneToken = hexToken()
      t.equal((await register('phone', phoneToken)).status, 201)
      t.equal((await register('tablet')).status, 201)
      t.equal((await bob.post('/v1/devices', { platform: 'android', token: fcmToken(), deviceId: 'pixel' })).status, 201)
      const refused = await register('watch')
      t.match(refused, { status: 409, body: { error: 'too_many_devices', message: /3 devices/ } }, 'a fourth device is refused')
      t.same(ids((await bob.get('/v1/devices')).body.devices), ['phone', 'pixel', 'tablet'], 'and not stored')
      t.equal((await register('tablet')).status, 201, 'registering a device again (a new token) is an update, not a new device')
      t.equal((await register('watch', phoneToken)).status, 201, 'a token moving to another device of the same user frees its old one')
      t.same(ids((await bob.get('/v1/devices')).body.devices), ['pixel', 'tablet', 'watch'])
      t.equal((await bob.delete('/v1/devices/pixel')).status, 204)
      t.equal((await register('laptop')).status, 201, 'removing one makes room')

      const carol = api(uniqueUser('carol'))
      const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => carol.post('/v1/devices', { platform: 'ios', token: hexToken(), deviceId: `d${i}` })))
      t.same(answers.map(({ status }) => status).sort(), [...Array(LIMIT).fill(201), ...Array(10 - LIMIT).fill(409)], 'ten at once: exactly the limit is stored')
      t.equal((await carol.get('/v1/devices')).body.devices.length, LIMIT)

      // A refused registration changes nothing: the token's owner keeps it.
      const shared = hexToken()
      const dave = api(uniqueUser('dave'))
      t.equal((await dave.post('/v1/devices', { platform: 'ios', token: shared, deviceId: 'phone' })).status, 201)
      t.match(await carol.post('/v1/devices', { platform: 'ios', token: shared, deviceId: 'extra' }), { status: 409, body: { error: 'too_many_devices' } })
      t.same(ids((await dave.get('/v1/devices')).body.devices), ['phone'], 'dave still has the token carol could not take')
    })

    t.test('push tokens and device ids are size-checked', async (t) => {
      const erin = api(uniqueUser('erin'))
      const field = (body: Record<string, unknown>) => erin.post('/v1/devices', body).then(({ status, body }) => [status, body.field])
      t.same(await field({ platform: 'ios', token: 'a'.repeat(201), deviceId: 'p' }), [400, 'body.token'], 'an APNs token longer than 200 hex digits')
      t.same(await field({ platform: 'ios', token: 'a'.repeat(31), deviceId: 'p' }), [400, 'body.token'], 'an APNs token shorter than 32')
      t.same(await field({ platform: 'android', token: 'a'.repeat(1025), deviceId: 'p' }), [400, 'body.token'], 'an FCM token longer than 1024')
      t.same(await field({ platform: 'ios', token: hexToken(), deviceId: 'd'.repeat(129) }), [400, 'body.deviceId'], 'a device id longer than 128')
      t.same((await erin.get('/v1/devices')).body.devices, [])
    })

    t.test('blocks: at most MAX_BLOCKS_PER_USER, blocking again is free', async (t) => {
      const frank = api(uniqueUser('frank'))
      const others = Array.from({ length: LIMIT + 1 }, () => uniqueUser('other'))
      for (const other of others.slice(0, LIMIT)) t.equal((await frank.put(`/v1/blocks/${other}`, {})).status, 200)
      const refused = await frank.put(`/v1/blocks/${others[LIMIT]}`, {})
      t.match(refused, { status: 409, body: { error: 'too_many_blocks', message: /3 users/ } }, 'one more block is refused')
      t.equal((await frank.get('/v1/blocks')).body.blocks.length, LIMIT, 'and not stored')
      t.equal((await frank.put(`/v1/blocks/${others[0]}`, {})).status, 200, 'blocking again is not a new block')
      t.equal((await frank.delete(`/v1/blocks/${others[1]}`)).status, 200)
      t.equal((await frank.put(`/v1/blocks/${others[LIMIT]}`, {})).status, 200, 'unblocking makes room')

      const gina = api(uniqueUser('gina'))
      const answers = await Promise.all(Array.from({ length: 8 }, () => gina.put(`/v1/blocks/${uniqueUser('x')}`, {})))
      t.same(answers.map(({ status }) => status).sort(), [...Array(LIMIT).fill(200), ...Array(8 - LIMIT).fill(409)], 'eight at once: exactly the limit is stored')
      t.equal((await gina.get('/v1/blocks')).body.blocks.length, LIMIT)
    })

    t.test('groups: at most MAX_GROUPS_PER_USER, whether creating or being added', async (t) => {
      const hank = uniqueUser('hank')
      for (let i = 0; i < LIMIT; i++) t.equal((await api(hank).post('/v1/groups', { name: `g${i}` })).status, 201)
      t.match(await api(hank).post('/v1/groups', { name: 'one more' }), { status: 409, body: { error: 'too_many_groups', message: /you are already in 3 groups/ } }, 'creating one more is refused')
      t.equal((await api(hank).get('/v1/groups')).body.groups.length, LIMIT)

      // Ivy is put into LIMIT groups by others; a creation or an add that includes her fails whole.
      const ivy = uniqueUser('ivy')
      const owners = Array.from({ length: LIMIT }, () => uniqueUser('owner'))
      const groups: string[] = []
      for (const owner of owners) groups.push((await api(owner).post('/v1/groups', { name: 'with ivy', members: [ivy] })).body.group.id)
      const [jack, kate, owner] = [uniqueUser('jack'), uniqueUser('kate'), uniqueUser('owner')]
      t.match(await api(owner).post('/v1/groups', { name: 'full', members: [ivy, jack] }), { status: 409, body: { error: 'too_many_groups', message: new RegExp(`^${ivy} is already in 3 groups`) } }, 'creating a group with a member at the limit is refused, naming them')
      t.same((await api(jack).get('/v1/groups')).body.groups, [], 'and the group was not created for anyone')
      const group = (await api(owner).post('/v1/groups', { name: 'room' })).body.group.id as string
      t.match(await api(owner).post(`/v1/groups/${group}/members`, { users: [kate, ivy] }), { status: 409, body: { error: 'too_many_groups', message: new RegExp(ivy) } }, 'adding a member at the limit is refused')
      t.same((await api(owner).get(`/v1/groups/${group}`)).body.group.members.map(({ user }: { user: string }) => user), [owner], 'nobody of that add joined')
      t.equal((await api(owners[0]!).put(`/v1/groups/${groups[0]}/members/${ivy}/role`, { role: 'admin' })).status, 200, 'a role change of a member at the limit is not a new membership')
      t.equal((await api(ivy).post(`/v1/groups/${groups[1]}/leave`)).status, 200)
      t.equal((await api(owner).post(`/v1/groups/${group}/members`, { users: [kate, ivy] })).status, 200, 'leaving one makes room')
      t.equal((await api(ivy).get('/v1/groups')).body.groups.length, LIMIT)

      const lena = uniqueUser('lena')
      const answers = await Promise.all(Array.from({ length: 6 }, () => api(uniqueUser('owner')).post('/v1/groups', { name: 'race', members: [lena] })))
      t.same(answers.map(({ status }) => status).sort(), [...Array(LIMIT).fill(201), ...Array(6 - LIMIT).fill(409)], 'six creations at once: exactly the limit is stored')
      t.equal((await api(lena).get('/v1/groups')).body.groups.length, LIMIT)
    })

    t.test('the OpenAPI document declares the 409s', async (t) => {
      const doc = await (await fetch(`${server.httpUrl}/openapi.json`)).json() as { paths: Record<string, Record<string, { responses: Record<string, unknown> }>> }
      for (const [path, method] of [['/v1/devices', 'post'], ['/v1/blocks/{user}', 'put'], ['/v1/groups', 'post'], ['/v1/groups/{id}/members', 'post']] as const) {
        t.ok('409' in (doc.paths[path]?.[method]?.responses ?? {}), `${method.toUpperCase()} ${path} declares 409`)
      }
    })

    t.test('the key directory holds one key per user, of a fixed size', async (t) => {
      const miaId = uniqueUser('mia')
      const mia = api(miaId)
      const key = (): string => randomBytes(32).toString('base64')
      const [first, second] = [key(), key()]
      t.equal((await mia.put('/v1/keys', { publicKey: first })).status, 200)
      t.equal((await mia.put('/v1/keys', { publicKey: second })).status, 200)
      const mine = await mia.get(`/v1/keys/${miaId}`)
      t.match(mine, { status: 200, body: { publicKey: second } }, 'publishing again replaces the key')
      t.match(await mia.put('/v1/keys', { publicKey: randomBytes(33).toString('base64') }), { status: 400, body: { field: 'body.publicKey' } }, 'a key that is not 32 bytes is refused')
      t.match(await mia.put('/v1/keys', { publicKey: 'A'.repeat(10_000) }), { status: 400, body: { field: 'body.publicKey' } })
    })
  })
}

// Embedded mode counts blocks and memberships in counters; a database from
// before them has only the entries, which are counted once on first use.
t.test('embedded: blocks and memberships stored before the counters existed count too', async (t) => {
  const path = join(tempDataDir(), 'history')
  const [olga, peter] = [uniqueUser('olga'), uniqueUser('peter')]
  const raw = new ClassicLevel<string, string>(path, { valueEncoding: 'utf8' })
  await raw.open()
  await raw.batch([
    ...[1, 2, 3].map((i) => ({ type: 'put' as const, key: `blk!${olga}!old${i}`, value: String(i) })),
    ...[1, 2, 3].map((i) => ({ type: 'put' as const, key: `ug!${peter}!gold${i}`, value: '' }))
  ])
  await raw.close()
  const history = await LevelHistory.open(path, 0)
  t.teardown(() => history.close())
  t.equal(await history.setBlocked(olga, 'someone', 1, LIMIT), 'limit', 'three old blocks are at a limit of three')
  t.equal(await history.setUnblocked(olga, 'old1'), true)
  t.equal(await history.setBlocked(olga, 'someone', 2, LIMIT), 2, 'one unblocked: room for one')
  t.equal(await history.setBlocked(olga, 'another', 3, LIMIT), 'limit')
  const sink = { appended: () => {}, appendedToMembers: () => {}, arrived: () => {} }
  const create = (id: string) => history.groups().createGroup({ id, name: id, meta: undefined, creator: peter, createdAt: 1, members: [{ user: peter, role: 'owner' }] },
    { type: 'group_created', group: id, ts: 1, by: peter, name: id, members: [peter] }, sink, LIMIT)
  const refused = await create('gnew1').then(() => undefined, (error: unknown) => error)
  t.ok(refused instanceof GroupsFull && refused.users.includes(peter), 'three old memberships are at a limit of three')
})
