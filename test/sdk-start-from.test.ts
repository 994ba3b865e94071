// The SDK on a new device (nothing saved in its storage): by default it
// replays every event the server holds; with `startFrom: 'now'` it passes
// over those already there and emits what comes after, and once it has a
// saved seq it resumes from it like any device. Real server, both modes.
import t from 'tap'
import { startServerProcess, modesUnderTest, freePort, tempDataDir } from './helpers/server-process.ts'
import { startRedisServer } from './helpers/redis-server.ts'
import { token, uniqueUser } from './helpers/tokens.ts'
import { ChatClient, MemoryStorage, type ClientOptions, type MessageEvent } from '../client-sdk/src/index.ts'

// Redis mode on a redis-server of this file's own: no shared database to pick or flush.
const ownRedis = await startRedisServer(await freePort(), tempDataDir())
t.teardown(() => ownRedis.kill())

/** A started client whose listeners were attached before start(), so nothing can be emitted unheard. */
async function started (wsUrl: string, user: string, options: Partial<ClientOptions> = {}): Promise<{ client: ChatClient, bodies: unknown[], next: (body: unknown) => Promise<void> }> {
  const client = new ChatClient({ url: wsUrl, deviceId: 'app', getToken: async () => token(user), reconnect: { minDelayMs: 100, maxDelayMs: 1_000 }, ...options })
  const bodies: unknown[] = []
  const waiting = new Map<unknown, () => void>()
  client.on('message', (message: MessageEvent) => { bodies.push(message.body); waiting.get(message.body)?.() })
  client.on('error', () => {})
  await client.start()
  return { client, bodies, next: (body) => bodies.includes(body) ? Promise.resolve() : new Promise((resolve) => waiting.set(body, resolve)) }
}

for (const mode of modesUnderTest()) {
  t.test(`${mode}: a new device replays the whole log by default, or starts from now`, async (t) => {
    const server = await startServerProcess({ mode, env: mode === 'redis' ? { REDIS_URL: ownRedis.url, WORKERS: '1' } : {} })
    t.teardown(() => server.stop())
    const [alice, bob] = [uniqueUser('alice'), uniqueUser('bob')]
    const sender = await started(server.wsUrl, alice)
    t.teardown(() => sender.client.stop())
    for (const body of ['old 1', 'old 2', 'old 3']) await sender.client.send(bob, body)

    const replaying = await started(server.wsUrl, bob, { deviceId: 'replaying' })
    t.teardown(() => replaying.client.stop())
    const storage = new MemoryStorage()
    const fromNow = await started(server.wsUrl, bob, { deviceId: 'new', startFrom: 'now', storage })
    t.equal(fromNow.client.state, 'connecting', 'createClient/start() returns before the connection is up')
    await replaying.next('old 3')
    t.same(replaying.bodies, ['old 1', 'old 2', 'old 3'], 'default: the whole history, in order')

    await new Promise<void>((resolve) => { if (fromNow.client.state === 'online') resolve(); else fromNow.client.on('state', (state) => { if (state === 'online') resolve() }) })
    await fromNow.client.sync()
    await sender.client.send(bob, 'new 1')
    await fromNow.next('new 1')
    t.same(fromNow.bodies, ['new 1'], 'startFrom now: the first message it emits is the one sent after it started')

    // Once it has a saved seq, it is an ordinary device: what came while it was stopped is emitted.
    await fromNow.client.stop()
    await sender.client.send(bob, 'while stopped')
    const again = await started(server.wsUrl, bob, { deviceId: 'new', startFrom: 'now', storage })
    t.teardown(() => again.client.stop())
    await again.next('while stopped')
    t.same(again.bodies, ['while stopped'], 'restarted with its storage: resumes after its saved seq')
  })
}
