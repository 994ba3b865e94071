// History, sync, receipts and recall (issue 3), over real HTTP and MQTT, in
// both storage modes: the log is the truth a device can always catch up from.
import t from 'tap'
import { startServerProcess, flushRedisDb, modesUnderTest } from './helpers/server-process.ts'
import { connectDevice } from './helpers/devices.ts'
import { apiFor, isGapless } from './helpers/rest.ts'
import { uniqueUser, expiredToken, forgedToken, unsignedToken } from './helpers/tokens.ts'

await flushRedisDb(7)

const ids = (events: Array<Record<string, any>>): string[] => events.map((event) => event.id)
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

for (const mode of modesUnderTest()) {
  t.test(`${mode} mode`, async (t) => {
    const server = await startServerProcess({ mode, redisDb: 7 })
    t.teardown(() => server.stop())
    const http = server.httpUrl

    t.test('messages carry each side\'s seq; the sender\'s other devices get a copy', async (t) => {
      const alice = uniqueUser('alice')
      const bob = uniqueUser('bob')
      const phone = await connectDevice({ url: server.mqttUrl, userId: alice, deviceId: 'phone' })
      const laptop = await connectDevice({ url: server.wsUrl, userId: alice, deviceId: 'laptop' })
      const bobPhone = await connectDevice({ url: server.mqttUrl, userId: bob, deviceId: 'phone' })
      t.teardown(async () => { await phone.end(); await laptop.end(); await bobPhone.end() })
      // Bob has history of his own first, so his seqs differ from Alice's.
      await apiFor(http, uniqueUser('carol')).post('/v1/messages', { to: bob, id: 'c1', body: 'x' })
      await bobPhone.waitForInbox(1)

      await phone.send(bob, { id: 'a1', body: 'hello' })
      const [, received] = await bobPhone.waitForInbox(2)
      t.match(received, { type: 'message', id: 'a1', from: alice, to: bob, seq: 2, body: 'hello' })
      const [copy] = await laptop.waitForMatching((e) => e.type === 'message', 1)
      t.match(copy, { type: 'message', id: 'a1', from: alice, to: bob, seq: 1, body: 'hello' })
    })

    t.test('the same (sender, id) is stored and delivered once, over MQTT and REST', async (t) => {
      const alice = uniqueUser('alice')
      const bob = uniqueUser('bob')
      const phone = await connectDevice({ url: server.mqttUrl, userId: alice, deviceId: 'phone' })
      const bobPhone = await connectDevice({ url: server.mqttUrl, userId: bob, deviceId: 'phone' })
      t.teardown(async () => { await phone.end(); await bobPhone.end() })
      const api = apiFor(http, alice)

      // A QoS 1 retry and an app retry of the same message.
      await phone.send(bob, { id: 'same', body: 'once' })
      await phone.sendRaw(`user/${bob}/inbox`, JSON.stringify({ id: 'same', body: 'once' }))
      const again = await api.post('/v1/messages', { to: bob, id: 'same', body: 'once' })
      t.equal(again.status, 200, 'a repeated send is answered as a success')
      t.match(again.body.message, { id: 'same', seq: 1, from: alice, to: bob, body: 'once' }, 'with the first seq')

      const fresh = await api.post('/v1/messages', { to: bob, id: 'next', body: { n: 2 } })
      t.equal(fresh.status, 201)
      t.match(fresh.body.message, { type: 'message', id: 'next', from: alice, to: bob, body: { n: 2 } })
      t.ok(fresh.body.message.seq > 1)
      await bobPhone.waitForInbox(2)
      // A later message from the same device comes after any repeat of the earlier ones (bob's log, in order).
      await phone.send(bob, { id: 'last', body: 'x' })
      await bobPhone.waitForMatching((e) => e.id === 'last', 1)
      t.same(ids(bobPhone.inbox), ['same', 'next', 'last'], 'delivered once each, in order')
      t.same((await apiFor(http, bob).syncAll()).map((e) => [e.seq, e.id]), [[1, 'same'], [2, 'next'], [3, 'last']])

      // The same id for a different recipient is a client bug, not a retry.
      const conflict = await api.post('/v1/messages', { to: uniqueUser('carol'), id: 'same', body: 'x' })
      t.equal(conflict.status, 409)
      t.equal(conflict.body.error, 'id_conflict')
      await phone.send(uniqueUser('dave'), { id: 'next', body: 'x' })
      const [error] = await phone.waitForErrors(1)
      t.match(error, { type: 'error', code: 'id_conflict', id: 'next' })
    })

    t.test('pagination is stable while messages are being written', async (t) => {
      const alice = uniqueUser('alice')
      const bob = uniqueUser('bob')
      const aliceApi = apiFor(http, alice)
      const bobApi = apiFor(http, bob)
      const sent: string[] = []
      for (let i = 0; i < 20; i++) {
        sent.push(`p${i}`)
        await aliceApi.post('/v1/messages', { to: bob, id: `p${i}`, body: i })
      }
      let writing = true
      const writer = (async () => {
        for (let i = 20; i < 80; i++) {
          sent.push(`p${i}`)
          const response = await aliceApi.post('/v1/messages', { to: bob, id: `p${i}`, body: i })
          if (response.status !== 201) throw new Error(`send answered ${response.status}`)
        }
        writing = false
      })()

      // Backwards from the newest page seen at the start: exactly the prefix
      // that existed then, however many arrive meanwhile.
      const newest = await bobApi.get('/v1/conversations/' + alice + '/messages?limit=6')
      const backwards: Array<Record<string, any>> = [...newest.body.messages]
      let page = newest.body
      while (page.hasMore) {
        page = (await bobApi.get(`/v1/conversations/${alice}/messages?limit=6&before=${backwards[0]!.seq}`)).body
        backwards.unshift(...page.messages)
      }
      t.same(ids(backwards), sent.slice(0, backwards.length), 'backwards: a gapless prefix, no duplicates')
      t.ok(backwards.length >= 20)

      // Forwards with `after` while the writer runs: every message once, in order.
      const forwards: Array<Record<string, any>> = []
      let after = 0
      for (;;) {
        const stillWriting = writing
        const next = (await bobApi.get(`/v1/conversations/${alice}/messages?limit=7&after=${after}`)).body
        forwards.push(...next.messages)
        if (next.messages.length > 0) after = next.messages.at(-1).seq
        if (!next.hasMore && !stillWriting) break
        if (!next.hasMore) await sleep(20)
      }
      await writer
      t.same(ids(forwards), sent, 'forwards: all 80 in order, none twice')
      t.ok(isGapless(forwards.map((m) => m.seq)))
    })

    t.test('receipts: read and delivered marks, unread counts', async (t) => {
      const alice = uniqueUser('alice')
      const bob = uniqueUser('bob')
      // Bob has no device online, so only read receipts are in play here.
      const alicePhone = await connectDevice({ url: server.mqttUrl, userId: alice, deviceId: 'phone' })
      t.teardown(() => alicePhone.end())
      const aliceApi = apiFor(http, alice)
      const bobApi = apiFor(http, bob)
      const aliceSeqs: number[] = []
      for (let i = 1; i <= 5; i++) {
        aliceSeqs.push((await aliceApi.post('/v1/messages', { to: bob, id: `r${i}`, body: `n${i}` })).body.message.seq)
      }

      let list = (await bobApi.get('/v1/conversations')).body
      t.match(list.conversations, [{ peer: alice, unread: 5, readUpTo: 0, lastMessage: { id: 'r5' } }])

      const read = await bobApi.post(`/v1/conversations/${alice}/read`, { seq: 3 })
      t.same(read.body, { peer: alice, readUpTo: 3, unread: 2 })
      const [receipt] = await alicePhone.waitForMatching((e) => e.type === 'receipt', 1)
      t.match(receipt, { type: 'receipt', kind: 'read', by: bob, peer: bob, upTo: aliceSeqs[2], id: 'r3' },
        'the sender hears how far, in its own seqs')

      const byId = await bobApi.post(`/v1/conversations/${alice}/read`, { id: 'r5' })
      t.same(byId.body, { peer: alice, readUpTo: 5, unread: 0 })
      const backwards = await bobApi.post(`/v1/conversations/${alice}/read`, { seq: 1 })
      t.same(backwards.body, { peer: alice, readUpTo: 5, unread: 0 }, 'a read mark never moves back')
      await alicePhone.waitForMatching((e) => e.type === 'receipt', 2)

      list = (await aliceApi.get('/v1/conversations')).body
      t.match(list.conversations, [{ peer: bob, unread: 0, peerReadUpTo: aliceSeqs[4], peerDeliveredUpTo: aliceSeqs[4] }])
      // Bob's own receipts reach Bob's other devices through his log.
      const bobEvents = await bobApi.syncAll()
      t.match(bobEvents.filter((e) => e.type === 'receipt'), [{ kind: 'read', by: bob, peer: alice, upTo: 3 }, { kind: 'read', upTo: 5 }])

      // A later read's receipt reaches alice after any the backwards mark made (bob's receipts reach her log in order).
      const sixth = (await aliceApi.post('/v1/messages', { to: bob, id: 'r6', body: 'n6' })).body.message.seq as number
      await bobApi.post(`/v1/conversations/${alice}/read`, { id: 'r6' })
      const receipts = await alicePhone.waitForMatching((e) => e.type === 'receipt' && e.id === 'r6', 1)
        .then(() => alicePhone.inbox.filter((e) => e.type === 'receipt'))
      t.same(receipts.map((e) => e.upTo), [aliceSeqs[2], aliceSeqs[4], sixth], 'no receipt for a mark that did not move')
    })

    t.test('a recipient device acknowledging messages sends a delivered receipt', async (t) => {
      const alice = uniqueUser('alice')
      const bob = uniqueUser('bob')
      const alicePhone = await connectDevice({ url: server.mqttUrl, userId: alice, deviceId: 'phone' })
      const bobPhone = await connectDevice({ url: server.mqttUrl, userId: bob, deviceId: 'phone' })
      t.teardown(async () => { await alicePhone.end(); await bobPhone.end() })
      for (let i = 0; i < 10; i++) await alicePhone.send(bob, { id: `d${i}`, body: i })
      await bobPhone.waitForInbox(10)
      const copies = await alicePhone.waitForMatching((e) => e.type === 'message', 10)
      const receipts = await alicePhone.waitForMatching((e) => e.type === 'receipt' && e.upTo === copies[9]!.seq, 1)
      t.match(receipts[0], { kind: 'delivered', by: bob, peer: bob, id: 'd9' })
      const all = alicePhone.inbox.filter((e) => e.type === 'receipt')
      t.ok(all.length < 10, `a burst is coalesced (${all.length} receipts for 10 messages)`)
      const list = (await apiFor(http, bob).get('/v1/conversations')).body
      t.equal(list.conversations[0].unread, 10, 'delivered is not read')
    })

    t.test('recall: both sides are told, history keeps a tombstone', async (t) => {
      const alice = uniqueUser('alice')
      const bob = uniqueUser('bob')
      const alicePhone = await connectDevice({ url: server.mqttUrl, userId: alice, deviceId: 'phone' })
      const bobPhone = await connectDevice({ url: server.mqttUrl, userId: bob, deviceId: 'phone' })
      t.teardown(async () => { await alicePhone.end(); await bobPhone.end() })
      const aliceApi = apiFor(http, alice)
      const bobApi = apiFor(http, bob)
      await aliceApi.post('/v1/messages', { to: bob, id: 'keep', body: 'stays' })
      await aliceApi.post('/v1/messages', { to: bob, id: 'oops', body: 'secret text' })
      await bobPhone.waitForInbox(2)

      const recalled = await aliceApi.post('/v1/messages/oops/recall')
      t.equal(recalled.status, 200)
      t.match(recalled.body.message, { type: 'message', id: 'oops', from: alice, to: bob, recalled: true })
      t.notOk('body' in recalled.body.message)
      const [bobEvent] = await bobPhone.waitForMatching((e) => e.type === 'recall', 1)
      t.match(bobEvent, { type: 'recall', id: 'oops', from: alice, to: bob, messageSeq: 2 })
      const [aliceEvent] = await alicePhone.waitForMatching((e) => e.type === 'recall', 1)
      t.match(aliceEvent, { type: 'recall', id: 'oops', from: alice, messageSeq: 2 })

      for (const api of [aliceApi, bobApi]) {
        const peer = api === aliceApi ? bob : alice
        const history = (await api.get(`/v1/conversations/${peer}/messages`)).body.messages
        t.same(ids(history), ['keep', 'oops'])
        t.notOk(JSON.stringify(history).includes('secret text'), 'the old body is gone from history')
        t.notOk(JSON.stringify(await api.syncAll()).includes('secret text'), 'and from sync')
      }
      t.equal((await bobApi.get('/v1/conversations')).body.conversations[0].unread, 1, 'a recalled message is not unread')

      const again = await aliceApi.post('/v1/messages/oops/recall')
      t.equal(again.status, 200, 'recalling twice is harmless')
      t.equal((await bobApi.post('/v1/messages/oops/recall')).status, 404, 'only the sender can recall')
      t.equal((await aliceApi.post('/v1/messages/nope/recall')).body.error, 'message_not_found')
    })

    t.test('another user\'s conversations are never readable', async (t) => {
      const alice = uniqueUser('alice')
      const bob = uniqueUser('bob')
      const mallory = uniqueUser('mallory')
      await apiFor(http, alice).post('/v1/messages', { to: bob, id: 'private', body: 'for bob only' })
      const api = apiFor(http, mallory)
      // :peer is always the other party of the caller's own conversation.
      t.same((await api.get(`/v1/conversations/${alice}/messages`)).body, { messages: [], hasMore: false })
      t.same((await api.get(`/v1/conversations/${bob}/messages`)).body, { messages: [], hasMore: false })
      t.same((await api.get('/v1/conversations')).body, { conversations: [], hasMore: false })
      t.same((await api.get('/v1/sync')).body, { events: [], next: 0, hasMore: false })
      t.equal((await api.post(`/v1/conversations/${alice}/read`, { id: 'private' })).status, 404)
      t.equal((await api.post('/v1/messages/private/recall')).status, 404)
      for (const [name, token] of [['expired', expiredToken(bob)], ['forged', forgedToken(bob)], ['alg none', unsignedToken(bob)], ['garbage', 'x.y.z']] as const) {
        const response = await apiFor(http, bob, { token }).get('/v1/sync')
        t.equal(response.status, 401, `${name} token`)
        t.equal(response.body.error, 'unauthorized')
      }
      const bare = await fetch(`${http}/v1/conversations`)
      t.equal(bare.status, 401)
    })

    t.test('bad input gets a 400 naming the field', async (t) => {
      const api = apiFor(http, uniqueUser('alice'))
      const cases: Array<[string, () => Promise<{ status: number, body: any }>, number, string, string | undefined]> = [
        ['limit above 100', () => api.get('/v1/conversations/bob/messages?limit=101'), 400, 'invalid_request', 'querystring.limit'],
        ['limit 0', () => api.get('/v1/sync?limit=0'), 400, 'invalid_request', 'querystring.limit'],
        ['non-numeric cursor', () => api.get('/v1/conversations/bob/messages?before=abc'), 400, 'invalid_request', 'querystring.before'],
        ['negative since', () => api.get('/v1/sync?since=-1'), 400, 'invalid_request', 'querystring.since'],
        ['bad peer id', () => api.get('/v1/conversations/a%2Fb/messages'), 400, 'invalid_request', 'params.peer'],
        ['missing to', () => api.post('/v1/messages', { id: 'x', body: 1 }), 400, 'invalid_request', 'body.to'],
        ['missing body', () => api.post('/v1/messages', { to: 'bob', id: 'x' }), 400, 'invalid_request', 'body.body'],
        ['bad message id', () => api.post('/v1/messages', { to: 'bob', id: 'a|b', body: 1 }), 400, 'invalid_request', 'body.id'],
        ['unknown field', () => api.post('/v1/messages', { to: 'bob', id: 'x', body: 1, from: 'eve' }), 400, 'invalid_request', 'body'],
        ['malformed JSON', () => api.post('/v1/messages', '{"to":'), 400, 'invalid_json', undefined],
        ['body too large', () => api.post('/v1/messages', { to: 'bob', id: 'big', body: 'x'.repeat(70_000) }), 413, 'payload_too_large', undefined],
        ['read without seq or id', () => api.post('/v1/conversations/bob/read', {}), 400, 'invalid_request', 'body'],
        ['read with both', () => api.post('/v1/conversations/bob/read', { seq: 1, id: 'x' }), 400, 'invalid_request', 'body'],
        ['read of an unknown id', () => api.post('/v1/conversations/bob/read', { id: 'nope' }), 404, 'message_not_found', undefined],
        ['unknown route', () => api.get('/v1/nothing'), 404, 'not_found', undefined]
      ]
      for (const [name, request, status, error, field] of cases) {
        const response = await request()
        t.equal(response.status, status, `${name}: status`)
        t.equal(response.body?.error, error, `${name}: error code`)
        if (field !== undefined) t.equal(response.body?.field, field, `${name}: field`)
        t.type(response.body?.message, 'string', `${name}: message`)
      }
      t.equal((await fetch(`${http}/healthz`)).status, 200, 'the server is still up')
    })

    t.test('an OpenAPI document describes every route', async (t) => {
      const document = await (await fetch(`${http}/openapi.json`)).json() as { openapi: string, paths: Record<string, unknown> }
      t.match(document.openapi, /^3\./)
      for (const path of ['/v1/messages', '/v1/messages/{id}/recall', '/v1/conversations', '/v1/conversations/{peer}/messages', '/v1/conversations/{peer}/read', '/v1/sync']) {
        t.ok(path in document.paths, path)
      }
    })
  })

  t.test(`${mode}: a device whose session was lost recovers everything through /v1/sync`, async (t) => {
    const lossy = await startServerProcess({ mode, redisDb: 7, env: { BACKLOG_RETENTION_SECONDS: '1', RETENTION_SWEEP_SECONDS: '1' } })
    t.teardown(() => lossy.stop())
    const alice = uniqueUser('alice')
    const bob = uniqueUser('bob')
    const bobPhone = await connectDevice({ url: lossy.mqttUrl, userId: bob, deviceId: 'phone' })
    await bobPhone.end()
    const sender = await connectDevice({ url: lossy.mqttUrl, userId: alice, deviceId: 'phone' })
    t.teardown(() => sender.end())
    const sent: string[] = []
    for (let i = 0; i < 30; i++) {
      sent.push(`m${i}`)
      await sender.send(bob, { id: `m${i}`, body: i })
    }
    // The queued backlog expires (BACKLOG_RETENTION_SECONDS=1): the broker forgets it.
    await sleep(2_500)
    const back = await connectDevice({ url: lossy.mqttUrl, userId: bob, deviceId: 'phone' })
    t.teardown(() => back.end())

    const api = apiFor(lossy.httpUrl, bob)
    const firstPage = await api.get('/v1/sync?since=0&limit=7')
    t.equal(firstPage.body.events.length, 7)
    t.equal(firstPage.body.next, 7)
    t.equal(firstPage.body.hasMore, true)
    const events = await api.syncAll(0, 7)
    t.same(ids(events), sent, 'every message, in order, once')
    t.ok(isGapless(events.map((e) => e.seq)), 'seq 1..30 without a gap')
    const tail = await api.get('/v1/sync?since=30')
    t.same(tail.body, { events: [], next: 30, hasMore: false })
    // A message now is the device's first: the expired backlog, were it still queued, would come before it.
    await sender.send(bob, { id: 'now', body: 'x' })
    await back.waitForInbox(1)
    t.same(ids(back.inbox), ['now'], 'the broker queue is gone')
  })

  t.test(`${mode}: recall window and history retention`, async (t) => {
    const server = await startServerProcess({ mode, redisDb: 7, env: { RECALL_WINDOW_SECONDS: '1', HISTORY_RETENTION_SECONDS: '2' } })
    t.teardown(() => server.stop())
    const alice = uniqueUser('alice')
    const bob = uniqueUser('bob')
    const api = apiFor(server.httpUrl, alice)
    await api.post('/v1/messages', { to: bob, id: 'old', body: 'old' })
    await sleep(2_100)
    const late = await api.post('/v1/messages/old/recall')
    t.equal(late.status, 409)
    t.equal(late.body.error, 'recall_window_expired')
    await api.post('/v1/messages', { to: bob, id: 'new', body: 'new' })
    const bobApi = apiFor(server.httpUrl, bob)
    t.same(ids(await bobApi.syncAll()), ['new'], 'events past retention are gone from sync')
    t.same(ids((await bobApi.get(`/v1/conversations/${alice}/messages`)).body.messages), ['new'], 'and from history')
    t.equal((await api.post('/v1/messages', { to: bob, id: 'old', body: 'reused' })).status, 201, 'an id past retention can be reused')
  })
}
