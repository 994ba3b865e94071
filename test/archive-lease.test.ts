// One archiver at a time, and a crashed one's work taken over (issue #21): two
// server processes on one Redis and one PostgreSQL; the lease names which of
// them archives; kill -9 of that one, and the other archives what is sent
// next, once the lease has run out (10 s).
import t from 'tap'
import { Redis } from 'ioredis'
import { apiFor, type Api } from './helpers/rest.ts'
import { uniqueUser } from './helpers/tokens.ts'
import { archivedRedis } from './helpers/archived-redis.ts'

const own = await archivedRedis()
t.teardown(() => own.close())
const redis = new Redis(own.redis.url)
t.teardown(() => redis.disconnect())

async function until<T> (read: () => Promise<T>, done: (value: T) => boolean, what: string, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await read()
    if (done(value)) return value
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

const found = async (api: Api, word: string): Promise<string[]> => ((await api.get(`/v1/search?q=${word}`)).body.results as Array<{ message: { id: string } }>).map((hit) => hit.message.id)

t.test('the lease holder archives; after its kill -9 the other takes over', async (t) => {
  const first = await own.start({ env: { NODE_ID: 'first' } })
  const second = await own.start({ env: { NODE_ID: 'second' } })
  t.teardown(async () => { await first.kill(); await second.stop() })
  const alice = uniqueUser('alice')
  const bob = uniqueUser('bob')

  await apiFor(second.httpUrl, alice).post('/v1/messages', { to: bob, id: 'm1', body: 'before the crash kiwi' })
  t.same(await until(() => found(apiFor(second.httpUrl, bob), 'kiwi'), (ids) => ids.length === 1, 'm1 archived'), ['m1'])
  // Each server runs WORKERS processes, named <NODE_ID>-<n>: one of the four holds the lease.
  const holder = await redis.get('inboxd:ar:lease:0') ?? ''
  t.match(holder, /^(first|second)-\d+$/, `one process holds the lease: ${holder}`)
  const holderServer = holder.split('-')[0]

  // Kill the holder's server (whichever it is) and write through the other.
  const [victim, survivor] = holderServer === 'first' ? [first, second] : [second, first]
  await victim.kill()
  await apiFor(survivor.httpUrl, alice).post('/v1/messages', { to: bob, id: 'm2', body: 'after the crash kiwi' })
  const ids = await until(() => found(apiFor(survivor.httpUrl, bob), 'kiwi'), (ids) => ids.includes('m2'), 'm2 archived by the survivor')
  t.same(ids, ['m2', 'm1'])
  t.match(await redis.get('inboxd:ar:lease:0'), new RegExp(`^${holderServer === 'first' ? 'second' : 'first'}-\\d+$`), 'a process of the survivor holds the lease now')
})
