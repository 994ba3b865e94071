// Issue #21's search targets: a user's query over a large archive, and a
// history page read from it. Fills one archive store (`store`: "pg", a
// database of its own on the machine's PostgreSQL, random name, dropped at
// the end; or "level", a LevelDB in a temporary directory) through the
// ArchiveStore API, putUserEvents in batches, with tokens from
// search/tokenize.ts documentTokens, then times, one at a time, what a user
// does: GET /v1/search's work (SearchService.search: query tokens, the
// store's search, snippets) for five shapes of query, readLog pages of 100
// and conversation before-pages of 50. And EXPLAIN (ANALYZE, BUFFERS) of the
// slowest shape on PostgreSQL.
//
// The data: `users` users (default 10,000), `rows` user-log rows in all
// (default 1,000,000), all 1:1 messages: 1% of the users are heavy (ten times
// the rows of the others). Each message's text is one or two of
// test/fixtures/search-corpus.json's messages (Chinese, English, mixed,
// Japanese, Korean, emoji, ids), and one in 20,000 also holds a rare word.
// Args (JSON): { store, rows, users, queries, batch }.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { execFileSync } from 'node:child_process'
import pg from 'pg'
import type { ArchivedUserEvent, ArchiveStore } from '../../archive/archive-store.ts'
import { PgArchive } from '../../archive/pg-archive.ts'
import { LevelArchive } from '../../archive/level-archive.ts'
import { SearchService } from '../../archive/search-service.ts'
import { documentTokens, queryTokens } from '../../search/tokenize.ts'
import { searchableText } from '../../search/searchable-text.ts'
import { percentile, report } from '../profile.ts'

const args = JSON.parse(process.argv[2] ?? '{}') as Record<string, unknown>
const storeKind = String(args.store ?? 'pg')
const totalRows = Number(args.rows ?? 1_000_000)
const users = Number(args.users ?? 10_000)
const queriesPerShape = Number(args.queries ?? 200)
const batchSize = Number(args.batch ?? 1_000)
const server = String(args.databaseUrl ?? process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres')
const loadAverage = (): number => Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0])
const log = (line: string): void => { process.stderr.write(`[archive-search ${storeKind}] ${line}\n`) }

// A seeded generator, so both stores get the same rows.
let seed = 0x2545f491
const random = (): number => {
  seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5
  return (seed >>> 0) / 2 ** 32
}
const pick = <T>(items: T[]): T => items[Math.floor(random() * items.length)]!

const corpus = JSON.parse(readFileSync(new URL('../../test/fixtures/search-corpus.json', import.meta.url), 'utf8')) as { messages: Array<{ body: unknown }> }
const phrases = corpus.messages.flatMap((m) => searchableText(m.body) ?? [])
const RARE = 'quetzalcoatl'
/** Tokens by text: the corpus has 262 messages, so a text made of one or two of them recurs. */
const tokenCache = new Map<string, string[]>()
const tokensOf = (text: string): string[] => {
  let tokens = tokenCache.get(text)
  if (tokens === undefined) { tokens = documentTokens(text); tokenCache.set(text, tokens) }
  return tokens
}
/** How many messages hold each token (for choosing the common query words). */
const frequency = new Map<string, number>()

const heavyUsers = Math.max(1, Math.round(users / 100))
const perLight = Math.max(1, Math.round(totalRows / (users - heavyUsers + 10 * heavyUsers)))
const rowsOf = (u: number): number => u < heavyUsers ? 10 * perLight : perLight
const userId = (u: number): string => `u${u}`
const PEERS = 8
const peerOf = (u: number, k: number): string => userId((u * 7919 + k * 104_729 + 1) % users)

/** Every row of user `u`, oldest first. */
function rowsFor (u: number, start: number): ArchivedUserEvent[] {
  const owner = userId(u)
  const count = rowsOf(u)
  const rows: ArchivedUserEvent[] = []
  for (let seq = 1; seq <= count; seq++) {
    let text = random() < 0.4 ? `${pick(phrases)} ${pick(phrases)}` : pick(phrases)
    if (random() < 1 / 20_000) text += ` ${RARE}`
    const tokens = tokensOf(text)
    for (const token of tokens) frequency.set(token, (frequency.get(token) ?? 0) + 1)
    const peer = peerOf(u, Math.floor(random() * PEERS))
    const outgoing = random() < 0.5
    const ts = start + seq * 60_000
    const id = `m${u}-${seq}`
    const event = JSON.stringify({ seq, type: 'message', id, from: outgoing ? owner : peer, to: outgoing ? peer : owner, ts, body: text })
    rows.push({ owner, seq, ts, conversation: peer, kind: 'm', id, event, search: { text, tokens } })
  }
  return rows
}

