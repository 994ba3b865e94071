// Two tiers, one history (issue #21): with HOT_RETENTION_SECONDS=1 the hot log
// lets events go a second after the archive has them; sync, conversation pages,
// the conversation list and group history then read them from the archive, with
// the same seqs and bytes, no gap and no duplicate at the boundary. Embedded
// mode (its own archive) and Redis mode with PostgreSQL.
import t from 'tap'
import { Redis } from 'ioredis'
import { startServerProcess, type ServerHandle } from './helpers/server-process.ts'
import { apiFor, isGapless, type Api } from './helpers/rest.ts'
import { uniqueUser } from './helpers/tokens.ts'
import { connectDevice } from './helpers/devices.ts'
import { archivedRedis } from './helpers/archived-redis.ts'

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

async function syncAll (api: Api, limit: number): Promise<Array<Record<string, any>>> {
  const events: Array<Record<string, any>> = []
  let since = 0
  for (;;) {
    const page = await api.get(`/v1/sync?since=${since}&limit=${limit}`)
    events.push(...page.body.events)
    since = page.body.next
    if (!page.body.hasMore) return events
  }
}

/** Waits until search finds the message with this id (the archiver has caught up to it). */
async function archived (api: Api, word: string, id: string): Promise<void> {
  const deadline = Date.now() + 10_000
  while (!((await api.get(`/v1/search?q=${word}`)).body.results as Array<{ message: { id: string } }>).some((hit) => hit.message.id === id)) {
    if (Date.now() > deadline) throw new Error(`${id} was not archived`)
    await sleep(50)
  }
}

