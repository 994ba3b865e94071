// An upgrade on one Redis, end to end: the server as it was at c00c789 (the
// last version on the old key names, its whole tree extracted with `git
// archive` into a folder of this checkout, run as `npm start` runs it) makes
// real data through its doors; it is stopped; `npm run migrate:redis` moves
// the keys; today's server, started on the same Redis, must show every user
// the same history, conversations, groups, blocks, push registrations, keys
// and marks, resume a device's persistent session from its old cursor, and
// recall and mark read messages written by the old version. Then: a second
// run changes nothing; a run interrupted after any number of writes and run
// again ends exactly where one run does; a conflicting new key is refused.
// A redis-server of this file's own: the migration SCANs a whole database,
// and the shared Redis's databases hold other tests' old-name keys.
import t from 'tap'
import { execFileSync, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync, readdirSync, rmSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Redis } from 'ioredis'
import { pino } from 'pino'
import { migrateRedisKeys, type MigrationResult } from '../storage/migrate-redis-keys.ts'
import { openCommands } from '../storage/redis-connection.ts'
import { ownerKey, pushTokenKey, userTag } from '../storage/redis-keys.ts'
import { RedisLog } from '../history/redis-log.ts'
import { RedisGroups } from '../history/redis-groups.ts'
import { RedisDeviceRegistry } from '../push/redis-device-registry.ts'
import { RedisRevocations } from '../auth/revocations.ts'
import { RedisKeyDirectory } from '../keys/key-directory.ts'
import { startRedisServer } from './helpers/redis-server.ts'
import { freePort, startServerProcess, tempDataDir, type ServerHandle } from './helpers/server-process.ts'
import { apiFor, isGapless, type Api } from './helpers/rest.ts'
import { connectDevice } from './helpers/devices.ts'
import { token } from './helpers/tokens.ts'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const OLD_COMMIT = 'c00c789'
const ADMIN_TOKEN = 'admin-token-admin-token-admin-token-0123'
// Ids with every character an id may have besides letters and digits.
const A = 'ali.ce@ex-1_a'
const B = 'bob'
const C = 'carol'
const IOS_TOKEN = 'ab'.repeat(32)
const FCM_TOKEN = 'fcm:APA91b-carol_token.0123456789abcdef'
const PUBLIC_KEY = 'A'.repeat(43) + '='

const own = await startRedisServer(await freePort(), tempDataDir())
t.teardown(() => own.kill())
const dbUrl = (db: number): string => `${own.url}/${db}`
const log = pino({ level: 'silent' })
async function open (db: number): Promise<Redis> {
  return await openCommands({ kind: 'single', url: dbUrl(db) }, 'test', log) as Redis
}

const oldTree = join(ROOT, `.old-${OLD_COMMIT}-${process.pid}`)
// A run killed before its teardown left its tree: removed once its process is gone.
for (const name of readdirSync(ROOT)) {
  const pid = Number(/^\.old-[0-9a-f]+-(\d+)$/.exec(name)?.[1])
  if (pid > 0 && !alive(pid)) rmSync(join(ROOT, name), { recursive: true, force: true })
}
mkdirSync(oldTree)
t.teardown(() => rmSync(oldTree, { recursive: true, force: true }))
execFileSync('bash', ['-c', `git archive ${OLD_COMMIT} | tar -x -C '${oldTree}'`], { cwd: ROOT })

function alive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch { return false }
}

const serverEnv = (db: number): Record<string, string> => ({ REDIS_URL: dbUrl(db), ADMIN_TOKEN, PUBLISH_RATE: '0' })

