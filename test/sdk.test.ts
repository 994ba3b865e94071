// The client SDK against the real server (issue 5): crash and restart of the
// server mid-burst, recovery after the broker queue is gone, history and
// live overlap, token refresh, receipts/recall/presence/typing, and E2EE.
import t from 'tap'
import { startServerProcess, flushRedisDb, modesUnderTest, tempDataDir, freePort } from './helpers/server-process.ts'
import { connectDevice } from './helpers/devices.ts'
import { apiFor } from './helpers/rest.ts'
import { token, uniqueUser } from './helpers/tokens.ts'
import { createClient, generateKeyPair, MemoryStorage, SendError, type ChatClient, type ClientOptions, type MessageEvent } from '../client-sdk/src/index.ts'

await flushRedisDb(11)

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

async function until (check: () => boolean, what: string, timeoutMs = 20_000, pollMs = 20): Promise<void> {
  const started = Date.now()
  while (!check()) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out: ${what}`)
    await sleep(pollMs)
  }
}

/**
 * One more message, sent once the test has seen what it waited for: the SDK emits a user's events in seq
 * order, so when this one is emitted, a repeat or a stray event before it would have been too.
 */
async function lastWord (sender: TestClient | ReturnType<typeof apiFor>, receiver: TestClient, to: string): Promise<void> {
  const id = 'client' in sender
    ? (await sender.client.send(to, 'last word')).id
    : (await sender.post('/v1/messages', { to, id: 'last-word', body: 'last word' })).body.message.id as string
  await until(() => receiver.messages.some((m) => m.id === id), 'the last word')
  if (receiver.messages.at(-1)!.id !== id) throw new Error(`emitted after the last word: ${JSON.stringify(receiver.messages.at(-1))}`)
  receiver.messages.pop()
}

interface TestClient { client: ChatClient, messages: MessageEvent[], tokens: number }

async function sdkClient (wsUrl: string, user: string, options: Partial<ClientOptions> = {}): Promise<TestClient> {
  const result: TestClient = { client: undefined as unknown as ChatClient, messages: [], tokens: 0 }
  const client = await createClient({
    url: wsUrl,
    deviceId: 'app',
    getToken: async () => { result.tokens++; return token(user) },
    reconnect: { minDelayMs: 100, maxDelayMs: 1_000 },
    ...options
  })
  client.on('message', (message) => result.messages.push(message))
  client.on('error', () => {})
  result.client = client
  return result
}

/** Bob's first client (its storage kept for a second one) and a client of Alice's to send to him. */
async function bobWithStorageAndAlice (t: { teardown: (fn: () => unknown) => void }, wsUrl: string): Promise<{ bob: string, storage: MemoryStorage, first: TestClient, sender: TestClient }> {
  const bob = uniqueUser('bob')
  const storage = new MemoryStorage()
  const first = await sdkClient(wsUrl, bob, { storage })
  const sender = await sdkClient(wsUrl, uniqueUser('alice'))
  t.teardown(() => sender.client.stop())
  return { bob, storage, first, sender }
}

for (const mode of modesUnderTest()) {
  t.test(`${mode}: the server is killed and restarted during a burst of sends`, async (t) => {
    const dataDir = tempDataDir()
    const ports = { mqttPort: await freePort(), httpPort: await freePort() }
    // About crashes, not the publish limit (test/publish-limit.test.ts has the SDK under it): off here.
    let server = await startServerProcess({ mode, redisDb: 11, dataDir, ...ports, env: { PUBLISH_RATE: '0' } })
    t.teardown(() => server.kill())
    const alice = uniqueUser('alice')
    const bob = uniqueUser('bob')
    const sender = await sdkClient(server.wsUrl, alice)
    const receiver = await sdkClient(server.wsUrl, bob)
    t.teardown(async () => { await sender.client.stop(); await receiver.client.stop() })

    const sends: Array<Promise<MessageEvent>> = []
    for (let i = 0; i < 300; i++) {
      sends.push(sender.client.send(bob, { n: i }))
      if (i === 100) await server.kill()
      if (i === 150) server = await startServerProcess({ mode, redisDb: 11, dataDir, ...ports, env: { PUBLISH_RATE: '0' } })
      if (i % 10 === 0) await sleep(5)
    }
    const stamped = await Promise.all(sends)
    t.equal(new Set(stamped.map((m) => m.id)).size, 300, 'every send resolved with its stamped message')
    await until(() => receiver.messages.length >= 300, 'bob receives 300')
    await lastWord(sender, receiver, bob)
    t.equal(receiver.messages.length, 300, 'each delivered once')
    t.same(receiver.messages.map((m) => (m.body as { n: number }).n), Array.from({ length: 300 }, (_, i) => i), 'in send order')
    t.same(receiver.messages.map((m) => m.seq), Array.from({ length: 300 }, (_, i) => i + 1), 'seq 1..300')
    t.equal(receiver.client.lastSeq, 301, 'and the last word after them')
  })

  t.test(`${mode}: a device whose broker queue is gone recovers everything via sync`, async (t) => {
    const server = await startServerProcess({ mode, redisDb: 11, env: { BACKLOG_RETENTION_SECONDS: '1', RETENTION_SWEEP_SECONDS: '1' } })
    t.teardown(() => server.stop())
    const { bob, storage, first, sender } = await bobWithStorageAndAlice(t, server.wsUrl)
    await sender.client.send(bob, 'before')
    await until(() => first.messages.length === 1, 'first message')
    await first.client.stop()

    for (let i = 0; i < 40; i++) await sender.client.send(bob, `while away ${i}`)
    await sleep(2_500) // the queue expires
    const again = await sdkClient(server.wsUrl, bob, { storage })
    t.teardown(() => again.client.stop())
    await until(() => again.messages.length >= 40, 'catch-up')
    await lastWord(sender, again, bob)
    t.same(again.messages.map((m) => m.body), Array.from({ length: 40 }, (_, i) => `while away ${i}`), 'all 40, once, in order, nothing from before')
  })

  t.test(`${mode}: a stopped client processes nothing more, so the next one resumes where it stopped`, async (t) => {
    const server = await startServerProcess({ mode, redisDb: 11 })
    t.teardown(() => server.stop())
    const { bob, storage, first, sender } = await bobWithStorageAndAlice(t, server.wsUrl)
    // Stop while a dense stream is arriving: packets already on the wire reach
    // mqtt.js after its end() has resolved.
    const writer = Promise.all(Array.from({ length: 150 }, (_, i) => sender.client.send(bob, i)))
    await until(() => first.messages.length >= 10, 'the stream started', 20_000, 1)
    await first.client.stop()
    const emittedAtStop = first.messages.length
    const savedAtStop = await storage.get('inboxd.lastSeq')
    await writer
    await sleep(500)
    t.equal(first.messages.length, emittedAtStop, 'nothing emitted after stop() resolved')
    t.equal(await storage.get('inboxd.lastSeq'), savedAtStop, 'the saved seq did not move after stop()')
    t.equal(savedAtStop, String(first.messages.at(-1)!.seq), 'the saved seq is the last one emitted')

    const next = await sdkClient(server.wsUrl, bob, { storage })
    t.teardown(() => next.client.stop())
    await until(() => emittedAtStop + next.messages.length >= 150, 'the rest')
    await lastWord(sender, next, bob)
    t.same([...first.messages, ...next.messages].map((m) => m.body), Array.from({ length: 150 }, (_, i) => i), 'together: all 150, once each, in order')
  })

  t.test(`${mode}: history and the live stream overlap without duplicates`, async (t) => {
    const server = await startServerProcess({ mode, redisDb: 11 })
    t.teardown(() => server.stop())
    const alice = uniqueUser('alice')
    const bob = uniqueUser('bob')
    // Bob's device has a persistent session with 20 queued messages...
    await (await connectDevice({ url: server.mqttUrl, userId: bob, deviceId: 'app' })).end()
    const aliceApi = apiFor(server.httpUrl, alice)
    for (let i = 0; i < 20; i++) await aliceApi.post('/v1/messages', { to: bob, id: `q${i}`, body: i })
    // ...and starts with no saved seq: sync and the broker queue both bring them.
    const bobClient = await sdkClient(server.wsUrl, bob)
    t.teardown(() => bobClient.client.stop())
    const writer = (async () => { for (let i = 20; i < 40; i++) await aliceApi.post('/v1/messages', { to: bob, id: `q${i}`, body: i }) })()
    const page = await bobClient.client.history(alice, { limit: 10 })
    await writer
    await until(() => bobClient.messages.length >= 40, '40 messages')
    await lastWord(aliceApi, bobClient, bob)
    t.same(bobClient.messages.map((m) => m.id), Array.from({ length: 40 }, (_, i) => `q${i}`), 'the stream: 40, once each, in order')
    t.equal(new Set(page.messages.map((m) => m.id)).size, page.messages.length)
    t.ok(page.messages.every((m, i) => i === 0 || m.seq === page.messages[i - 1]!.seq + 1), 'a history page is contiguous')
  })

  t.test(`${mode}: receipts, recall, presence and typing through the SDK`, async (t) => {
    const server = await startServerProcess({ mode, redisDb: 11 })
    t.teardown(() => server.stop())
    const alice = uniqueUser('alice')
    const bob = uniqueUser('bob')
    const a = await sdkClient(server.wsUrl, alice)
    const b = await sdkClient(server.wsUrl, bob)
    t.teardown(async () => { await a.client.stop(); await b.client.stop() })
    const receipts: unknown[] = []
    const recalls: unknown[] = []
    const typing: unknown[] = []
    const presence: Array<{ user: string, status: string }> = []
    a.client.on('receipt', (r) => receipts.push(r))
    b.client.on('recall', (r) => recalls.push(r))
    b.client.on('typing', (e) => typing.push(e))
    b.client.on('presence', (user, state) => presence.push({ user, status: state.status }))

    const sent = await a.client.send(bob, 'hello')
    t.match(sent, { type: 'message', from: alice, to: bob, body: 'hello' })
    await until(() => b.messages.length === 1, 'bob gets it')
    const read = await b.client.markRead(alice, b.messages[0]!.seq)
    t.equal(read.unread, 0)
    await until(() => receipts.some((r) => (r as { kind: string }).kind === 'read'), 'read receipt')
    t.match(receipts.find((r) => (r as { kind: string }).kind === 'read'), { by: bob, upTo: sent.seq, id: sent.id })

    await a.client.recall(sent.id)
    await until(() => recalls.length === 1, 'recall event')
    t.match(recalls[0], { id: sent.id, from: alice })
    t.match((await b.client.history(alice)).messages[0], { id: sent.id, recalled: true })
    t.match((await b.client.conversations())[0], { peer: alice, unread: 0 })

    a.client.typing(bob)
    await until(() => typing.length === 1, 'typing')
    t.match(typing[0], { type: 'typing', from: alice, active: true })

    b.client.watchPresence(alice)
    await until(() => presence.some((p) => p.status === 'online'), 'alice online')
    t.match(await b.client.presence(alice), { status: 'online' })
    await a.client.stop()
    await until(() => presence.some((p) => p.status === 'offline'), 'alice offline')

    const refused = await b.client.send(alice, 'x'.repeat(70_000)).catch((error: unknown) => error)
    t.ok(refused instanceof SendError, 'a refused send rejects with a SendError')
    t.equal((refused as SendError).code, 'payload_too_large')
  })
}

t.test('token expiry during a connection is refreshed transparently', async (t) => {
  const server = await startServerProcess({ mode: 'embedded' })
  t.teardown(() => server.stop())
  const alice = uniqueUser('alice')
  const bob = uniqueUser('bob')
  let issued = 0
  const b = await createClient({
    url: server.wsUrl,
    deviceId: 'app',
    getToken: async () => { issued++; return token(bob, { expiresInMs: 3_000 }) }
  })
  t.teardown(() => b.stop())
  const received: MessageEvent[] = []
  b.on('message', (message) => received.push(message))
  const states: string[] = []
  b.on('state', (state) => states.push(state))
  const a = await sdkClient(server.wsUrl, alice)
  t.teardown(() => a.client.stop())
  for (let i = 0; i < 40; i++) {
    await a.client.send(bob, i)
    await sleep(200)
  }
  await until(() => received.length >= 40, 'all 40')
  t.ok(issued >= 3, `getToken was called ${issued} times over 8 s of 3 s tokens`)
  t.same(received.map((m) => m.body), Array.from({ length: 40 }, (_, i) => i), 'nothing lost or repeated across refreshes')
  t.equal(b.state, 'online')
  t.notOk(states.includes('offline') && states.at(-1) !== 'online', 'back online after each refresh')
})

t.test('end-to-end encryption: the server stores and forwards ciphertext only', async (t) => {
  const server = await startServerProcess({ mode: 'embedded' })
  t.teardown(() => server.stop())
  const alice = uniqueUser('alice')
  const bob = uniqueUser('bob')
  const aliceKeys = generateKeyPair()
  const bobKeys = generateKeyPair()
  const a = await sdkClient(server.wsUrl, alice, { e2ee: { keyPair: aliceKeys } })
  const aliceTablet = await sdkClient(server.wsUrl, alice, { deviceId: 'tablet', e2ee: { keyPair: aliceKeys } })
  const b = await sdkClient(server.wsUrl, bob, { e2ee: { keyPair: bobKeys } })
  t.teardown(async () => { await a.client.stop(); await aliceTablet.client.stop(); await b.client.stop() })
  await a.client.publishKey()
  await b.client.publishKey()
  const keysApi = apiFor(server.httpUrl, alice)
  t.match(await keysApi.get(`/v1/keys/${bob}`), { status: 200, body: { user: bob, publicKey: String } })
  t.match(await keysApi.get(`/v1/keys/${uniqueUser('nobody')}`), { status: 404, body: { error: 'key_not_found' } })
  const badKey = await fetch(`${server.httpUrl}/v1/keys`, { method: 'PUT', headers: { authorization: `Bearer ${token(alice)}`, 'content-type': 'application/json' }, body: '{"publicKey":"short"}' })
  t.match(await badKey.json(), { error: 'invalid_request', field: 'body.publicKey' })
  // A raw device of bob's sees exactly what the server forwards.
  const raw = await connectDevice({ url: server.mqttUrl, userId: bob, deviceId: 'raw' })
  t.teardown(() => raw.end())

  const secret = { text: 'meet at the old mill at nine' }
  await a.client.send(bob, secret)
  await until(() => b.messages.length === 1, 'bob receives')
  t.same(b.messages[0]!.body, secret, 'bob decrypts')
  await until(() => aliceTablet.messages.length === 1, 'alice\'s other device gets the copy')
  t.same(aliceTablet.messages[0]!.body, secret, 'and decrypts it with the shared key pair')

  const [forwarded] = await raw.waitForInbox(1)
  const stored = await apiFor(server.httpUrl, bob).syncAll()
  for (const [what, value] of [['forwarded', forwarded], ['stored', stored]] as const) {
    t.notOk(JSON.stringify(value).includes('old mill'), `${what}: no plaintext`)
  }
  t.match(forwarded!.body, { e2ee: 'x25519-xchacha20poly1305-v1', ciphertext: String })

  // Tampering (relabelling the sender) fails authentication instead of decrypting.
  const mallory = uniqueUser('mallory')
  const m = await sdkClient(server.wsUrl, mallory)
  t.teardown(() => m.client.stop())
  await apiFor(server.httpUrl, mallory).post('/v1/messages', { to: bob, id: 'replay', body: forwarded!.body })
  await until(() => b.messages.length === 2, 'the replayed ciphertext arrives')
  t.ok(b.messages[1]!.decryptError, 'a ciphertext replayed under another sender does not decrypt')
  t.notOk(b.messages[1]!.body !== undefined && JSON.stringify(b.messages[1]!.body).includes('old mill'))
})
