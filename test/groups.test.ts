// Groups against the real server, in both modes: membership rules, one shared
// log fanned out into members' logs, and membership and message order agreeing.
import t from 'tap'
import { startServerProcess, flushRedisDb, modesUnderTest, tempDataDir, freePort } from './helpers/server-process.ts'
import { connectDevice, type Device } from './helpers/devices.ts'
import { uniqueUser } from './helpers/tokens.ts'
import { apiFor, isGapless } from './helpers/rest.ts'

const REDIS_DB = 14
await flushRedisDb(REDIS_DB)

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
/** Polls `read` until `holds`, or fails after `ms` with the last value. */
async function until<T> (read: () => Promise<T>, holds: (value: T) => boolean, what: string, ms = 10_000): Promise<T> {
  for (const deadline = Date.now() + ms; ; await sleep(20)) {
    const value = await read()
    if (holds(value)) return value
    if (Date.now() > deadline) throw new Error(`timed out: ${what}; last ${JSON.stringify(value)}`)
  }
}
const groupMessages = (device: Device): Array<Record<string, unknown>> => device.inbox.filter((event) => event.type === 'message')

for (const mode of modesUnderTest()) {
  t.test(`${mode}: groups`, async (t) => {
    const server = await startServerProcess({ mode, redisDb: REDIS_DB, env: { MAX_GROUP_MEMBERS: '5', RECALL_WINDOW_SECONDS: '2', PUBLISH_RATE: '0' } }) // a backlog of 200 from one sender: no publish limit
    t.teardown(() => server.stop())
    const url = server.mqttUrl
    const api = (user: string) => apiFor(server.httpUrl, user)

    t.test('create, read, list; only members see a group', async (t) => {
      const [owner, ann, stranger] = [uniqueUser('owner'), uniqueUser('ann'), uniqueUser('stranger')]
      const created = await api(owner).post('/v1/groups', { name: 'Team', meta: { topic: 'launch' }, members: [ann] })
      t.equal(created.status, 201)
      const group = created.body.group
      t.match(group, { name: 'Team', meta: { topic: 'launch' }, creator: owner, members: [{ user: owner, role: 'owner' }, { user: ann, role: 'member' }] })
      t.match((await api(ann).get(`/v1/groups/${group.id}`)).body.group, { id: group.id })
      t.match(await api(stranger).get(`/v1/groups/${group.id}`), { status: 404, body: { error: 'group_not_found' } })
      t.match((await api(ann).get('/v1/groups')).body.groups, [{ id: group.id }])
      const conversations = (await api(ann).get('/v1/conversations')).body.conversations
      t.match(conversations, [{ group: group.id, lastMessage: { type: 'group_created', gseq: 1 } }], 'the group is among the conversations')
    })

    t.test('a message over MQTT: stored once, in every member\'s log with their own seq', async (t) => {
      const [owner, ann, ben, stranger] = [uniqueUser('owner'), uniqueUser('ann'), uniqueUser('ben'), uniqueUser('stranger')]
      await api(ben).post('/v1/messages', { to: owner, id: 'one-to-one', body: 'hi' }) // ben's log moves on: seqs differ per member
      const group = (await api(owner).post('/v1/groups', { name: 'Chat', members: [ann, ben] })).body.group.id as string
      const devices = await Promise.all([owner, ann, ben].map((userId) => connectDevice({ url, userId, deviceId: 'phone' })))
      t.teardown(() => Promise.all(devices.map((device) => device.end())))
      await devices[1]!.sendRaw(`group/${group}`, JSON.stringify({ id: 'g1', body: 'hello all' }))
      await devices[1]!.sendRaw(`group/${group}`, JSON.stringify({ id: 'g1', body: 'hello all' })) // a retry
      const copies = await Promise.all(devices.map(async (device) => (await device.waitForMatching((event) => event.id === 'g1', 1))[0]!))
      for (const copy of copies) t.match(copy, { type: 'message', id: 'g1', from: ann, group, gseq: 2, body: 'hello all' })
      t.equal(copies[2]!.seq, 3, 'ben has his own seq (1:1 message, group_created, this)')
      t.equal(copies[0]!.seq, 3, 'so has the owner')

      const outsider = await connectDevice({ url, userId: stranger, deviceId: 'phone' })
      t.teardown(() => outsider.end())
      await outsider.sendRaw(`group/${group}`, JSON.stringify({ id: 'intrude', body: 'x' }))
      t.match((await outsider.waitForErrors(1))[0], { code: 'not_a_member', topic: `group/${group}`, id: 'intrude' })
      await outsider.sendRaw('group/no-such-group', JSON.stringify({ id: 'y', body: 'x' }))
      t.match((await outsider.waitForErrors(2))[1], { code: 'not_a_member' }, 'an unknown group looks the same')
      const history = (await api(owner).get(`/v1/groups/${group}/messages`)).body.events
      t.same(history.map((event: { gseq: number }) => event.gseq), [1, 2], 'nothing stored for the outsider')
      t.match(await api(stranger).post('/v1/messages', { group, id: 'rest', body: 'x' }), { status: 404, body: { error: 'not_a_member' } })
      const viaRest = await api(owner).post('/v1/messages', { group, id: 'rest', body: 'over REST' })
      t.match(viaRest, { status: 201, body: { message: { group, gseq: 3, from: owner } } })
      // The next message reaches every member after anything before it in the group's order, the retry included.
      await Promise.all(devices.map((device) => device.waitForMatching((event) => event.id === 'rest', 1)))
      t.ok(devices.every((device) => groupMessages(device).map((event) => event.id).join() === 'g1,rest'), 'the retry is stored and delivered once')
      t.match((await api(ann).get('/v1/conversations')).body.conversations, [{ group, unread: 1 }], 'unread counts per group')
    })

    t.test('removal, rejoining and roles', async (t) => {
      const [owner, admin, ann, ben] = [uniqueUser('owner'), uniqueUser('admin'), uniqueUser('ann'), uniqueUser('ben')]
      const group = (await api(owner).post('/v1/groups', { name: 'Club', members: [admin, ann] })).body.group.id as string
      t.match(await api(ann).post(`/v1/groups/${group}/members`, { users: [ben] }), { status: 403, body: { error: 'not_allowed' } }, 'a member cannot add')
      t.match(await api(owner).put(`/v1/groups/${group}/members/${admin}/role`, { role: 'admin' }), { status: 200 })
      t.match(await api(admin).post(`/v1/groups/${group}/members`, { users: [ben] }), { status: 200 }, 'an admin can')
      t.match(await api(admin).post(`/v1/groups/${group}/members`, { users: [ben] }), { status: 409, body: { error: 'already_a_member' } })
      t.match(await api(admin).delete(`/v1/groups/${group}/members/${owner}`), { status: 403, body: { error: 'not_allowed' } }, 'an admin cannot remove the owner')
      t.match(await api(owner).post(`/v1/groups/${group}/leave`), { status: 409, body: { error: 'owner_must_hand_over' } })
      t.match(await api(owner).patch(`/v1/groups/${group}`, { name: '' }), { status: 400, body: { error: 'invalid_request' } })
      t.match(await api(admin).patch(`/v1/groups/${group}`, { name: 'Club 2' }), { status: 200, body: { group: { name: 'Club 2' } } })

      const annPhone = await connectDevice({ url, userId: ann, deviceId: 'phone' })
      t.teardown(() => annPhone.end())
      await api(owner).post('/v1/messages', { group, id: 'before', body: 1 })
      await annPhone.waitForMatching((event) => event.id === 'before', 1)
      t.match(await api(admin).delete(`/v1/groups/${group}/members/${ann}`), { status: 200 })
      const [removal] = await annPhone.waitForMatching((event) => event.type === 'member_removed', 1)
      t.match(removal, { group, user: ann, by: admin, reason: 'removed' }, 'the removed member is told, as their last event of the group')
      await api(owner).post('/v1/messages', { group, id: 'after', body: 2 })
      t.match(await api(ann).get(`/v1/groups/${group}/messages`), { status: 404 }, 'nor can they read the history')
      await annPhone.sendRaw(`group/${group}`, JSON.stringify({ id: 'nope', body: 'x' }))
      t.match((await annPhone.waitForErrors(1))[0], { code: 'not_a_member' }, 'nor post')

      await api(admin).post(`/v1/groups/${group}/members`, { users: [ann] })
      await api(owner).post('/v1/messages', { group, id: 'welcome-back', body: 3 })
      // Her device gets her log in order: 'after' would have come before the re-add and this.
      await annPhone.waitForMatching((event) => event.id === 'welcome-back', 1)
      t.notOk(annPhone.inbox.some((event) => event.id === 'after'), 'nothing sent after the removal reaches them')
      const visible = (await api(ann).get(`/v1/groups/${group}/messages`)).body.events
      t.same(visible.map((event: { type: string }) => event.type), ['member_added', 'message'], 'a re-added member sees from the re-add on')
      t.ok(isGapless((await api(ann).syncAll()).map((event) => event.seq)), 'her own seq stayed gapless throughout')

      t.match(await api(owner).put(`/v1/groups/${group}/members/${admin}/role`, { role: 'owner' }), { status: 200, body: { group: { members: [{ user: admin, role: 'owner' }, { user: owner, role: 'admin' }] } } }, 'handing ownership over')
      t.match(await api(owner).post(`/v1/groups/${group}/leave`), { status: 200 }, 'then the old owner may leave')
    })

    t.test('read marks, unread and who has read or received', async (t) => {
      const [owner, ann, ben] = [uniqueUser('owner'), uniqueUser('ann'), uniqueUser('ben')]
      const group = (await api(owner).post('/v1/groups', { name: 'Receipts', members: [ann, ben] })).body.group.id as string
      const annPhone = await connectDevice({ url, userId: ann, deviceId: 'phone' })
      const annLaptop = await connectDevice({ url, userId: ann, deviceId: 'laptop' })
      t.teardown(async () => { await annPhone.end(); await annLaptop.end() })
      for (let i = 0; i < 3; i++) await api(owner).post('/v1/messages', { group, id: `r${i}`, body: i })
      await annPhone.waitForMatching((event) => event.type === 'message', 3)
      t.match((await api(ann).get('/v1/conversations')).body.conversations, [{ group, unread: 3 }])
      t.same((await api(ann).post(`/v1/groups/${group}/read`, { gseq: 3 })).body, { readUpTo: 3, unread: 1 })
      // Delivered marks from PUBACKs are coalesced (250 ms): until ann's shows.
      const receipts4 = await until(async () => (await api(owner).get(`/v1/groups/${group}/messages/4/receipts`)).body,
        (body) => body.delivered.length > 0, 'ann\'s delivered mark')
      t.same(receipts4, { read: [], delivered: [ann] }, 'ann\'s devices acknowledged gseq 4 but she has not read it; ben has no device')
      // Ben reads within the second that ann's read opened (read receipts to a sender are coalesced for a second).
      await api(ben).post(`/v1/groups/${group}/read`, { gseq: 4 })
      const [receipt] = await annLaptop.waitForMatching((event) => event.type === 'receipt', 1)
      t.match(receipt, { kind: 'read', by: ann, group, upTo: 3 }, 'her other devices learn it')
      t.same((await api(ann).post(`/v1/groups/${group}/read`, { gseq: 2 })).body, { readUpTo: 3, unread: 1 }, 'a mark never moves back')
      // Until a receipt names ben: an uncoalesced one for ann alone would be there first.
      const receiptsToOwner = async (): Promise<Array<Record<string, any>>> => (await api(owner).syncAll()).filter((event) => event.type === 'receipt')
      const toOwner = await until(receiptsToOwner, (receipts) => receipts.some((receipt) => receipt.readers?.[ben] !== undefined), 'a read receipt naming ben')
      t.equal(toOwner.length, 1, 'the sender gets one coalesced receipt')
      t.match(toOwner, [{ kind: 'read', group, readers: { [ann]: 3, [ben]: 4 } }], 'the sender gets one coalesced receipt naming every reader')
      t.same((await api(owner).get(`/v1/groups/${group}/messages/3/receipts`)).body, { read: [ann, ben].sort(), delivered: [ann, ben].sort() }, 'read implies delivered; the owner has done neither')
      t.match(await api(uniqueUser('x')).get(`/v1/groups/${group}/messages/3/receipts`), { status: 404 })
    })

    t.test('recall: the sender within the window, an admin or the owner any time; one tombstone for everyone', async (t) => {
      const [owner, admin, ann, ben] = [uniqueUser('owner'), uniqueUser('admin'), uniqueUser('ann'), uniqueUser('ben')]
      const group = (await api(owner).post('/v1/groups', { name: 'Recall', members: [admin, ann, ben] })).body.group.id as string
      await api(owner).put(`/v1/groups/${group}/members/${admin}/role`, { role: 'admin' })
      const gseqOf = async (user: string, id: string): Promise<number> => (await api(user).post('/v1/messages', { group, id, body: 'secret' })).body.message.gseq
      const first = await gseqOf(ann, 'oops')
      const unreadOf = async (user: string): Promise<number> => ((await api(user).get('/v1/conversations')).body.conversations as Array<{ group?: string, unread: number }>).find((c) => c.group === group)!.unread
      const unreadBefore = await unreadOf(ben)
      t.match(await api(ben).post(`/v1/groups/${group}/messages/${first}/recall`), { status: 403, body: { error: 'not_allowed' } }, 'another member may not')
      t.match(await api(ann).post(`/v1/groups/${group}/messages/${first}/recall`), { status: 200, body: { message: { id: 'oops', recalled: true, by: ann } } })
      t.match(await api(ann).post(`/v1/groups/${group}/messages/${first}/recall`), { status: 200 }, 'recalling twice is harmless')
      t.equal(await unreadOf(ben), unreadBefore - 1, 'a recalled message no longer counts as unread')
      const benLog = await api(ben).syncAll()
      const copy = benLog.find((event) => event.id === 'oops' && event.type === 'message')
      t.match(copy, { recalled: true, gseq: first }, 'every member\'s log shows the tombstone')
      t.notOk('body' in copy!, 'without the body')
      t.match(benLog.at(-1), { type: 'recall', messageGseq: first, id: 'oops', by: ann }, 'and a recall event')
      const late = await gseqOf(ann, 'late')
      await sleep(2_500)
      t.match(await api(ann).post(`/v1/groups/${group}/messages/${late}/recall`), { status: 409, body: { error: 'recall_window_expired' } })
      t.match(await api(admin).post(`/v1/groups/${group}/messages/${late}/recall`), { status: 200, body: { message: { recalled: true, by: admin } } }, 'moderation has no window')
      t.match(await api(owner).post(`/v1/groups/${group}/messages/1/recall`), { status: 404, body: { error: 'message_not_found' } }, 'gseq 1 is group_created, not a message')
    })

    t.test('bad input', async (t) => {
      const owner = uniqueUser('owner')
      t.match(await api(owner).post('/v1/groups', { name: '' }), { status: 400, body: { error: 'invalid_request', field: 'body.name' } })
      t.match(await api(owner).post('/v1/groups', { name: 'Big', members: ['a', 'b', 'c', 'd', 'e', 'f'] }), { status: 409, body: { error: 'too_many_members' } })
      t.match(await api(owner).post('/v1/groups', { name: 'x', members: ['not/valid'] }), { status: 400, body: { field: 'body.members.0' } })
      t.match(await api(owner).post('/v1/messages', { to: 'someone', group: 'g', id: 'both', body: 1 }), { status: 400 }, 'to and group together')
      t.match(await api(owner).get('/v1/groups/nope'), { status: 404, body: { error: 'group_not_found' } })
    })

    t.test('an offline member gets the group backlog in one reconnect', async (t) => {
      const [owner, ann] = [uniqueUser('owner'), uniqueUser('ann')]
      const group = (await api(owner).post('/v1/groups', { name: 'Backlog', members: [ann] })).body.group.id as string
      await (await connectDevice({ url, userId: ann, deviceId: 'phone' })).end()
      const sender = await connectDevice({ url, userId: owner, deviceId: 'phone', subscribe: false })
      t.teardown(() => sender.end())
      for (let i = 0; i < 200; i++) await sender.sendRaw(`group/${group}`, JSON.stringify({ id: `b${i}`, body: i }))
      const back = await connectDevice({ url, userId: ann, deviceId: 'phone', subscribe: false })
      t.teardown(() => back.end())
      const received = await back.waitForMatching((event) => event.type === 'message', 200)
      t.same(received.map((event) => event.gseq), Array.from({ length: 200 }, (_, i) => i + 2), 'every message, in order')
    })
  })
}