/** Polls until `read` gives a value `done` accepts (for state another process reaches later). */
async function until<T> (read: () => Promise<T>, done: (value: T) => boolean, what: string, timeoutMs = 15_000): Promise<T> {
  const started = Date.now()
  for (;;) {
    const value = await read()
    if (done(value)) return value
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(value)}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

/** Every key of a database with its type, content and whether it expires: two equal dumps are one state. */
async function dump (redis: Redis): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {}
  let cursor = '0'
  do {
    const [next, keys] = await redis.scan(cursor, 'COUNT', 1000)
    cursor = next
    for (const key of keys) {
      // Rate-limit counters are not migrated and expire within a minute: a slow run would see some of them gone.
      if (key.startsWith('inboxd:rl:')) continue
      const type = await redis.type(key)
      const value = type === 'string'
        ? await redis.get(key)
        : type === 'hash'
          ? Object.entries(await redis.hgetall(key)).sort()
          : type === 'zset'
            ? await redis.zrange(key, 0, -1, 'WITHSCORES')
            : type === 'set' ? (await redis.smembers(key)).sort() : type === 'list' ? await redis.lrange(key, 0, -1) : type
      out[key] = { type, value, expires: await redis.pttl(key) > 0 }
    }
  } while (cursor !== '0')
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => a < b ? -1 : 1))
}

async function copyDb (from: Redis, to: Redis): Promise<void> {
  await to.flushdb()
  let cursor = '0'
  do {
    const [next, keys] = await from.scan(cursor, 'COUNT', 1000)
    cursor = next
    for (const key of keys) {
      const [payload, ttl] = await Promise.all([from.dumpBuffer(key), from.pttl(key)])
      if (payload !== null) await to.restore(key, ttl > 0 ? ttl : 0, payload, 'REPLACE')
    }
  } while (cursor !== '0')
}

async function oldNameKeys (redis: Redis): Promise<string[]> {
  const found: string[] = []
  for (const pattern of ['inboxd:h:[^{]*', 'inboxd:g:[^{]*', 'inboxd:devices:[^{]*', 'inboxd:presence:[^{]*', 'inboxd:keys', 'inboxd:rv:[ud]:*']) {
    let cursor = '0'
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
      cursor = next
      found.push(...keys.filter((key) => key !== 'inboxd:presence:nodes'))
    } while (cursor !== '0')
  }
  return found.sort()
}

interface Seen {
  sync: Record<string, Array<Record<string, any>>>
  conversations: Record<string, unknown>
  groups: Record<string, unknown>
  groupMessages: unknown
  blocks: unknown
  devices: Record<string, unknown>
  key: unknown
  presence: unknown
}

/** What every user sees through REST (compared before and after the upgrade). */
async function seen (server: ServerHandle, group: string): Promise<Seen> {
  const api = (user: string): Api => apiFor(server.httpUrl, user)
  const users = [A, B, C]
  const result: Seen = { sync: {}, conversations: {}, groups: {}, groupMessages: undefined, blocks: undefined, devices: {}, key: undefined, presence: undefined }
  for (const user of users) {
    result.sync[user] = await api(user).syncAll(0)
    result.conversations[user] = (await api(user).get('/v1/conversations?limit=50')).body
    result.groups[user] = (await api(user).get('/v1/groups')).body
    result.devices[user] = (await api(user).get('/v1/devices')).body
  }
  result.groupMessages = (await api(B).get(`/v1/groups/${group}/messages?limit=50`)).body
  result.blocks = (await api(A).get('/v1/blocks')).body
  result.key = (await api(B).get(`/v1/keys/${encodeURIComponent(A)}`)).body
  result.presence = (await api(B).get(`/v1/presence/${encodeURIComponent(A)}`)).body
  return result
}

const seqOf = (events: Array<Record<string, any>>, id: string, from: string): number => events.find((event) => event.type === 'message' && event.id === id && event.from === from)!.seq

let group = ''
let before: Seen
let cursorBefore = 0
let migrated: Record<string, unknown> = {}
const loggedOut = token(A, { expiresInMs: 3_600_000 })
const redis0 = await open(0)
t.teardown(() => redis0.disconnect())
const snapshot = await open(1)
t.teardown(() => snapshot.disconnect())

