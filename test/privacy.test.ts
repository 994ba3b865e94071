// Privacy: blocking (1:1 messages and typing withheld from the blocker, the
// sender not told; the blocker's presence hidden from the blocked) and
// presence visible only to users who share a conversation, unless
// PRESENCE_VISIBILITY=all. Real server, real MQTT and HTTP clients.
import t from 'tap'
import { modesUnderTest, startServerProcess } from './helpers/server-process.ts'
import { connectDevice, type Device } from './helpers/devices.ts'
import { uniqueUser } from './helpers/tokens.ts'
import { apiFor } from './helpers/rest.ts'

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** `viewer`'s device watching `subject`'s presence: every state it is sent. */
async function watch (url: string, viewer: string, subject: string): Promise<{ device: Device, seen: Array<{ status: string }> }> {
  const device = await connectDevice({ url, userId: viewer, deviceId: `watch-${subject}`, subscribe: false })
  const seen: Array<{ status: string }> = []
  device.client.on('message', (topic, payload) => { if (topic === `presence/${subject}`) seen.push(JSON.parse(payload.toString()) as { status: string }) })
  await device.client.subscribeAsync(`presence/${subject}`, { qos: 1 })
  return { device, seen }
}

/** The device's own presence, retained, sent on a new SUBSCRIBE: it comes after whatever was forwarded to the connection before. */
async function ownPresence (device: Device, user: string): Promise<void> {
  const arrived = new Promise<void>((resolve) => device.client.on('message', (topic) => { if (topic === `presence/${user}`) resolve() }))
  await device.client.subscribeAsync(`presence/${user}`, { qos: 1 })
  await arrived
}

async function until (check: () => boolean, what: string, ms = 5_000): Promise<void> {
  for (const deadline = Date.now() + ms; !check(); await sleep(20)) if (Date.now() > deadline) throw new Error(`timed out: ${what}`)
}