for (const mode of modesUnderTest()) {
  t.test(`${mode}: group messages survive kill -9 after their PUBACK`, async (t) => {
    // 300 publishes at once: the per-user publish limit is off here (test/publish-limit.test.ts tests it).
    const options = { mode, redisDb: REDIS_DB, dataDir: tempDataDir(), mqttPort: await freePort(), httpPort: await freePort(), env: { PUBLISH_RATE: '0' } }
    let server = await startServerProcess(options)
    t.teardown(() => server.kill())
    const [owner, ann] = [uniqueUser('owner'), uniqueUser('ann')]
    const group = (await apiFor(server.httpUrl, owner).post('/v1/groups', { name: 'Durable', members: [ann] })).body.group.id as string
    await (await connectDevice({ url: server.mqttUrl, userId: ann, deviceId: 'phone' })).end()
    const sender = await connectDevice({ url: server.mqttUrl, userId: owner, deviceId: 'phone', subscribe: false })
    await Promise.all(Array.from({ length: 300 }, (_, i) => sender.sendRaw(`group/${group}`, JSON.stringify({ id: `k${i}`, body: i }))))
    await server.kill()
    await sender.end(true)
    server = await startServerProcess(options)
    const back = await connectDevice({ url: server.mqttUrl, userId: ann, deviceId: 'phone', subscribe: false })
    t.teardown(() => back.end())
    const received = await back.waitForMatching((event) => event.type === 'message', 300)
    t.equal(new Set(received.map((event) => event.id)).size, 300, 'every acknowledged group message, after kill -9')
  })
}