// ---- the store --------------------------------------------------------------

let store: ArchiveStore
let cleanup: () => Promise<void>
let persistence: string
let dbUrl: string | undefined
let levelDir: string | undefined
if (storeKind === 'pg') {
  const name = `inboxd_bench_${randomBytes(6).toString('hex')}`
  const adminUrl = new URL(server)
  const admin = async (sql: string, params: unknown[] = []): Promise<pg.QueryResult> => {
    const client = new pg.Client({ connectionString: adminUrl.toString() })
    await client.connect()
    try { return await client.query(sql, params) } finally { await client.end() }
  }
  await admin(`CREATE DATABASE ${name}`)
  const url = new URL(server)
  url.pathname = `/${name}`
  dbUrl = url.toString()
  store = await PgArchive.open(dbUrl)
  const settings = await admin("SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'shared_buffers', 'server_version')")
  persistence = settings.rows.map((row: { name: string, setting: string }) => `${row.name}=${row.setting}`).join(', ')
  cleanup = async () => {
    await store.close()
    await admin('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [name])
    await admin(`DROP DATABASE IF EXISTS ${name}`)
  }
  process.on('SIGINT', () => { void cleanup().finally(() => process.exit(1)) })
} else {
  const dir = mkdtempSync(join(tmpdir(), 'bench-archive-'))
  levelDir = dir
  store = await LevelArchive.open(join(dir, 'archive'))
  persistence = 'LevelDB, batches without sync'
  cleanup = async () => { await store.close(); rmSync(dir, { recursive: true, force: true }) }
  process.on('SIGINT', () => { rmSync(dir, { recursive: true, force: true }); process.exit(1) })
}

let result: Record<string, unknown> = {}
try {
  // ---- load ---------------------------------------------------------------
  const loadStart = performance.now()
  const start = Date.UTC(2026, 0, 1)
  let pending: ArchivedUserEvent[] = []
  let loaded = 0
  let lastLog = performance.now()
  // PostgreSQL takes two batches at once (2 cores); LevelDB serialises its writes anyway.
  const inFlight = new Set<Promise<void>>()
  const flush = async (): Promise<void> => {
    const rows = pending
    pending = []
    const write = store.putUserEvents(rows).then(() => { inFlight.delete(write) })
    inFlight.add(write)
    if (inFlight.size >= (storeKind === 'pg' ? 2 : 1)) await Promise.race(inFlight)
    loaded += rows.length
    if (performance.now() - lastLog > 30_000) {
      lastLog = performance.now()
      log(`${loaded.toLocaleString('en-US')} rows in ${((lastLog - loadStart) / 1000).toFixed(0)} s`)
    }
  }
  for (let u = 0; u < users; u++) {
    for (const row of rowsFor(u, start)) {
      pending.push(row)
      if (pending.length >= batchSize) await flush()
    }
  }
  if (pending.length > 0) await flush()
  await Promise.all(inFlight)
  const loadSeconds = (performance.now() - loadStart) / 1000
  log(`loaded ${loaded.toLocaleString('en-US')} rows in ${loadSeconds.toFixed(0)} s`)

  let sizeMb: Record<string, number> = {}
  if (dbUrl !== undefined) {
    // As autovacuum would after a bulk load: the GIN pending list merged, statistics for the planner.
    const vacuumStart = performance.now()
    const client = new pg.Client({ connectionString: dbUrl })
    await client.connect()
    try {
      await client.query('VACUUM ANALYZE user_events')
      const { rows } = await client.query<{ name: string, mb: string }>(
        "SELECT c.relname AS name, round(pg_relation_size(c.oid) / 1048576.0) AS mb FROM pg_class c WHERE c.relname LIKE 'user_events%'")
      sizeMb = Object.fromEntries(rows.map((row) => [`${row.name}Mb`, Number(row.mb)]))
    } finally {
      await client.end()
    }
    log(`vacuum analyze ${((performance.now() - vacuumStart) / 1000).toFixed(0)} s; sizes ${JSON.stringify(sizeMb)}`)
  } else {
    sizeMb = { diskMb: Math.round(Number(execFileSync('du', ['-sm', levelDir!], { encoding: 'utf8' }).split('\t')[0])) }
  }

  // ---- queries ------------------------------------------------------------
  const search = new SearchService(store)
  // A common Latin word, a common 1-character and 2-character CJK query, English of two words, and the rare word.
  const ranked = [...frequency.entries()].sort((a, b) => b[1] - a[1])
  const latin = ranked.filter(([token]) => /^[a-z]{4,}$/.test(token)).map(([token]) => token)
  const oneCjk = ranked.find(([token]) => /^\p{scx=Han}$/u.test(token))![0]
  const twoCjk = ranked.find(([token]) => /^\p{scx=Han}{2}$/u.test(token))![0]
  const english = phrases.map((text) => /\b([a-z]{4,}) ([a-z]{4,})\b/.exec(text)?.[0]).find((q): q is string => q !== undefined && queryTokens(q).length === 2)!
  const shapes: Array<{ shape: string, q: string }> = [
    { shape: 'common word', q: latin[0]! },
    { shape: 'rare word', q: RARE },
    { shape: '1-char CJK', q: oneCjk },
    { shape: '2-char CJK word', q: twoCjk },
    { shape: 'English, two words', q: english }
  ]
  const share = (q: string): number => {
    const tokens = queryTokens(q)
    return Math.min(...tokens.map((token) => frequency.get(token) ?? 0)) / loaded
  }
  const sampleUser = (): string => userId(random() < 0.1 ? Math.floor(random() * heavyUsers) : Math.floor(random() * users))
  const time = async (fn: () => Promise<unknown>): Promise<number> => { const t = performance.now(); await fn(); return performance.now() - t }
  const stats = (ms: number[]): { p50: number, p99: number, max: number } => {
    const sorted = [...ms].sort((a, b) => a - b)
    return { p50: Number(percentile(sorted, 0.5).toFixed(2)), p99: Number(percentile(sorted, 0.99).toFixed(2)), max: Number(sorted.at(-1)!.toFixed(2)) }
  }
  // Warm-up (JIT, connections, the first pages into the cache): not counted.
  for (let i = 0; i < 50; i++) await search.search(sampleUser(), { q: pick(shapes).q, limit: 20 })

  // Three passes over the same queries (the machine is shared: a pass hit by others' load shows as
  // an outlier); each figure is the median of the passes' figures.
  const PASSES = 3
  const plans = shapes.map(() => Array.from({ length: queriesPerShape }, sampleUser))
  const passes: Array<{ all: number[], byShape: number[][], hits: number[] }> = []
  for (let pass = 0; pass < PASSES; pass++) {
    const byShapeMs = shapes.map(() => [] as number[])
    const hits = shapes.map(() => 0)
    for (let i = 0; i < queriesPerShape; i++) {
      for (let s = 0; s < shapes.length; s++) {
        const user = plans[s]![i]!
        byShapeMs[s]!.push(await time(async () => { hits[s]! += (await search.search(user, { q: shapes[s]!.q, limit: 20 })).results.length }))
      }
    }
    passes.push({ all: byShapeMs.flat(), byShape: byShapeMs, hits })
    log(`pass ${pass + 1}: p50 ${stats(byShapeMs.flat()).p50} ms, p99 ${stats(byShapeMs.flat()).p99} ms (load ${loadAverage()})`)
  }
  const med = (values: number[]): number => { const sorted = [...values].sort((a, b) => a - b); return sorted[Math.floor(sorted.length / 2)]! }
  const medianStats = (pick: (pass: typeof passes[number]) => number[]): { p50: number, p99: number, max: number } => {
    const each = passes.map((pass) => stats(pick(pass)))
    return { p50: med(each.map((e) => e.p50)), p99: med(each.map((e) => e.p99)), max: med(each.map((e) => e.max)) }
  }
  const byShape: Record<string, unknown> = {}
  let slowest = { shape: '', q: '', p99: -1 }
  shapes.forEach(({ shape, q }, s) => {
    const m = medianStats((pass) => pass.byShape[s]!)
    const hitsPerQuery = Number((passes[0]!.hits[s]! / queriesPerShape).toFixed(1))
    byShape[shape] = { q, tokens: queryTokens(q), share: Number(share(q).toFixed(5)), hitsPerQuery, ...m }
    if (m.p99 > slowest.p99) slowest = { shape, q, p99: m.p99 }
    log(`${shape} (${q}): p50 ${m.p50} ms, p99 ${m.p99} ms, ${hitsPerQuery} hits`)
  })
  const overall = medianStats((pass) => pass.all)
  const hitsTotal = passes[0]!.hits.reduce((a, b) => a + b, 0)
  const all = passes[0]!.all
  // The heavy users alone (10× the rows): the slowest shape.
  const heavyMs: number[] = []
  for (let i = 0; i < queriesPerShape; i++) {
    const user = userId(Math.floor(random() * heavyUsers))
    heavyMs.push(await time(() => search.search(user, { q: slowest.q, limit: 20 })))
  }

  // History pages: readLog of 100 from a random place; a conversation's page of 50 before a random seq (three passes too).
  const pages = Array.from({ length: queriesPerShape }, () => {
    const u = random() < 0.1 ? Math.floor(random() * heavyUsers) : Math.floor(random() * users)
    const count = rowsOf(u)
    return { owner: userId(u), after: Math.floor(random() * Math.max(1, count - 100)), before: Math.floor(random() * count) + 1, peer: peerOf(u, Math.floor(random() * PEERS)) }
  })
  const readLogPasses: number[][] = []
  const conversationPasses: number[][] = []
  let readLogRows = 0
  let conversationRows = 0
  for (let pass = 0; pass < PASSES; pass++) {
    const readLogMs: number[] = []
    const conversationMs: number[] = []
    for (const { owner, after, before, peer } of pages) {
      readLogMs.push(await time(async () => { readLogRows += (await store.readLog(owner, after, 100)).length }))
      conversationMs.push(await time(async () => { conversationRows += (await store.conversation(owner, peer, { before, limit: 50 })).events.length }))
    }
    readLogPasses.push(readLogMs)
    conversationPasses.push(conversationMs)
  }
  const readLog = { p50: med(readLogPasses.map((ms) => stats(ms).p50)), p99: med(readLogPasses.map((ms) => stats(ms).p99)) }
  const conversation = { p50: med(conversationPasses.map((ms) => stats(ms).p50)), p99: med(conversationPasses.map((ms) => stats(ms).p99)) }
  readLogRows /= PASSES
  conversationRows /= PASSES

  let plan: string | undefined
  if (store instanceof PgArchive) {
    const user = userId(0) // a heavy user
    plan = await store.explainSearch(user, { tokens: queryTokens(slowest.q), limit: 20 })
    log(`EXPLAIN of ${slowest.shape} for ${user}:\n${plan}`)
  }

  result = {
    store: storeKind,
    persistence,
    rows: loaded,
    users,
    heavyUsers,
    rowsPerUser: perLight,
    rowsPerHeavyUser: 10 * perLight,
    loadSeconds: Number(loadSeconds.toFixed(1)),
    rowsPerSecond: Math.round(loaded / loadSeconds),
    ...sizeMb,
    queries: all.length,
    passes: PASSES,
    searchP50: overall.p50,
    searchP99: overall.p99,
    searchMax: overall.max,
    queryLoad: loadAverage(),
    hitsPerQuery: Number((hitsTotal / all.length).toFixed(1)),
    slowestShape: slowest.shape,
    heavyP50: stats(heavyMs).p50,
    heavyP99: stats(heavyMs).p99,
    readLogP50: readLog.p50,
    readLogP99: readLog.p99,
    readLogRows: Number((readLogRows / queriesPerShape).toFixed(1)),
    conversationP50: conversation.p50,
    conversationP99: conversation.p99,
    conversationRows: Number((conversationRows / queriesPerShape).toFixed(1)),
    byShape,
    ...(plan === undefined ? {} : { plan })
  }
} finally {
  await cleanup()
}
report(result)
