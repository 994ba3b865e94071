// Replies, edits and reactions (issue #24) through the real server, both
// storage modes: events of the same logs, so live delivery, /v1/sync, history
// and groups carry them unchanged.
import t from 'tap'
import { startServerProcess, flushRedisDb, modesUnderTest } from './helpers/server-process.ts'
import { connectDevice } from './helpers/devices.ts'
import { apiFor } from './helpers/rest.ts'
import { uniqueUser } from './helpers/tokens.ts'

const DB = 14
await flushRedisDb(DB)

for (const mode of modesUnderTest()) {
  t.test(`${mode} mode`, async (t) => {
    const server = await startServerProcess({ mode, redisDb: DB })
    t.teardown(() => server.stop())
    const api = (user: string) => apiFor(server.httpUrl, user)

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
      const synced = (await api(bob).syncAll()).filter((e) => e.type === 'message')
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