t.test('redis: membership and message order agree across two processes', async (t) => {
  const nodeA = await startServerProcess({ mode: 'redis', redisDb: REDIS_DB, env: { WORKERS: '1' } })
  const nodeB = await startServerProcess({ mode: 'redis', redisDb: REDIS_DB, env: { WORKERS: '1' } })
  t.teardown(async () => { await nodeA.stop(); await nodeB.stop() })
  const [owner, ann, ben] = [uniqueUser('owner'), uniqueUser('ann'), uniqueUser('ben')]
  const group = (await apiFor(nodeA.httpUrl, owner).post('/v1/groups', { name: 'Race', members: [ann, ben] })).body.group.id as string
  const senders = await Promise.all([[owner, nodeA], [ben, nodeB]].map(([user, node]) => connectDevice({ url: (node as typeof nodeA).mqttUrl, userId: user as string, deviceId: 'phone', subscribe: false })))
  t.teardown(() => Promise.all(senders.map((device) => device.end())))
  const sending = senders.map(async (device, n) => {
    for (let i = 0; i < 150; i++) await device.sendRaw(`group/${group}`, JSON.stringify({ id: `r${n}-${i}`, body: i }))
  })
  await sleep(50)
  await apiFor(nodeB.httpUrl, owner).delete(`/v1/groups/${group}/members/${ann}`)
  await Promise.all(sending)
  const annLog = await apiFor(nodeA.httpUrl, ann).syncAll()
  const removal = annLog.find((event) => event.type === 'member_removed')
  t.ok(removal !== undefined, 'ann got her removal')
  t.equal(annLog.at(-1), removal, 'and it is her last event of the group')
  t.ok(annLog.filter((event) => event.type === 'message').every((event) => event.gseq < removal!.gseq), 'no message after it')
  const benLog = await apiFor(nodeB.httpUrl, ben).syncAll(0, 1000)
  t.ok(isGapless(benLog.map((event) => event.seq)), 'every member\'s seq is gapless')
  t.equal(benLog.filter((event) => event.type === 'message').length, 300, 'and each message once')
})