t.test('the old version writes its data, and npm run migrate:redis moves it', async (t) => {
  // ---- The old version writes its data. ----
  const old = await startServerProcess({ mode: 'redis', cwd: oldTree, env: serverEnv(0) })
  t.teardown(() => old.kill())
  const oldApi = (user: string): Api => apiFor(old.httpUrl, user)

  // bob's phone: a persistent session that takes m1..m3, then goes away.
  const phone = await connectDevice({ url: old.mqttUrl, userId: B, deviceId: 'phone' })
  for (const id of ['m1', 'm2', 'm3']) t.equal((await oldApi(A).post('/v1/messages', { to: B, id, body: { text: id } })).status, 201)
  await phone.waitForMatching((event) => event.type === 'message', 3)
  cursorBefore = Number(await until(() => redis0.hget(`inboxd:h:${B}:cur`, 'phone'), (value) => Number(value) >= seqOf(phone.inbox, 'm3', A), 'the old cursor saved'))
  await phone.end()
  // alice's device came and went: her last state is offline with a lastSeen.
  const aliceDevice = await connectDevice({ url: old.mqttUrl, userId: A, deviceId: 'laptop' })
  await aliceDevice.end()
  await until(() => redis0.get(`inboxd:presence:ps:${A}`), (state) => state !== null && JSON.parse(state).status === 'offline', 'alice offline')

  for (const id of ['m4', 'm5', 'm6']) t.equal((await oldApi(A).post('/v1/messages', { to: B, id, body: { text: id } })).status, 201)
  t.equal((await oldApi(B).post('/v1/messages', { to: A, id: 'r1', body: { text: 'hi alice' } })).status, 201)
  t.equal((await oldApi(B).post(`/v1/conversations/${encodeURIComponent(A)}/read`, { id: 'm2' })).status, 200)
  t.equal((await oldApi(A).put(`/v1/blocks/${C}`, {})).status, 200, 'alice blocks carol')
  t.equal((await oldApi(C).post('/v1/messages', { to: A, id: 'c1', body: { text: 'withheld' } })).status, 201)
  const created = await oldApi(A).post('/v1/groups', { name: 'trio', members: [B, C] })
  t.equal(created.status, 201)
  group = created.body.group.id as string
  const g1 = await oldApi(A).post('/v1/messages', { group, id: 'g1', body: { text: 'hello group' } })
  t.equal(g1.status, 201, JSON.stringify(g1.body))
  t.equal((await oldApi(B).post('/v1/messages', { group, id: 'g2', body: { text: 'hello back' } })).status, 201)
  t.equal((await oldApi(B).post('/v1/devices', { platform: 'ios', token: IOS_TOKEN, deviceId: 'phone' })).status, 201)
  t.equal((await oldApi(C).post('/v1/devices', { platform: 'android', token: FCM_TOKEN, deviceId: 'pixel' })).status, 201)
  t.equal((await oldApi(A).put('/v1/keys', { publicKey: PUBLIC_KEY })).status, 200)
  const revoke = async (body: unknown): Promise<number> => (await fetch(`${old.httpUrl}/v1/admin/revoke`, {
    method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify(body)
  })).status
  t.ok([200, 204].includes(await revoke({ user: 'dave' })), 'dave revoked')
  t.ok([200, 204].includes(await revoke({ user: C, deviceId: 'old-tablet' })), "carol's old tablet revoked")
  t.equal((await apiFor(old.httpUrl, A, { token: loggedOut }).post('/v1/sessions/logout', {})).status, 200, 'a token of alice logged out')
  // Every group message fanned out before the old version stops.
  await until(() => oldApi(C).syncAll(0), (events) => events.filter((event) => event.group === group && event.type === 'message').length === 2, 'the group messages in carol\'s log')
  before = await seen(old, group)
  t.equal(await old.stop(), 0, 'the old version stops cleanly')

  t.equal(cursorBefore, seqOf(before.sync[B]!, 'm3', A), 'the old cursor is at m3')
  t.ok((await redis0.exists(`inboxd:h:${A}:log`, `inboxd:g:${group}:ev`, `inboxd:devices:${B}`, 'inboxd:keys', `inboxd:presence:ps:${A}`)) === 5, 'the data is under the old names')
  await copyDb(redis0, snapshot)

  // ---- The migration, as an operator runs it. ----
  const cli = spawn('npm', ['run', '-s', 'migrate:redis'], { cwd: ROOT, env: { ...process.env, REDIS_URL: dbUrl(0) }, stdio: ['ignore', 'pipe', 'pipe'] })
  let cliOutput = ''
  cli.stdout.on('data', (chunk: Buffer) => { cliOutput += chunk.toString() })
  cli.stderr.on('data', (chunk: Buffer) => { cliOutput += chunk.toString() })
  const [cliCode] = await once(cli, 'exit')
  t.comment(cliOutput.trim())
  t.equal(cliCode, 0, 'npm run migrate:redis succeeds')
  t.match(cliOutput, /history\s+moved \d+, merged 0, dropped 0, kept 0, refused 0/, 'it prints a count per family')
  t.match(cliOutput, /rids entries written: 7/, "a rids entry per received 1:1 message: bob's six, alice's one (carol's was withheld)")
  t.match(cliOutput, /devices\s+moved 2,/, 'both push registrations moved')
  t.match(cliOutput, /revocations\s+moved 2, merged 0, dropped 0, kept 1,/, "user and device marks moved; the logged-out token's mark kept (read under its old name)")
  t.match(cliOutput, /keys\s+moved 1,/, 'the published key moved')
  t.same(await oldNameKeys(redis0), [], 'no per-user, group, device, presence, key or mark key is left under an old name')
  migrated = await dump(redis0)
})

