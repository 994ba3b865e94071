// The archive's schema on PostgreSQL (archive/migrations/, archive/pg-migrate.ts):
// applied on an empty database, a no-op the second time, safe when two
// processes start at once, and `npm run migrate` as an operator runs it (a real
// process, DATABASE_URL). Each test has a database of its own.
import t, { type Test } from 'tap'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import pg from 'pg'
import type { ArchivedUserEvent } from '../archive/archive-store.ts'
import { runner } from 'node-pg-migrate'
import { migrateArchive, MIGRATIONS_DIR, MIGRATIONS_TABLE } from '../archive/pg-migrate.ts'
import { PgArchive } from '../archive/pg-archive.ts'
import { createTestDatabase, type TestDatabase } from './helpers/postgres.ts'

const run = promisify(execFile)
/** Every migration, in order. */
const ALL = ['0001_archive-tables', '0002_gin-pending-lists']

async function database (t: Test): Promise<TestDatabase> {
  const db = await createTestDatabase()
  t.teardown(() => db.drop())
  return db
}


async function query<R extends pg.QueryResultRow> (url: string, sql: string, params: unknown[] = []): Promise<R[]> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return (await client.query<R>(sql, params)).rows
  } finally {
    await client.end()
  }
}

/** Tables, columns, indexes and extensions, as the catalog has them. */
async function schemaOf (url: string): Promise<unknown> {
  return {
    columns: await query(url, `SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns
      WHERE table_schema = 'public' ORDER BY table_name, ordinal_position`),
    indexes: await query(url, `SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY indexname`),
    extensions: await query(url, 'SELECT extname FROM pg_extension ORDER BY extname')
  }
}

t.test('migrations apply on an empty database, and a second run is a no-op', async (t) => {
  const db = await database(t)
  t.same(await migrateArchive(db.url), ALL)
  const schema = await schemaOf(db.url) as { columns: Array<{ table_name: string, column_name: string }>, indexes: Array<{ indexname: string }>, extensions: Array<{ extname: string }> }
  const columns = (table: string): string[] => schema.columns.filter((c) => c.table_name === table).map((c) => c.column_name)
  t.same(columns('user_events'), ['owner', 'seq', 'ts', 'conversation', 'kind', 'id', 'event', 'ref_group', 'ref_gseq', 'search_text', 'tokens'])
  t.same(columns('group_events'), ['group_id', 'gseq', 'ts', 'kind', 'from', 'id', 'tail', 'search_text', 'tokens'])
  t.same(schema.indexes.map((index) => index.indexname), [
    'archive_migrations_pkey', 'group_events_pkey', 'group_events_search', 'group_events_ts',
    'user_events_conversation', 'user_events_pkey', 'user_events_refs', 'user_events_search', 'user_events_ts'
  ])
  t.ok(schema.extensions.some((e) => e.extname === 'btree_gin'), 'btree_gin, for (owner, tokens) in one GIN index')
  t.same((await query<{ name: string }>(db.url, `SELECT name FROM ${MIGRATIONS_TABLE} ORDER BY run_on, id`)).map((row) => row.name), ALL, 'recorded, in order')
  const options = await query<{ relname: string, reloptions: string[] }>(db.url, "SELECT relname, reloptions FROM pg_class WHERE relname LIKE '%_events_search' ORDER BY relname")
  t.same(options, [{ relname: 'group_events_search', reloptions: ['gin_pending_list_limit=256'] }, { relname: 'user_events_search', reloptions: ['gin_pending_list_limit=256'] }], 'small pending lists (0002)')

  t.same(await migrateArchive(db.url), [], 'nothing pending the second time')
  t.same(await schemaOf(db.url), schema, 'and nothing changed')
})

t.test('a database migrated by an older version gets only what it lacks', async (t) => {
  const db = await database(t)
  const quiet = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} }
  await runner({ databaseUrl: db.url, dir: MIGRATIONS_DIR, migrationsTable: MIGRATIONS_TABLE, direction: 'up', count: 1, logger: quiet })
  const store = await PgArchive.open(db.url, { migrate: false })
  await store.putUserEvents([{ owner: 'al', seq: 1, ts: 1, conversation: 'bob', kind: 'm', event: '{"seq":1}', search: { text: 'hi', tokens: ['hi'] } }])
  await store.close()
  t.same(await migrateArchive(db.url), ALL.slice(1), 'the pending ones only')
  const upgraded = await PgArchive.open(db.url)
  t.same((await upgraded.search('al', { tokens: ['hi'], limit: 5 })).hits.map((hit) => hit.seq), [1], 'rows written before are still there and found')
  await upgraded.close()
})

