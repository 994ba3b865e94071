// PostgreSQL down never blocks sending, live delivery or starting (issue #21):
// Redis mode with DATABASE_URL on a PostgreSQL of this file's own, killed with
// SIGKILL and started again. While it is down every publish is PUBACKed and
// delivered, /metrics shows it (inboxd_archive_up 0, a growing lag, errors),
// /readyz stays ready and search answers search_unavailable; once it is back
// the archiver catches up: search finds what was sent meanwhile and the lag
// returns to 0. The same when it is frozen (SIGSTOP: nothing fails, nothing
// answers). Everything is waited for as it happens, never slept for.
// And retention of the archive (HISTORY_RETENTION_SECONDS): old messages leave
// the search index.
import t from 'tap'
import { startServerProcess, type ServerHandle } from './helpers/server-process.ts'
import { connectDevice } from './helpers/devices.ts'
import { apiFor, type Api } from './helpers/rest.ts'
import { uniqueUser } from './helpers/tokens.ts'
import { createOwnPostgres, startOwnPostgres } from './helpers/own-postgres.ts'
import { metric, metricsUntil, scrape } from './helpers/metrics.ts'

// Not flushed (other files' servers share it). No other file runs an archiver on it: two servers
// with different DATABASE_URLs on one Redis database would take each other's logs (one lease).
const REDIS_DB = 1
const TIMEOUT_MS = 40_000