const bobSeq = (id: string): number => seqOf(before.sync[B]!, id, A)

// ---- Today's version on the migrated data. ----
let fresh: ServerHandle
t.test('start today\'s version on the migrated data', async () => {
  fresh = await startServerProcess({ mode: 'redis', env: serverEnv(0) })
})
t.teardown(() => fresh?.kill())
const api = (user: string): Api => apiFor(fresh.httpUrl, user)

t.test('every user sees what they saw before the upgrade', async (t) => {
  const after = await seen(fresh, group)
  t.same(after.sync, before.sync, '/v1/sync: the same events at the same seqs, for every user')
  t.same(after.conversations, before.conversations, 'conversations with their unread counts and marks')
  t.same(after.groups, before.groups, 'group membership')
  t.same(after.groupMessages, before.groupMessages, 'group history')
  t.same(after.blocks, before.blocks, "alice's blocks")
  t.same(after.devices, before.devices, 'push registrations: no app registers again')
  t.same(after.key, before.key, "alice's published key")
  t.same(after.presence, before.presence, "alice's last seen")
  t.equal((before.conversations[B] as any).conversations.find((row: any) => row.peer === A).unread, 4, 'bob had four unread from alice (m3..m6)')
})

t.test('a device resumes its persistent session from its old cursor', async (t) => {
  const resumed = await connectDevice({ url: fresh.mqttUrl, userId: B, deviceId: 'phone' })
  t.teardown(() => resumed.end(true))
  t.ok(resumed.sessionPresent, 'the broker session survived')
  const head = Math.max(...before.sync[B]!.map((event) => event.seq as number))
  await resumed.waitForMatching((event) => event.seq === head, 1)
  const seqs = resumed.inbox.map((event) => event.seq as number)
  t.equal(seqs[0], cursorBefore + 1, 'the drain starts right after the old cursor')
  t.ok(isGapless(seqs.map((seq) => seq - cursorBefore)), 'and misses nothing up to the head')
})