function tiersSuite (name: string, start: () => Promise<ServerHandle>, hotLogHolds?: (user: string, seq: number) => Promise<boolean>, hotGroupHolds?: (group: string, gseq: number) => Promise<boolean>): void {
  t.test(name, async (t) => {
    const server = await start()
    t.teardown(() => server.stop())
    const alice = uniqueUser('alice')
    const bob = uniqueUser('bob')
    const a = apiFor(server.httpUrl, alice)
    const b = apiFor(server.httpUrl, bob)

    // Bob's phone: a persistent session that goes away before anything is sent, for longer than the hot window.
    const phone = await connectDevice({ url: server.mqttUrl, userId: bob, deviceId: 'phone' })
    await phone.end()
    const group = (await a.post('/v1/groups', { name: 'old friends', members: [bob] })).body.group.id as string
    for (let i = 1; i <= 5; i++) await a.post('/v1/messages', { to: bob, id: `old${i}`, body: `old message ${i} apricot` })
    await a.post('/v1/messages', { group, id: 'gold', body: 'group apricot' })
    const carol = uniqueUser('carol')
    await apiFor(server.httpUrl, carol).post('/v1/messages', { to: bob, id: 'cold', body: 'carol apricot' })
    await archived(b, 'apricot', 'cold')
    const before = await syncAll(b, 100)
    t.equal(before.length, 8, 'bob\'s log: the group\'s creation, five messages, a group message and carol\'s')

    // Past the hot window: the next reads trim the hot log (only what the archive holds).
    await sleep(1_200)
    await a.post('/v1/messages', { to: bob, id: 'new1', body: 'new message one' })
    await a.post('/v1/messages', { group, id: 'gnew', body: 'group new' })
    await b.get('/v1/sync?since=0&limit=1')
    await b.get(`/v1/conversations/${alice}/messages?limit=1`)
    if (hotLogHolds !== undefined) t.notOk(await hotLogHolds(bob, 1), 'the hot log no longer holds bob\'s first events')

    // The phone comes back: its session's cursor is below the hot log's floor; the drain reads the archive, then the hot log.
    const back = await connectDevice({ url: server.mqttUrl, userId: bob, deviceId: 'phone' })
    t.teardown(() => back.end())
    const drained = await back.waitForInbox(10)
    t.same(drained.map((event) => event.seq), before.map((event) => event.seq).concat([9, 10]), 'the reconnect drain: every event, in order, across both tiers')
    t.same(drained.slice(0, 8), before, 'byte for byte the same as sync gave before the trim')

    for (const limit of [1, 3, 100]) {
      const after = await syncAll(b, limit)
      t.same(after.slice(0, 8), before, `sync in pages of ${limit}: the archived events, byte for byte the same`)
      t.same(after.slice(8).map((event) => event.id), ['new1', 'gnew'])
      t.ok(isGapless(after.map((event) => event.seq)), 'no gap and no duplicate at the boundary')
    }

    const newest = await b.get(`/v1/conversations/${alice}/messages?limit=3`)
    t.same(newest.body.messages.map((m: any) => m.id), ['old4', 'old5', 'new1'])
    t.equal(newest.body.hasMore, true)
    const older = await b.get(`/v1/conversations/${alice}/messages?limit=3&before=${newest.body.messages[0].seq}`)
    t.same(older.body.messages.map((m: any) => m.id), ['old1', 'old2', 'old3'])
    t.equal(older.body.hasMore, false)
    const forward = await b.get(`/v1/conversations/${alice}/messages?limit=4&after=0`)
    t.same(forward.body.messages.map((m: any) => m.id), ['old1', 'old2', 'old3', 'old4'])
    t.equal(forward.body.hasMore, true)

    const history = await b.get(`/v1/groups/${group}/messages?limit=100`)
    t.same(history.body.events.map((e: any) => e.type === 'message' ? e.id : e.type), ['group_created', 'gold', 'gnew'], 'group history across both tiers')
    const groupPage = await b.get(`/v1/groups/${group}/messages?limit=1&before=3`)
    t.same(groupPage.body.events.map((e: any) => e.id), ['gold'])

    const list = await b.get('/v1/conversations')
    t.same(list.body.conversations.map((c: any) => c.peer ?? c.group).sort(), [alice, carol, group].sort(), 'every conversation is still listed')
    t.match(list.body.conversations.find((c: any) => c.peer === carol), { lastMessage: { id: 'cold', body: 'carol apricot' } }, 'one that only the archive holds, with its last message')
    // The group's log is trimmed at every 16th gseq: past that, the owner recalls a message only the archive holds.
    for (let gseq = 4; gseq <= 16; gseq++) await a.post('/v1/messages', { group, id: `fill${gseq}`, body: 'filler' })
    await b.get(`/v1/groups/${group}/messages?limit=1`)
    if (hotGroupHolds !== undefined) t.notOk(await hotGroupHolds(group, 2), 'the group\'s hot log no longer holds it')
    const recalled = await a.post(`/v1/groups/${group}/messages/2/recall`, {})
    t.match(recalled, { status: 200, body: { message: { id: 'gold', recalled: true } } }, 'an archived-only group message can be recalled by the owner')
    const deadline = Date.now() + 10_000
    while (!(await b.get(`/v1/groups/${group}/messages?limit=100`)).body.events.some((e: any) => e.id === 'gold' && e.recalled === true)) {
      if (Date.now() > deadline) throw new Error('the archive did not take the recall')
      await sleep(50)
    }
    t.notOk((await b.get('/v1/search?q=apricot')).body.results.some((hit: any) => hit.message.id === 'gold'), 'and search no longer finds it')
  })
}

tiersSuite('embedded mode', () => startServerProcess({ mode: 'embedded', env: { HOT_RETENTION_SECONDS: '1' } }))

const own = await archivedRedis()
t.teardown(() => own.close())
const redis = new Redis(own.redis.url)
t.teardown(() => redis.disconnect())
tiersSuite('Redis mode with PostgreSQL', () => own.start({ env: { HOT_RETENTION_SECONDS: '1' } }),
  async (user, seq) => (await redis.zrangebyscore(`inboxd:h:{u:${user}}:log`, seq, seq)).length > 0,
  async (group, gseq) => await redis.hexists(`inboxd:g:{g:${group}}:ev`, String(gseq)) === 1)