/** Searches until the hits hold `ids` (the archiver catches up in rounds), or fails. */
async function searchUntil (api: Api, query: string, ids: string[]): Promise<void> {
  const deadline = Date.now() + TIMEOUT_MS
  let last: unknown
  for (;;) {
    const response = await api.get(`/v1/search?q=${encodeURIComponent(query)}&limit=100`)
    last = response.body
    if (response.status === 200) {
      const found = new Set((response.body.results as Array<{ message: { id: string } }>).map((hit) => hit.message.id))
      if (ids.every((id) => found.has(id))) return
    }
    if (Date.now() > deadline) throw new Error(`search for ${query} never found ${ids.length} messages: ${JSON.stringify(last)}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/** How many log lines with `msg` matching, per process (WORKERS: one per core, each with its own archiver), at most. */
function perProcess (output: string, msg: RegExp): number {
  const counts = new Map<number, number>()
  for (const line of output.split('\n')) {
    if (!line.startsWith('{')) continue
    const record = JSON.parse(line) as { pid: number, msg?: string }
    if (record.msg !== undefined && msg.test(record.msg)) counts.set(record.pid, (counts.get(record.pid) ?? 0) + 1)
  }
  return Math.max(0, ...counts.values())
}

t.test('PostgreSQL killed mid-stream: every publish PUBACKed and delivered live; the archive catches up after', async (t) => {
  const postgres = await startOwnPostgres()
  t.teardown(() => postgres.remove())
  const server = await startServerProcess({ mode: 'redis', redisDb: REDIS_DB, env: { DATABASE_URL: postgres.url } })
  t.teardown(() => server.stop())
  await metricsUntil(server, 'inboxd_archive_up 1', (text) => metric(text, 'inboxd_archive_up') === 1)

  const alice = uniqueUser('alice')
  const bob = uniqueUser('bob')
  const sender = await connectDevice({ url: server.mqttUrl, userId: alice, deviceId: 'phone' })
  const receiver = await connectDevice({ url: server.mqttUrl, userId: bob, deviceId: 'phone' })
  t.teardown(() => Promise.all([sender.end(true), receiver.end(true)]))
  const b = apiFor(server.httpUrl, bob)

  // A stream of QoS 1 messages; PostgreSQL is killed after the 10th PUBACK, the stream goes on.
  const before = Array.from({ length: 10 }, (_, i) => `before-${i}`)
  const during = Array.from({ length: 30 }, (_, i) => `during-${i}`)
  let started = Date.now()
  for (const id of before) await sender.send(bob, { id, body: `mango ${id}` })
  const upMs = (Date.now() - started) / before.length
  await postgres.kill()
  started = Date.now()
  for (const id of during) await sender.send(bob, { id, body: `papaya ${id}` })
  const downMs = (Date.now() - started) / during.length
  t.pass(`${during.length} publishes PUBACKed with PostgreSQL down, one after another: ${downMs.toFixed(1)} ms each (${upMs.toFixed(1)} ms with it up)`)
  const delivered = await receiver.waitForInbox(before.length + during.length)
  t.same(delivered.map((event) => event.id), [...before, ...during], 'all delivered live, in order')

  // What the operator sees meanwhile.
  const down = await metricsUntil(server, 'the archive down with a lag', (text) =>
    metric(text, 'inboxd_archive_up') === 0 && (metric(text, 'inboxd_archive_lag_seconds') ?? 0) > 0 && (metric(text, 'inboxd_archive_errors_total') ?? 0) >= 1)
  const lagDown = metric(down, 'inboxd_archive_lag_seconds')!
  await metricsUntil(server, 'the lag growing', (text) => metric(text, 'inboxd_archive_lag_seconds')! > lagDown && metric(text, 'inboxd_archive_up') === 0)
  t.pass(`inboxd_archive_up 0, lag ${lagDown} s and growing, ${metric(down, 'inboxd_archive_errors_total')} errors`)
  t.same(await (await fetch(`${server.httpUrl}/readyz`)).json(), { status: 'ready' }, 'still ready: sending works')
  const unavailable = await b.get('/v1/search?q=papaya')
  t.equal(unavailable.status, 503, 'search while the index cannot be reached')
  t.equal(unavailable.body.error, 'search_unavailable')

  // Back: the archiver catches up.
  await postgres.start()
  await searchUntil(b, 'papaya', during)
  t.pass('search finds every message sent during the outage')
  await searchUntil(b, 'mango', before)
  const caughtUp = await metricsUntil(server, 'the lag back to 0', (text) => metric(text, 'inboxd_archive_lag_seconds') === 0 && metric(text, 'inboxd_archive_up') === 1)
  t.ok(metric(caughtUp, 'inboxd_archive_events_total')! >= 2 * (before.length + during.length), 'archived (both logs of each message)')
  t.equal(perProcess(server.output(), /^archive unreachable/), 1, 'one warning for the outage, not one per retry')
  t.equal(perProcess(server.output(), /^archive reachable again/), 1, 'one line when it is back')
})

t.test('PostgreSQL frozen (SIGSTOP, nothing answers): sending and delivery go on, search answers 503, the outage shows', async (t) => {
  const postgres = await startOwnPostgres()
  t.teardown(() => postgres.remove())
  const server = await startServerProcess({ mode: 'redis', redisDb: REDIS_DB, env: { DATABASE_URL: postgres.url } })
  t.teardown(() => server.stop())
  await metricsUntil(server, 'inboxd_archive_up 1', (text) => metric(text, 'inboxd_archive_up') === 1)
  const alice = uniqueUser('alice')
  const bob = uniqueUser('bob')
  const sender = await connectDevice({ url: server.mqttUrl, userId: alice, deviceId: 'phone' })
  const receiver = await connectDevice({ url: server.mqttUrl, userId: bob, deviceId: 'phone' })
  t.teardown(() => Promise.all([sender.end(true), receiver.end(true)]))
  const b = apiFor(server.httpUrl, bob)

  postgres.pause()
  t.teardown(() => postgres.resume())
  const frozen = Array.from({ length: 20 }, (_, i) => `frozen-${i}`)
  const started = Date.now()
  for (const id of frozen) await sender.send(bob, { id, body: `lychee ${id}` })
  const eachMs = (Date.now() - started) / frozen.length
  t.same((await receiver.waitForInbox(frozen.length, 30_000)).map((event) => event.id), frozen, `every publish PUBACKed (${eachMs.toFixed(1)} ms each, one after another) and delivered live`)
  const asked = Date.now()
  const unavailable = await b.get('/v1/search?q=lychee')
  t.equal(unavailable.status, 503, `search answers 503 (in ${Date.now() - asked} ms) instead of hanging`)
  t.equal(unavailable.body.error, 'search_unavailable')
  const down = await metricsUntil(server, 'the archive down with a lag', (text) =>
    metric(text, 'inboxd_archive_up') === 0 && (metric(text, 'inboxd_archive_lag_seconds') ?? 0) > 0)
  await metricsUntil(server, 'the lag growing', (text) => metric(text, 'inboxd_archive_lag_seconds')! > metric(down, 'inboxd_archive_lag_seconds')!)
  t.same(await (await fetch(`${server.httpUrl}/readyz`)).json(), { status: 'ready' }, 'still ready')

  postgres.resume()
  await searchUntil(b, 'lychee', frozen)
  await metricsUntil(server, 'the lag back to 0', (text) => metric(text, 'inboxd_archive_lag_seconds') === 0 && metric(text, 'inboxd_archive_up') === 1)
  t.equal(perProcess(server.output(), /^archive unreachable/), 1, 'one warning for the stall')
})

t.test('a server started while PostgreSQL is down starts, sends, and searches once it is up', async (t) => {
  const postgres = await createOwnPostgres()
  t.teardown(() => postgres.remove())
  const server = await startServerProcess({ mode: 'redis', redisDb: REDIS_DB, env: { DATABASE_URL: postgres.url } })
  t.teardown(() => server.stop())
  t.same(await (await fetch(`${server.httpUrl}/readyz`)).json(), { status: 'ready' })

  const alice = uniqueUser('alice')
  const bob = uniqueUser('bob')
  const receiver = await connectDevice({ url: server.mqttUrl, userId: bob, deviceId: 'phone' })
  t.teardown(() => receiver.end(true))
  const sent = await apiFor(server.httpUrl, alice).post('/v1/messages', { to: bob, id: 'early', body: 'sent before the archive opened' })
  t.ok(sent.status >= 200 && sent.status < 300, `sending works (${sent.status})`)
  t.match(await receiver.waitForInbox(1), [{ id: 'early' }], 'and is delivered live')

  const b = apiFor(server.httpUrl, bob)
  const unavailable = await b.get('/v1/search?q=archive')
  t.equal(unavailable.status, 503)
  t.equal(unavailable.body.error, 'search_unavailable')
  t.match(unavailable.body.message, /not reachable yet/)
  await metricsUntil(server, 'the archive down with a lag', (text) =>
    metric(text, 'inboxd_archive_up') === 0 && (metric(text, 'inboxd_archive_lag_seconds') ?? 0) > 0 && (metric(text, 'inboxd_archive_errors_total') ?? 0) >= 1)

  await postgres.start()
  await searchUntil(b, 'archive', ['early'])
  t.pass('search works once PostgreSQL is up, and holds what was sent before')
  await metricsUntil(server, 'the lag back to 0', (text) => metric(text, 'inboxd_archive_lag_seconds') === 0 && metric(text, 'inboxd_archive_up') === 1)
  t.equal(perProcess(server.output(), /^archive unreachable/), 1, 'one warning, however many attempts')
})

t.test('retention of the archive: a message older than HISTORY_RETENTION_SECONDS leaves search', async (t) => {
  // Embedded mode (its own archive); the hot log follows the same retention.
  const server = await startServerProcess({ mode: 'embedded', env: { HISTORY_RETENTION_SECONDS: '4' } })
  t.teardown(() => server.stop())
  const alice = apiFor(server.httpUrl, uniqueUser('alice'))
  const bob = uniqueUser('bob')
  const b = apiFor(server.httpUrl, bob)
  await alice.post('/v1/messages', { to: bob, id: 'old', body: 'guava old' })
  await searchUntil(b, 'guava', ['old'])
  t.pass('found while within retention')

  // Trimmed within 2 s of being 4 s old (a trim at least twice per retention period); the later message has 4 s to be found.
  const deadline = Date.now() + TIMEOUT_MS
  for (;;) {
    const response = await b.get('/v1/search?q=guava')
    if (response.status === 200 && response.body.results.length === 0) break
    if (Date.now() > deadline) throw new Error(`the old message is still found: ${JSON.stringify(response.body)}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  await alice.post('/v1/messages', { to: bob, id: 'new', body: 'guava new' })
  await searchUntil(b, 'guava', ['new'])
  const hits = (await b.get('/v1/search?q=guava')).body.results as Array<{ message: { id: string } }>
  t.same(hits.map((hit) => hit.message.id), ['new'], 'a later message is found, the old one no longer')
  // Search hides what is past retention at once; the archive's trim removes it within a minute (twice per period here).
  const trimmedBy = Date.now() + TIMEOUT_MS
  while ((metric(await scrape(server), 'inboxd_archive_trimmed_total') ?? 0) < 2) {
    if (Date.now() > trimmedBy) throw new Error('the archive did not trim the old message')
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  t.pass('trimmed from the archive (the message in both logs)')
})