t.test('marking read by id and recall work on messages written by the old version', async (t) => {
  const read = await api(B).post(`/v1/conversations/${encodeURIComponent(A)}/read`, { id: 'm4' })
  t.same(read.body, { peer: A, readUpTo: bobSeq('m4'), unread: 2 }, 'seqOfMessage finds m4 through the built rids')
  const aliceM4 = seqOf(before.sync[A]!, 'm4', A)
  await until(() => api(A).syncAll(0), (events) => events.some((event) => event.type === 'receipt' && event.kind === 'read' && event.upTo === aliceM4), 'the read receipt in alice\'s log')

  t.equal((await api(A).post('/v1/messages/m5/recall')).status, 200, 'alice recalls m5')
  const events = await until(() => api(B).syncAll(0), (events) => events.some((event) => event.type === 'recall' && event.id === 'm5'), 'the recall in bob\'s log')
  t.equal(events.find((event) => event.type === 'recall' && event.id === 'm5')!.messageSeq, bobSeq('m5'), 'the recall names bob\'s seq of m5')
  t.match(events.find((event) => event.seq === bobSeq('m5')), { type: 'message', id: 'm5', recalled: true }, "bob's copy is a tombstone")
  t.ok(isGapless(events.map((event) => event.seq)), "bob's log stays gapless")
  const conversations = (await api(B).get('/v1/conversations')).body.conversations
  t.equal(conversations.find((row: any) => row.peer === A).unread, 1, 'the recalled message no longer counts as unread')

  const redis = await open(0)
  t.teardown(() => redis.disconnect())
  const history = new RedisLog(redis)
  t.equal(await history.seqOfMessage(B, A, 'm6'), bobSeq('m6'), 'RedisLog.seqOfMessage: a received message')
  t.equal(await history.seqOfMessage(A, B, 'm6'), seqOf(before.sync[A]!, 'm6', A), 'and a sent one')
})

t.test('groups, blocks and new messages go on from the migrated state', async (t) => {
  t.equal((await api(A).post('/v1/messages', { group, id: 'g3', body: 'after the upgrade' })).status, 201)
  const events = await until(() => api(C).syncAll(0), (events) => events.some((event) => event.group === group && event.id === 'g3'), 'g3 in carol\'s log')
  t.ok(isGapless(events.map((event) => event.seq)), "carol's log goes on gapless")
  const redis = await open(0)
  t.teardown(() => redis.disconnect())
  const groups = new RedisGroups(redis)
  t.same([...(await groups.getGroup(group))!.members.keys()].sort(), [A, B, C].sort(), 'RedisGroups reads the members')

  // carol is still blocked: her message stays in her log only (waited for: her outbox drained).
  t.equal((await api(C).post('/v1/messages', { to: A, id: 'c2', body: { text: 'still blocked' } })).status, 201)
  await until(async () => [await redis.get(ownerKey('h', userTag(C), 'obdone')), await redis.get(ownerKey('h', userTag(C), 'obseq'))],
    ([done, head]) => head !== null && done === head, "carol's outbox relayed")
  t.notOk((await api(A).syncAll(0)).some((event) => event.from === C), 'alice got nothing from carol')

  t.equal((await api(A).post('/v1/messages', { to: B, id: 'm7', body: { text: 'after' } })).status, 201)
  const bob = await until(() => api(B).syncAll(0), (events) => events.some((event) => event.id === 'm7'), 'm7 in bob\'s log')
  t.ok(isGapless(bob.map((event) => event.seq)), "bob's seq goes on from the old head")
})

t.test('push registrations, published keys and marks under the new names', async (t) => {
  const redis = await open(0)
  t.teardown(() => redis.disconnect())
  t.same((await new RedisDeviceRegistry(redis).list(B)).map(({ deviceId, token }) => [deviceId, token]), [['phone', IOS_TOKEN]])
  t.equal(await redis.get(pushTokenKey(IOS_TOKEN)), `${B}:phone`, 'the token names its holder')
  t.equal(await redis.get(pushTokenKey(FCM_TOKEN)), `${C}:pixel`, 'a token with a colon too')
  t.match(await new RedisKeyDirectory(redis, { legacy: false }).get(A), { user: A, publicKey: PUBLIC_KEY }, 'the key, without reading the old hash')
  const revocations = new RedisRevocations(redis, { legacy: false })
  const iat = Math.floor(Date.now() / 1000) - 3_600
  t.ok(await revocations.isRevoked({ sub: 'dave', token: 'x', iat }), "dave's mark, without reading the old names")
  t.ok(await revocations.isRevoked({ sub: C, token: 'y', iat }, 'old-tablet'), "carol's tablet's mark")
  t.notOk(await revocations.isRevoked({ sub: C, token: 'y', iat }, 'pixel'), 'not her other devices')
  t.equal((await apiFor(fresh.httpUrl, A, { token: loggedOut }).get('/v1/sessions/current')).status, 401, 'the logged-out token stays refused')
})