t.test('two processes starting at once: one migrates, the other waits, both open', async (t) => {
  const db = await database(t)
  const [first, second] = await Promise.all([migrateArchive(db.url), migrateArchive(db.url)])
  t.same([...first!, ...second!], ALL, 'each migration ran once')
  const stores = await Promise.all([PgArchive.open(db.url), PgArchive.open(db.url)])
  for (const store of stores) t.equal(await store.archivedSeq('nobody'), 0)
  await Promise.all(stores.map((store) => store.close()))
})

t.test('PgArchive.open migrates an empty database first (unless told not to)', async (t) => {
  const db = await database(t)
  const bare = await PgArchive.open(db.url, { migrate: false })
  await t.rejects(bare.archivedSeq('al'), /user_events/, 'no tables yet')
  await bare.close()
  const store = await PgArchive.open(db.url)
  await store.putUserEvents([{ owner: 'al', seq: 1, ts: 1, conversation: 'bob', kind: 'm', event: '{"seq":1}' }])
  t.equal(await store.archivedSeq('al'), 1)
  await store.close()
})

t.test('npm run migrate: a real process with DATABASE_URL', async (t) => {
  const db = await database(t)
  const env = { ...process.env, DATABASE_URL: db.url }
  const first = await run('npm', ['run', '--silent', 'migrate'], { env, cwd: process.cwd() })
  t.match(first.stdout, `applied: ${ALL.join(', ')}`)
  t.same((await query<{ name: string }>(db.url, `SELECT name FROM ${MIGRATIONS_TABLE} ORDER BY run_on, id`)).map((row) => row.name), ALL)
  const second = await run('npm', ['run', '--silent', 'migrate'], { env, cwd: process.cwd() })
  t.match(second.stdout, /up to date/)

  const { DATABASE_URL: _unset, ...without } = env
  await t.rejects(run('npm', ['run', '--silent', 'migrate'], { env: without, cwd: process.cwd() }), { code: 1, stderr: /usage: DATABASE_URL=/ }, 'no DATABASE_URL: usage, exit 1')
  const unreachable = new URL(db.url)
  unreachable.port = '1'
  await t.rejects(run('npm', ['run', '--silent', 'migrate'], { env: { ...env, DATABASE_URL: unreachable.toString() }, cwd: process.cwd() }), { code: 1, stderr: /migration failed/ }, 'a database it cannot reach: exit 1')
})

t.test('a user\'s search reads the GIN index over (owner, tokens)', async (t) => {
  const db = await database(t)
  const store = await PgArchive.open(db.url)
  t.teardown(() => store.close())
  // Many users; one with a long history, where reading their rows one by one would cost.
  const rows: ArchivedUserEvent[] = []
  for (let i = 0; i < 30_000; i++) {
    const owner = i < 20_000 ? 'heavy' : `u${i % 500}`
    const seq = i + 1
    const tokens = [`w${i % 50}`, ...(i % 1_000 === 0 ? ['rare'] : [])]
    rows.push({ owner, seq, ts: seq, conversation: `p${i % 20}`, kind: 'm', event: `{"seq":${seq}}`, search: { text: tokens.join(' '), tokens } })
  }
  for (let i = 0; i < rows.length; i += 5_000) await store.putUserEvents(rows.slice(i, i + 5_000))
  await query(db.url, 'ANALYZE user_events')
  const plan = await store.explainSearch('heavy', { tokens: ['rare'], limit: 20 })
  t.match(plan, /user_events_search/, 'the search index')
  t.match(plan, /Index Cond: \(\(owner = 'heavy'::text\) AND \(tokens @> '\{rare\}'::text\[\]\)\)/, 'owner and tokens both in its condition')
  t.equal((await store.search('heavy', { tokens: ['rare'], limit: 100 })).hits.length, 20)
})
