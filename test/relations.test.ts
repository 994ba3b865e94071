// Replies, edits and reactions (issue #24) through the real server, both
// storage modes: events of the same logs, so live delivery, /v1/sync, history
// and groups carry them unchanged.
// Redis mode runs on a redis-server and PostgreSQL archive of its own
// (test/helpers/archived-redis.ts), so search is covered in both modes.
import t from 'tap'
import { startServerProcess, modesUnderTest, type ServerHandle } from './helpers/server-process.ts'
import { connectDevice } from './helpers/devices.ts'
import { apiFor, type Api } from './helpers/rest.ts'
import { uniqueUser } from './helpers/tokens.ts'
import { archivedRedis } from './helpers/archived-redis.ts'
import { searchUntil } from './helpers/search.ts'
import { startFakeApns, deviceToken } from './helpers/fake-apns.ts'
import { token } from './helpers/tokens.ts'
import { createClient, generateKeyPair, type ChatClient, type ClientEvents, type EditEvent } from '../client-sdk/src/index.ts'

/** The user's whole log once `done` holds for it (a later event proving an earlier one landed). */
async function syncUntil (api: Api, done: (events: Array<Record<string, any>>) => boolean): Promise<Array<Record<string, any>>> {
  const deadline = Date.now() + 10_000
  for (;;) {
    const events = await api.syncAll()
    if (done(events) || Date.now() > deadline) return events
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** The next `event` the client emits. */
function next<K extends keyof ClientEvents> (client: ChatClient, event: K, match: (...args: Parameters<ClientEvents[K]>) => boolean = () => true): Promise<Parameters<ClientEvents[K]>> {
  return new Promise((resolve) => {
    const off = client.on(event, ((...args: Parameters<ClientEvents[K]>) => {
      if (!match(...args)) return
      off()
      resolve(args)
    }) as ClientEvents[K])
  })
}


for (const mode of modesUnderTest()) {
  t.test(`${mode} mode`, async (t) => {
    const apns = await startFakeApns()
    t.teardown(() => apns.close())
    // Every message is pushed at once (no coalescing), so each push names one message.
    const env = { ...apns.env, PUSH_COALESCE_SECONDS: '0', EDIT_WINDOW_SECONDS: '600' }
    let server: ServerHandle
    if (mode === 'redis') {
      const own = await archivedRedis()
      t.teardown(() => own.close())
      server = await own.start({ env })
    } else {
      server = await startServerProcess({ mode, env })
    }
    t.teardown(() => server.stop())
    const api = (user: string): Api => apiFor(server.httpUrl, user)

    t.test('a reply names the message it answers: live, in history and sync, over MQTT and REST', async (t) => {
      const alice = uniqueUser('alice')
      const bob = uniqueUser('bob')
      const bobPhone = await connectDevice({ url: server.mqttUrl, userId: bob, deviceId: 'phone' })
      const alicePhone = await connectDevice({ url: server.mqttUrl, userId: alice, deviceId: 'phone' })
      t.teardown(async () => { await bobPhone.end(); await alicePhone.end() })

      await api(alice).post('/v1/messages', { to: bob, id: 'q1', body: 'lunch?' })
      await bobPhone.send(alice, { id: 'a1', replyTo: { id: 'q1', from: alice }, body: '> lunch?\nyes' })
      const [live] = await alicePhone.waitForMatching((e) => e.id === 'a1', 1)
      t.match(live, { type: 'message', id: 'a1', from: bob, to: alice, replyTo: { id: 'q1', from: alice }, body: '> lunch?\nyes' })
      const sent = await api(alice).post('/v1/messages', { to: bob, id: 'a2', replyTo: { id: 'a1', from: bob }, body: 'noon' })
      t.equal(sent.status, 201)
      t.same(sent.body.message.replyTo, { id: 'a1', from: bob })
      // Not checked for existence: the server cannot look into encrypted conversations.
      t.equal((await api(alice).post('/v1/messages', { to: bob, id: 'a3', replyTo: { id: 'never-sent' }, body: 'x' })).status, 201)

      const history = await api(alice).get(`/v1/conversations/${bob}/messages`)
      t.same(history.body.messages.map((m: any) => [m.id, m.replyTo ?? null]), [['q1', null], ['a1', { id: 'q1', from: alice }], ['a2', { id: 'a1', from: bob }], ['a3', { id: 'never-sent' }]])
      const synced = (await syncUntil(api(bob), (events) => events.some((e) => e.id === 'a3'))).filter((e) => e.type === 'message')
      t.same(synced.map((m) => m.replyTo ?? null), [null, { id: 'q1', from: alice }, { id: 'a1', from: bob }, { id: 'never-sent' }])
    })

    t.test('a malformed replyTo is refused, with the same rule on both doors', async (t) => {
      const alice = uniqueUser('alice')
      const bob = uniqueUser('bob')
      const phone = await connectDevice({ url: server.mqttUrl, userId: alice, deviceId: 'phone' })
      t.teardown(() => phone.end())
      const bad = [{ id: 'has space' }, { gseq: 0 }, { id: 'q', extra: 1 }, {}, 'q1', [1], { gseq: 1.5 }, { id: 'x'.repeat(129) }]
      for (const [i, replyTo] of bad.entries()) {
        const answer = await api(alice).post('/v1/messages', { to: bob, id: `b${i}`, replyTo, body: 'x' })
        t.match(answer, { status: 400, body: { error: /invalid_(message|request)/ } }, JSON.stringify(replyTo))
      }
      await phone.send(bob, { id: 'bad-mqtt', replyTo: { id: 'ok', gseq: -1 }, body: 'x' })
      const [error] = await phone.waitForErrors(1)
      t.match(error, { type: 'error', code: 'invalid_message', id: 'bad-mqtt' })
      t.same((await api(bob).syncAll()).length, 0, 'nothing was stored')
    })

    t.test('an edit replaces the body in both logs and tells both sides: live, history, sync, after reconnect', async (t) => {
      const alice = uniqueUser('alice')
      const bob = uniqueUser('bob')
      // bob's laptop holds a persistent session but is away during the edit.
      await (await connectDevice({ url: server.mqttUrl, userId: bob, deviceId: 'laptop' })).end()
      const bobPhone = await connectDevice({ url: server.mqttUrl, userId: bob, deviceId: 'phone' })
      const alicePhone = await connectDevice({ url: server.mqttUrl, userId: alice, deviceId: 'phone' })
      t.teardown(async () => { await bobPhone.end(); await alicePhone.end() })

      const sent = await api(alice).post('/v1/messages', { to: bob, id: 'e1', replyTo: { id: 'x0', from: bob }, body: 'see you at 5' })
      const [original] = await bobPhone.waitForMatching((e) => e.id === 'e1', 1)
      const edited = await api(alice).post('/v1/messages/e1/edit', { body: 'see you at 6' })
      t.equal(edited.status, 200)
      t.match(edited.body.message, { seq: sent.body.message.seq, type: 'message', id: 'e1', from: alice, to: bob, replyTo: { id: 'x0', from: bob }, body: 'see you at 6', edited: true })
      t.ok(edited.body.message.editedAt >= sent.body.message.ts, 'editedAt is server time')
      t.equal(edited.body.message.ts, sent.body.message.ts, 'ts stays the send time')

      const [bobsEdit] = await bobPhone.waitForMatching((e) => e.type === 'edit', 1)
      t.match(bobsEdit, { type: 'edit', id: 'e1', from: alice, to: bob, messageSeq: original!.seq, body: 'see you at 6', ts: edited.body.message.editedAt })
      const [alicesEdit] = await alicePhone.waitForMatching((e) => e.type === 'edit', 1)
      t.match(alicesEdit, { type: 'edit', id: 'e1', messageSeq: sent.body.message.seq, body: 'see you at 6' })

      // The same edit again writes nothing; a later message proves no second edit event came.
      t.match(await api(alice).post('/v1/messages/e1/edit', { body: 'see you at 6' }), { status: 200, body: { message: { body: 'see you at 6', edited: true } } })
      await api(alice).post('/v1/messages', { to: bob, id: 'e2', body: 'later' })
      await bobPhone.waitForMatching((e) => e.id === 'e2', 1)
      t.same(bobPhone.inbox.filter((e) => e.type !== 'receipt').map((e) => e.type === 'edit' ? 'edit' : e.id), ['e1', 'edit', 'e2'])

      for (const [who, peer] of [[alice, bob], [bob, alice]] as const) {
        const history = await api(who).get(`/v1/conversations/${peer}/messages`)
        t.match(history.body.messages[0], { id: 'e1', body: 'see you at 6', edited: true, replyTo: { id: 'x0' } }, `${who === alice ? 'alice' : 'bob'}'s history keeps the latest text, marked edited`)
      }
      const synced = (await api(bob).syncAll()).filter((e) => e.type !== 'receipt')
      t.match(synced, [{ id: 'e1', body: 'see you at 6', edited: true }, { type: 'edit', id: 'e1', messageSeq: original!.seq }, { id: 'e2' }])

      const laptop = await connectDevice({ url: server.mqttUrl, userId: bob, deviceId: 'laptop', clean: false })
      t.teardown(() => laptop.end())
      const drained = await laptop.waitForMatching((e) => e.id === 'e2', 1)
      t.ok(drained.length === 1)
      t.match(laptop.inbox.filter((e) => e.type !== 'receipt'), [{ id: 'e1', body: 'see you at 6', edited: true }, { type: 'edit', body: 'see you at 6' }, { id: 'e2' }], 'the reconnect drain brings both')
    })

    t.test('edit refusals: someone else\'s message, a recalled one, bad bodies', async (t) => {
      const alice = uniqueUser('alice')
      const bob = uniqueUser('bob')
      await api(alice).post('/v1/messages', { to: bob, id: 'f1', body: 'mine' })
      t.match(await api(bob).post('/v1/messages/f1/edit', { body: 'hijacked' }), { status: 404, body: { error: 'message_not_found' } }, 'only the sender finds their own id')
      t.match(await api(alice).post('/v1/messages/nope/edit', { body: 'x' }), { status: 404, body: { error: 'message_not_found' } })
      t.match(await api(alice).post('/v1/messages/f1/edit', { body: 'x'.repeat(70_000) }), { status: 413, body: { error: 'payload_too_large' } })
      t.match(await api(alice).post('/v1/messages/f1/edit', {}), { status: 400, body: { error: 'invalid_request', field: 'body.body' } })
      t.match(await api(alice).post('/v1/messages/f1/edit', { body: 'x', extra: 1 }), { status: 400, body: { error: 'invalid_request' } })
      t.match(await api(alice).post('/v1/messages/f1/recall'), { status: 200 })
      t.match(await api(alice).post('/v1/messages/f1/edit', { body: 'back' }), { status: 409, body: { error: 'message_recalled' } }, 'a recalled message stays recalled')
      const history = await api(bob).get(`/v1/conversations/${alice}/messages`)
      t.notOk('edited' in history.body.messages[0], 'the tombstone has no edit')

      await api(alice).post('/v1/messages', { to: bob, id: 'f2', body: 'old' })
      const edited = await api(alice).post('/v1/messages/f2/edit', { body: 'new' })
      t.equal(edited.status, 200)
      const recalled = await api(alice).post('/v1/messages/f2/recall')
      t.same(Object.keys(recalled.body.message).sort(), ['from', 'id', 'recalled', 'recalledAt', 'seq', 'to', 'ts', 'type'], 'recalling an edited message leaves a plain tombstone')
      for (const api_ of [api(alice), api(bob)]) {
        // bob's copies follow the answer (Redis: the relay): his recall event comes after the edit's.
        const events = await syncUntil(api_, (all) => all.some((e) => e.type === 'recall' && e.id === 'f2'))
        const edits = events.filter((e) => e.type === 'edit' && e.id === 'f2')
        t.match(edits, [{ type: 'edit', id: 'f2' }])
        t.notOk('body' in edits[0]!, 'the recall took the text out of the edit event')
      }
      t.match(await api(bob).get(`/v1/conversations/${alice}/messages`), { body: { messages: [{ id: 'f1', recalled: true }, { id: 'f2', recalled: true }] } })
    })

    if (mode === 'embedded') {
      // The window is decided by each store for 1:1 (test/history-store.conformance.test.ts, every
      // implementation) and by the group service for groups: here, that EDIT_WINDOW_SECONDS reaches both.
      t.test('EDIT_WINDOW_SECONDS: an edit after it is refused; edits take from the publish budget', async (t) => {
        const small = await startServerProcess({ mode, env: { EDIT_WINDOW_SECONDS: '1', PUBLISH_RATE: '2', PUBLISH_BURST: '3' } })
        t.teardown(() => small.stop())
        const alice = uniqueUser('alice')
        const a = apiFor(small.httpUrl, alice)
        const group = (await a.post('/v1/groups', { name: 'G', members: [] })).body.group.id as string
        await a.post('/v1/messages', { to: uniqueUser('bob'), id: 'w1', body: 'x' })
        const gseq = (await a.post('/v1/messages', { group, id: 'w2', body: 'x' })).body.message.gseq as number
        t.match(await a.post('/v1/messages/w1/edit', { body: 'quick' }), { status: 200 }, 'the third publish of the burst')
        const limited = await a.post(`/v1/groups/${group}/messages/${gseq}/edit`, { body: 'y' })
        t.match(limited, { status: 429, body: { error: 'rate_limited' } }, 'an edit is a publish')
        // The window (and the budget refilling at 2/s) pass.
        await new Promise((resolve) => setTimeout(resolve, 1_100))
        t.match(await a.post('/v1/messages/w1/edit', { body: 'late' }), { status: 409, body: { error: 'edit_window_expired' } })
        t.match(await a.post(`/v1/groups/${group}/messages/${gseq}/edit`, { body: 'late' }), { status: 409, body: { error: 'edit_window_expired' } })
      })
    }

    t.test('group edit: the sender only, every member sees it live, in group history and sync', async (t) => {
      const owner = uniqueUser('owner')
      const ann = uniqueUser('ann')
      const group = (await api(owner).post('/v1/groups', { name: 'Chat', members: [ann] })).body.group.id as string
      const annPhone = await connectDevice({ url: server.mqttUrl, userId: ann, deviceId: 'phone' })
      t.teardown(() => annPhone.end())
      const sent = await api(ann).post('/v1/messages', { group, id: 'ge1', body: 'meet at 5' })
      const gseq = sent.body.message.gseq as number
      t.match(await api(owner).post(`/v1/groups/${group}/messages/${gseq}/edit`, { body: 'mine now' }), { status: 403, body: { error: 'not_allowed' } }, 'not even the owner edits someone else\'s message')
      t.match(await api(ann).post(`/v1/groups/${group}/messages/1/edit`, { body: 'x' }), { status: 404, body: { error: 'message_not_found' } }, 'gseq 1 is group_created')
      t.match(await api(uniqueUser('eve')).post(`/v1/groups/${group}/messages/${gseq}/edit`, { body: 'x' }), { status: 404, body: { error: 'group_not_found' } })
      const unread = async (): Promise<number> => (await api(owner).get('/v1/conversations')).body.conversations.find((c: any) => c.group === group).unread
      const unreadBefore = await unread()
      const edited = await api(ann).post(`/v1/groups/${group}/messages/${gseq}/edit`, { body: 'meet at 6' })
      t.match(edited, { status: 200, body: { message: { id: 'ge1', from: ann, group, gseq, body: 'meet at 6', edited: true } } })
      t.match(await api(ann).post(`/v1/groups/${group}/messages/${gseq}/edit`, { body: 'meet at 6' }), { status: 200 }, 'a retry is harmless')
      const [event] = await annPhone.waitForMatching((e) => e.type === 'edit', 1)
      t.match(event, { type: 'edit', group, messageGseq: gseq, id: 'ge1', from: ann, body: 'meet at 6' })
      const page = await api(owner).get(`/v1/groups/${group}/messages`)
      t.match(page.body.events.find((e: any) => e.gseq === gseq), { body: 'meet at 6', edited: true })
      t.equal(page.body.events.filter((e: any) => e.type === 'edit').length, 1, 'one edit event for the edit and its retry')
      t.equal(await unread(), unreadBefore, 'an edited message still counts as unread, and the edit does not')
      const ownerSync = await api(owner).syncAll()
      t.match(ownerSync.filter((e) => e.id === 'ge1'), [{ type: 'message', body: 'meet at 6', edited: true }, { type: 'edit', body: 'meet at 6' }])
      t.match(await api(ann).post(`/v1/groups/${group}/messages/${gseq}/recall`), { status: 200 })
      const editsAfter = (await api(owner).syncAll()).filter((e) => e.type === 'edit')
      t.match(editsAfter, [{ type: 'edit', messageGseq: gseq }])
      t.notOk('body' in editsAfter[0]!, 'the recall took the text out of the edit event for every member')
      t.match(await api(ann).post(`/v1/groups/${group}/messages/${gseq}/edit`, { body: 'x' }), { status: 409, body: { error: 'message_recalled' } })
    })

    t.test('search finds the edited text, not the old', async (t) => {
      const alice = uniqueUser('alice')
      const bob = uniqueUser('bob')
      const owner = uniqueUser('owner')
      await api(alice).post('/v1/messages', { to: bob, id: 's1', body: 'pineapple pizza tonight' })
      await searchUntil(api(bob), 'pineapple', (hits) => hits.length === 1)
      await searchUntil(api(alice), 'pineapple', (hits) => hits.length === 1)
      await api(alice).post('/v1/messages/s1/edit', { body: { text: 'mushroom pizza tonight' } })
      // The old text stops finding the sender's copy at once: hits are checked against the hot log.
      t.same((await api(alice).get('/v1/search?q=pineapple')).body.results, [], 'at once for the sender')
      const hits = await searchUntil(api(bob), 'mushroom', (found) => found.length === 1)
      t.match(hits[0]!.message, { id: 's1', body: { text: 'mushroom pizza tonight' }, edited: true })
      t.same((await api(bob).get('/v1/search?q=pineapple')).body.results, [], 'the old text is gone from the index')
      // Alice's copy is her log's: archived on its own round.
      await searchUntil(api(alice), 'mushroom', (found) => found.length === 1)
      t.same((await api(alice).get('/v1/search?q=pineapple')).body.results, [], 'from both sides')

      const group = (await api(owner).post('/v1/groups', { name: 'G', members: [bob] })).body.group.id as string
      const sent = await api(owner).post('/v1/messages', { group, id: 's2', body: 'kiwi smoothie' })
      await searchUntil(api(bob), 'kiwi', (found) => found.length === 1)
      await api(owner).post(`/v1/groups/${group}/messages/${sent.body.message.gseq}/edit`, { body: 'mango smoothie' })
      await searchUntil(api(bob), 'mango', (found) => found.length === 1)
      t.same((await api(bob).get('/v1/search?q=kiwi')).body.results, [], 'a group message too')
      // An encrypted body stays opaque after an edit: never indexed.
      await api(alice).post('/v1/messages', { to: bob, id: 's3', body: 'papaya' })
      await searchUntil(api(bob), 'papaya', (found) => found.length === 1)
      await api(alice).post('/v1/messages/s3/edit', { body: { e2ee: 1, ciphertext: 'AAAA papaya' } })
      // It was found: it goes once the archiver has the edit.
      t.same(await searchUntil(api(bob), 'papaya', (found) => found.length === 0), [], 'the edit to ciphertext left the index')
    })

    t.test('SDK: replyTo on send, edit (end-to-end encrypted too), edit events', async (t) => {
      const alice = uniqueUser('alice')
      const bob = uniqueUser('bob')
      const keys = { [alice]: generateKeyPair(), [bob]: generateKeyPair() }
      const start = (user: string): Promise<ChatClient> => createClient({ url: server.wsUrl, deviceId: 'app', getToken: async () => token(user), e2ee: { keyPair: keys[user]! } })
      const a = await start(alice)
      const b = await start(bob)
      t.teardown(async () => { await a.stop(); await b.stop() })
      await a.publishKey()
      await b.publishKey()
      const question = await a.send(bob, 'tea or coffee?')
      const arrived = next(a, 'message', (message) => message.from === bob)
      const answer = await b.send(alice, 'tea', { replyTo: { id: question.id, from: alice } })
      t.same(answer.replyTo, { id: question.id, from: alice })
      const [received] = await arrived
      t.match(received, { id: answer.id, replyTo: { id: question.id, from: alice }, body: 'tea' }, 'decrypted, with its replyTo')
      const edited = next(a, 'edit')
      const result = await b.edit(answer.id, 'coffee after all', { to: alice })
      t.match(result, { id: answer.id, edited: true, body: 'coffee after all' })
      const [event] = await edited as [EditEvent]
      t.match(event, { type: 'edit', id: answer.id, from: bob, body: 'coffee after all' }, 'the edit event is decrypted')
      const stored = (await apiFor(server.httpUrl, alice).get(`/v1/conversations/${bob}/messages`)).body.messages[1]
      t.match(stored.body, { e2ee: String, ciphertext: String }, 'the server holds only ciphertext')
      await t.rejects(b.edit(answer.id, 'x'), /needs the recipient/)

      const owner = uniqueUser('owner')
      const o = await createClient({ url: server.wsUrl, deviceId: 'app', getToken: async () => token(owner) })
      t.teardown(() => o.stop())
      const group = (await o.groups.create('G')).id
      const first = await o.sendToGroup(group, 'hello')
      const reply = await o.sendToGroup(group, 'again', { replyTo: { gseq: first.gseq! } })
      t.same(reply.replyTo, { gseq: first.gseq })
      const groupEdit = next(o, 'edit')
      t.match(await o.groups.edit(group, first.gseq!, 'hello all'), { body: 'hello all', edited: true })
      t.match((await groupEdit)[0], { type: 'edit', group, messageGseq: first.gseq, body: 'hello all' })
    })

    t.test('push: a reply is pushed like any message; an edit is not', async (t) => {
      const alice = uniqueUser('alice')
      const bob = uniqueUser('bob')
      const token = deviceToken()
      t.equal((await api(bob).post('/v1/devices', { platform: 'ios', token, deviceId: 'phone' })).status, 201)
      await (await connectDevice({ url: server.mqttUrl, userId: bob, deviceId: 'phone' })).end()
      const forBob = (request: { token: string }): boolean => request.token === token
      await api(alice).post('/v1/messages', { to: bob, id: 'p1', body: 'hi' })
      await apns.waitFor(1, forBob)
      await api(alice).post('/v1/messages/p1/edit', { body: 'hi there' })
      await api(alice).post('/v1/messages', { to: bob, id: 'p2', replyTo: { id: 'p1', from: alice }, body: 'and a reply' })
      await apns.waitFor(2, forBob)
      t.same(apns.requests.filter(forBob).map((request) => request.payload.id), ['p1', 'p2'], 'the edit before the reply was not pushed')
    })

    t.test('group replies by gseq', async (t) => {
      const owner = uniqueUser('owner')
      const ann = uniqueUser('ann')
      const group = (await api(owner).post('/v1/groups', { name: 'Chat', members: [ann] })).body.group.id as string
      const annPhone = await connectDevice({ url: server.mqttUrl, userId: ann, deviceId: 'phone' })
      t.teardown(() => annPhone.end())
      const first = await api(owner).post('/v1/messages', { group, id: 'g1', body: 'who is in?' })
      const gseq = first.body.message.gseq as number
      await annPhone.sendRaw(`group/${group}`, JSON.stringify({ id: 'g2', replyTo: { gseq }, body: 'me' }))
      const [copy] = await annPhone.waitForMatching((e) => e.id === 'g2', 1)
      t.match(copy, { group, from: ann, replyTo: { gseq }, body: 'me' })
      const page = await api(owner).get(`/v1/groups/${group}/messages`)
      t.same(page.body.events.at(-1).replyTo, { gseq })
    })
  })
}