t.test('a second run changes nothing', async (t) => {
  await fresh.stop()
  const redis = await open(0)
  t.teardown(() => redis.disconnect())
  const state = await dump(redis)
  const again = await migrateRedisKeys(redis)
  t.same(Object.values(again.counts).map(({ moved, merged, dropped, refused }) => moved + merged + dropped + refused), [0, 0, 0, 0, 0, 0], 'nothing moved')
  t.equal(again.rids, 0)
  t.same(await dump(redis), state, 'the same keys and values')
})

t.test('interrupted after any number of writes, then run again: the state of one run', async (t) => {
  const reference = await open(2)
  const work = await open(3)
  t.teardown(() => { reference.disconnect(); work.disconnect() })
  await copyDb(snapshot, reference)
  const one = await migrateRedisKeys(reference)
  const expected = await dump(reference)
  // The same as the CLI's run on the same data (the comparison below can fail).
  t.same(expected, migrated)
  const total = one.writes
  t.ok(total > 20, `${total} writes in one run`)
  for (let budget = 0; budget < total; budget += Math.max(1, Math.floor(total / 40))) {
    await copyDb(snapshot, work)
    await t.rejects(migrateRedisKeys(work, { writeBudget: budget, batch: 7 }), { name: 'Interrupted' })
    const rest: MigrationResult = await migrateRedisKeys(work, { batch: 7 })
    t.equal(rest.refused.length, 0)
    t.same(await dump(work), expected, `interrupted after ${budget} writes`)
  }
})

t.test('refused while a server runs; a key the new version already wrote is refused, and its old data kept', async (t) => {
  const redis = await open(4)
  t.teardown(() => redis.disconnect())
  await copyDb(snapshot, redis)
  // A server still running (its heartbeat alive): nothing is touched.
  await redis.set('inboxd:presence:node:still-up', '1', 'PX', 60_000)
  await t.rejects(migrateRedisKeys(redis), /a server process is running on this Redis \(its heartbeat inboxd:presence:node:still-up is alive\): stop every server first/)
  t.equal(await redis.exists(`inboxd:h:${A}:log`, `inboxd:h:${B}:log`), 2, 'nothing moved while it runs')
  await redis.del('inboxd:presence:node:still-up')
  // The new version ran before the migration: alice has a log of her own, carol a conversation index.
  await redis.set(ownerKey('h', userTag(A), 'seq'), 1)
  await redis.zadd(ownerKey('h', userTag(C), 'convs'), 1, 'mallory')
  const result = await migrateRedisKeys(redis)
  t.match(result.refused.join('\n'), `user ${A}: inboxd:h:{u:${A}}:seq exists`, 'alice is refused whole')
  t.match(result.refused.join('\n'), `inboxd:h:${C}:convs: inboxd:h:{u:${C}}:convs already exists`, "carol's conversation index is refused")
  t.equal(await redis.exists(`inboxd:h:${A}:log`, `inboxd:h:${A}:seq`, `inboxd:h:${C}:convs`), 3, 'their old keys stay')
  t.equal(await redis.exists(ownerKey('h', userTag(C), 'log')), 1, "carol's other keys are migrated")
  t.equal(await redis.exists(ownerKey('h', userTag(B), 'log')), 1, 'bob is migrated')
  t.equal(await redis.exists(ownerKey('h', userTag(A), 'rids')), 0, 'nothing written for alice')
})

t.test('the CLI refuses a Redis Cluster: it never held the old names', async (t) => {
  const child = spawn('npm', ['run', '-s', 'migrate:redis'], { cwd: ROOT, env: { ...process.env, REDIS_URL: '', REDIS_CLUSTER_NODES: '127.0.0.1:7000' }, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const [code] = await once(child, 'exit')
  t.equal(code, 1)
  t.match(output, /REDIS_CLUSTER_NODES is set: a Redis Cluster never held the old key names/)
})