for (const mode of modesUnderTest()) {
  t.test(`${mode} mode`, async (t) => {
    const server = await startServerProcess({ mode }) // unique users: the shared default Redis db is safe
    t.teardown(() => server.stop())
    const url = server.mqttUrl

    t.test('a blocked sender\'s messages and typing never reach the blocker, and the sender is not told', async (t) => {
      const [alice, mallory, bob] = [uniqueUser('alice'), uniqueUser('mallory'), uniqueUser('bob')]
      const aliceApi = apiFor(server.httpUrl, alice)
      const malloryApi = apiFor(server.httpUrl, mallory)
      t.match(await aliceApi.put(`/v1/blocks/${alice}`, {}), { status: 400, body: { error: 'invalid_request' } }, 'you cannot block yourself')
      t.match(await aliceApi.delete(`/v1/blocks/${mallory}`), { status: 404, body: { error: 'not_blocked' } })
      t.match(await aliceApi.put(`/v1/blocks/${mallory}`, {}), { status: 200, body: { user: mallory, since: Number } })
      t.match((await aliceApi.get('/v1/blocks')).body, { blocks: [{ user: mallory }] })

      const phone = await connectDevice({ url, userId: alice, deviceId: 'phone' })
      t.teardown(() => phone.end(true))
      const sender = await connectDevice({ url, userId: mallory, deviceId: 'laptop' })
      t.teardown(() => sender.end(true))
      await sender.send(alice, { id: 'm1', body: 'let me in' })
      t.pass('PUBACK, as for any message')
      t.match(await malloryApi.post('/v1/messages', { to: alice, id: 'm2', body: 'over REST' }), { status: 201 }, 'REST: 201, as for any message')
      t.match(await malloryApi.post('/v1/messages', { to: alice, id: 'm2', body: 'over REST' }), { status: 200 }, 'a retry is the usual duplicate')
      await sender.sendRaw(`user/${alice}/inbox`, JSON.stringify({ type: 'typing' }), 0)
      const mine = await sender.waitForMatching((event) => event.type === 'message', 2)
      t.same(mine.map((event) => event.id), ['m1', 'm2'], 'the sender\'s own log has both (one tick, as if never opened)')
      await apiFor(server.httpUrl, bob).post('/v1/messages', { to: alice, id: 'b1', body: 'hi' })
      await phone.waitForMatching((event) => event.type === 'message', 1)
      t.match((await malloryApi.get(`/v1/conversations/${alice}/messages`)).body.messages, [{ id: 'm1' }, { id: 'm2' }], 'mallory\'s history shows them')
      t.match(await malloryApi.post('/v1/messages/m1/recall'), { status: 200 }, 'mallory may recall hers')

      // Mallory's events reach alice's log in order (the relay keeps each sender's order): once her first
      // message after the unblock is there, anything of hers from before would be there too, and before it.
      t.match(await aliceApi.delete(`/v1/blocks/${mallory}`), { status: 200, body: { unblocked: true } })
      await sender.send(alice, { id: 'm3', body: 'after the unblock' })
      const [after] = await phone.waitForMatching((event) => event.from === mallory, 1)
      t.match(after, { id: 'm3' }, 'after unblocking, new messages arrive (those sent meanwhile stay undelivered)')
      t.same(phone.inbox.map((event) => [event.type, event.from]), [['message', bob], ['message', mallory]],
        'alice got bob\'s message and nothing of mallory\'s before the unblock, the recall included')
      t.same((await aliceApi.get('/v1/sync?since=0')).body.events.map((event: { id: string }) => event.id), ['b1', 'm3'], 'nor in her log')
      t.match((await aliceApi.get('/v1/conversations')).body.conversations.find((c: { peer: string }) => c.peer === mallory),
        { lastMessage: { id: 'm3' }, unread: 1 }, 'nor in her conversations: m3 is its only message')
      t.same((await aliceApi.get('/v1/blocks')).body, { blocks: [] })
    })

    t.test('presence: visible to contacts only; a first message makes it visible at once; a block hides it', async (t) => {
      const [alice, bob, stranger] = [uniqueUser('alice'), uniqueUser('bob'), uniqueUser('stranger')]
      const phone = await connectDevice({ url, userId: alice, deviceId: 'phone' })
      t.teardown(() => phone.end(true))
      const strangerWatch = await watch(url, stranger, alice)
      t.teardown(() => strangerWatch.device.end(true))
      await apiFor(server.httpUrl, bob).post('/v1/messages', { to: alice, id: 'hello', body: 'hi' })
      const bobWatch = await watch(url, bob, alice)
      t.teardown(() => bobWatch.device.end(true))
      await until(() => bobWatch.seen.length > 0, 'bob to see alice\'s presence')
      t.match(bobWatch.seen.at(-1), { status: 'online' }, 'bob, who has a conversation with alice, sees her online')
      // Alice's retained state went to both subscriptions when they were made: the stranger's own one comes after it.
      await ownPresence(strangerWatch.device, stranger)
      t.same(strangerWatch.seen, [], 'a stranger\'s subscription is granted and gets nothing')
      t.match((await apiFor(server.httpUrl, stranger).get(`/v1/presence/${alice}`)).body, { user: alice, status: 'offline', ts: 0, lastSeen: 0 },
        'REST tells a stranger what it says of someone never seen')
      t.match((await apiFor(server.httpUrl, bob).get(`/v1/presence/${alice}`)).body, { status: 'online' })

      await apiFor(server.httpUrl, stranger).post('/v1/messages', { to: alice, id: 'intro', body: 'hello, we met yesterday' })
      await until(() => strangerWatch.seen.length > 0, 'the (former) stranger to see alice\'s presence')
      t.match(strangerWatch.seen.at(-1), { status: 'online' }, 'a first message makes presence visible both ways, on the subscription already held')

      t.match(await apiFor(server.httpUrl, alice).put(`/v1/blocks/${bob}`, {}), { status: 200 })
      const seenBefore = bobWatch.seen.length
      const laptop = await connectDevice({ url, userId: alice, deviceId: 'laptop' })
      await laptop.end(true)
      await phone.end(true)
      await until(() => strangerWatch.seen.at(-1)?.status === 'offline', 'the stranger to see alice go offline')
      // Alice's offline went to every subscription at once: bob's own presence, subscribed now, comes after it.
      await ownPresence(bobWatch.device, bob)
      t.equal(bobWatch.seen.length, seenBefore, 'bob, blocked, sees none of alice\'s presence changes')
      t.match((await apiFor(server.httpUrl, bob).get(`/v1/presence/${alice}`)).body, { status: 'offline', ts: 0, lastSeen: 0 }, 'nor over REST')
    })
  })
}

t.test('PRESENCE_VISIBILITY=all: anyone sees presence, except whom the subject blocked', async (t) => {
  const server = await startServerProcess({ mode: 'embedded', env: { PRESENCE_VISIBILITY: 'all' } })
  t.teardown(() => server.stop())
  const [alice, stranger, blocked] = [uniqueUser('alice'), uniqueUser('stranger'), uniqueUser('blocked')]
  await apiFor(server.httpUrl, alice).put(`/v1/blocks/${blocked}`, {})
  const phone = await connectDevice({ url: server.mqttUrl, userId: alice, deviceId: 'phone' })
  t.teardown(() => phone.end(true))
  const strangerWatch = await watch(server.mqttUrl, stranger, alice)
  const blockedWatch = await watch(server.mqttUrl, blocked, alice)
  t.teardown(() => Promise.all([strangerWatch.device.end(true), blockedWatch.device.end(true)]))
  await until(() => strangerWatch.seen.length > 0, 'the stranger to see alice')
  t.match(strangerWatch.seen.at(-1), { status: 'online' })
  // A later presence change on the blocked user's connection: a user coming online now.
  const later = uniqueUser('later')
  const laterOnline = new Promise<void>((resolve) => blockedWatch.device.client.on('message', (topic) => { if (topic === `presence/${later}`) resolve() }))
  await blockedWatch.device.client.subscribeAsync(`presence/${later}`, { qos: 1 })
  const laterPhone = await connectDevice({ url: server.mqttUrl, userId: later, deviceId: 'phone', subscribe: false })
  t.teardown(() => laterPhone.end(true))
  await laterOnline
  t.same(blockedWatch.seen, [], 'the blocked user sees nothing')
})

t.test('the SDK: blocks.block / list / unblock, and a blocked sender\'s send still resolves', async (t) => {
  const { createClient } = await import('../client-sdk/src/index.ts')
  const { token } = await import('./helpers/tokens.ts')
  const server = await startServerProcess({ mode: 'embedded' })
  t.teardown(() => server.stop())
  const [alice, mallory] = [uniqueUser('alice'), uniqueUser('mallory')]
  const client = async (user: string) => {
    const c = await createClient({ url: server.wsUrl, deviceId: 'app', getToken: async () => token(user) })
    c.on('error', () => {})
    t.teardown(() => c.stop())
    return c
  }
  const a = await client(alice)
  const m = await client(mallory)
  const received: string[] = []
  a.on('message', (message) => received.push(String(message.body)))
  t.match(await a.blocks.block(mallory), { user: mallory, since: Number })
  t.match(await a.blocks.list(), [{ user: mallory }])
  t.match(await m.send(alice, 'are you there?'), { from: mallory, to: alice, body: 'are you there?' }, 'the blocked sender\'s send resolves as usual')
  t.equal(await a.blocks.unblock(mallory), true)
  t.equal(await a.blocks.unblock(mallory), false, 'unblocking again: false')
  await m.send(alice, 'now?')
  // Mallory's messages reach alice in order: the one before the unblock would come first.
  await until(() => received.length === 1, 'alice to receive the message after the unblock')
  t.same(received, ['now?'], 'alice receives nothing of what was sent while blocked')
})
