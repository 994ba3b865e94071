// Which text search for #21, measured: `npx tsx bench/search-corpus.ts`.
// Loads test/fixtures/search-corpus.json into a database of its own on the
// real PostgreSQL (inboxd_corpus_<random>, dropped at the end; DATABASE_URL's
// server, default postgres@127.0.0.1:5432) and runs the corpus's queries
// through each approach, counting hits against the fixture's expected ones:
//   (a)  our tokens (search/tokenize.ts) in a text[] column, GIN, `tokens @> $q`
//   (a') the same without the stemmer
//   (b)  pg_trgm: every whitespace-separated term `text ILIKE '%term%'`, GIN gin_trgm_ops
//   (c)  Mattermost-style to_tsvector('english') @@ plainto_tsquery('english', q)
//   (c') Synapse-style prefix query: to_tsquery('english', 'w1:* & w2:*')
//   (d)  to_tsvector('simple') @@ plainto_tsquery('simple', q)
// Then EXPLAIN ANALYZE of trigram queries of 1, 2 and 3+ characters (does the
// index help?), the same corpus copied BENCH_SCALE times for index sizes and
// query times, and the tokenizer's cost (µs per message, jieba's load time).
// Prints markdown on stdout.
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import pg from 'pg'
import { documentTokens, queryTokens, MAX_DOC_TOKENS, MAX_TEXT_CHARS, type TokenOptions } from '../search/tokenize.ts'
import { searchableText } from '../search/searchable-text.ts'
import { loadJieba } from '../search/jieba.ts'

interface Query { q: string, expected: string[] }
const corpus = JSON.parse(readFileSync(new URL('../test/fixtures/search-corpus.json', import.meta.url), 'utf8')) as { messages: Array<{ id: string, body: unknown }>, queries: Query[] }
const SCALE = Number(process.env.BENCH_SCALE ?? 100)
const server = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'

// --- the tokenizer's cost, first, in a process that has not loaded jieba yet ---
const texts = corpus.messages.flatMap((m) => { const text = searchableText(m.body); return text === undefined ? [] : [{ id: m.id, text }] })
let t0 = performance.now()
loadJieba()
const jiebaLoadMs = performance.now() - t0
function usPerMessage (options: TokenOptions): number {
  for (const { text } of texts) documentTokens(text, options) // warm
  // The best of 5 batches: the machine is shared, and other load only ever adds.
  let best = Infinity
  for (let batch = 0; batch < 5; batch++) {
    t0 = performance.now()
    for (let r = 0; r < 10; r++) for (const { text } of texts) documentTokens(text, options)
    best = Math.min(best, (performance.now() - t0) * 1000 / (10 * texts.length))
  }
  return best
}
const usDoc = usPerMessage({})
const usDocNoJieba = usPerMessage({ jiebaWords: false })
t0 = performance.now()
for (let r = 0; r < 200; r++) for (const q of corpus.queries) queryTokens(q.q)
const usQuery = (performance.now() - t0) * 1000 / (200 * corpus.queries.length)
const tokenCounts = texts.map(({ text }) => documentTokens(text).length).sort((a, b) => a - b)
const jiebaCounts = texts.map(({ text }) => documentTokens(text).length - documentTokens(text, { jiebaWords: false }).length)

const dbName = `inboxd_corpus_${randomBytes(6).toString('hex')}`
const admin = new pg.Client({ connectionString: server })
await admin.connect()
await admin.query(`CREATE DATABASE ${dbName}`)
const url = new URL(server)
url.pathname = `/${dbName}`
const db = new pg.Client({ connectionString: url.toString() })
try {
  await db.connect()
  await db.query('CREATE EXTENSION pg_trgm')
  await db.query('CREATE TABLE msgs (id text PRIMARY KEY, text text NOT NULL, tokens text[] NOT NULL, tokens_nostem text[] NOT NULL)')
  async function load (suffix: (copy: number) => string, copies: number): Promise<void> {
    const docs = texts.map(({ id, text }) => ({ id, text, tokens: documentTokens(text), nostem: documentTokens(text, { stem: false }) }))
    for (let c = 0; c < copies; c++) {
      await db.query(`INSERT INTO msgs SELECT * FROM unnest($1::text[], $2::text[]) AS t(id, text),
        LATERAL (SELECT string_to_array(x, chr(1)) FROM unnest($3::text[]) WITH ORDINALITY AS a(x, n) WHERE n = t.ordinality) AS s(tokens),
        LATERAL (SELECT string_to_array(x, chr(1)) FROM unnest($4::text[]) WITH ORDINALITY AS a(x, n) WHERE n = t.ordinality) AS s2(nostem)`.replace('AS t(id, text)', 'WITH ORDINALITY AS t(id, text, ordinality)').replace('SELECT *', 'SELECT t.id, t.text, s.tokens, s2.nostem'),
      [docs.map((d) => d.id + suffix(c)), docs.map((d) => d.text), docs.map((d) => d.tokens.join('\u0001')), docs.map((d) => d.nostem.join('\u0001'))])
    }
  }
  await load(() => '', 1)
  await db.query('CREATE INDEX msgs_tokens ON msgs USING gin (tokens)')
  await db.query('CREATE INDEX msgs_tokens_nostem ON msgs USING gin (tokens_nostem)')
  await db.query('CREATE INDEX msgs_trgm ON msgs USING gin (text gin_trgm_ops)')
  await db.query("CREATE INDEX msgs_english ON msgs USING gin (to_tsvector('english', text))")
  await db.query("CREATE INDEX msgs_simple ON msgs USING gin (to_tsvector('simple', text))")
  await db.query('ANALYZE msgs')

  const likeTerm = (term: string): string => '%' + term.replace(/[\\%_]/g, '\\$&') + '%'
  const prefixQuery = (q: string): string => q.split(/\s+/).filter((w) => w !== '').map((w) => `'${w.replaceAll("'", "''").replaceAll('\\', '\\\\')}':*`).join(' & ')
  type Approach = { name: string, index: string, run: (q: string) => Promise<string[]> }
  const ids = async (sql: string, params: unknown[]): Promise<string[]> => (await db.query<{ id: string }>(sql, params)).rows.map((r) => r.id)
  const approaches: Approach[] = [
    { name: '(a) our tokens, `tokens @> $q` (GIN)', index: 'msgs_tokens', run: async (q) => { const t = queryTokens(q); return t.length === 0 ? [] : await ids('SELECT id FROM msgs WHERE tokens @> $1', [t]) } },
    { name: "(a') our tokens without the stemmer", index: 'msgs_tokens_nostem', run: async (q) => { const t = queryTokens(q, { stem: false }); return t.length === 0 ? [] : await ids('SELECT id FROM msgs WHERE tokens_nostem @> $1', [t]) } },
    { name: "(b) pg_trgm, each term `ILIKE '%term%'` (GIN)", index: 'msgs_trgm', run: async (q) => { const terms = q.split(/\s+/).filter((w) => w !== ''); return await ids(`SELECT id FROM msgs WHERE ${terms.map((_, i) => `text ILIKE $${i + 1}`).join(' AND ')}`, terms.map(likeTerm)) } },
    { name: "(c) `to_tsvector('english') @@ plainto_tsquery` (Mattermost)", index: 'msgs_english', run: async (q) => await ids("SELECT id FROM msgs WHERE to_tsvector('english', text) @@ plainto_tsquery('english', $1)", [q]) },
    { name: "(c') `to_tsquery('english', 'w:* & …')` (Synapse's prefixes)", index: 'msgs_english', run: async (q) => await ids("SELECT id FROM msgs WHERE to_tsvector('english', text) @@ to_tsquery('english', $1)", [prefixQuery(q)]) },
    { name: "(d) `to_tsvector('simple') @@ plainto_tsquery('simple')`", index: 'msgs_simple', run: async (q) => await ids("SELECT id FROM msgs WHERE to_tsvector('simple', text) @@ plainto_tsquery('simple', $1)", [q]) }
  ]

  // --- recall and precision on the corpus ---
  const out: string[] = []
  out.push(`Corpus: ${texts.length} searchable messages of ${corpus.messages.length} (encrypted and text-less bodies are never indexed), ${corpus.queries.length} queries, ${corpus.queries.reduce((n, q) => n + q.expected.length, 0)} expected hits; PostgreSQL ${(await db.query<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0]!.v}, lc_ctype ${(await db.query<{ v: string }>("SELECT current_setting('lc_ctype') AS v")).rows[0]!.v}.`, '')
  out.push('| approach | recall | precision | queries exactly right | wrong queries (missed / wrong hits) |', '|---|---|---|---|---|')
  const failures = new Map<string, string[]>()
  const NAMED = ['上海', '鈴虫', 'バッタ', '猫', '用 React 写', 'カタカナ', '권리', 'Messages', 'deployed', 'bug', 'order-8842', 'v2.3.1', '13800138000', '👍', '❤️', '上海东']
  const named = new Map<string, string[]>(NAMED.map((q) => [q, []]))
  for (const a of approaches) {
    let expected = 0, found = 0, returned = 0, exact = 0
    const wrong: string[] = []
    for (const q of corpus.queries) {
      let hits: string[]
      try { hits = await a.run(q.q) } catch (err) { hits = []; wrong.push(`${q.q} (error: ${(err as Error).message})`); continue }
      const want = new Set(q.expected)
      const good = hits.filter((id) => want.has(id)).length
      expected += want.size; found += good; returned += hits.length
      named.get(q.q)?.push(`${good}/${want.size}${hits.length > good ? ` +${hits.length - good}` : ''}`)
      if (good === want.size && hits.length === want.size) exact++
      else wrong.push(`${q.q} (${want.size - good}/${hits.length - good})`)
    }
    failures.set(a.name, wrong)
    out.push(`| ${a.name} | ${(100 * found / expected).toFixed(1)}% (${found}/${expected}) | ${returned === 0 ? '–' : (100 * found / returned).toFixed(1) + '%'} (${found}/${returned}) | ${exact}/${corpus.queries.length} | ${wrong.length <= 12 ? wrong.join(', ') : wrong.slice(0, 12).join(', ') + `, … ${wrong.length - 12} more`} |`)
  }

  out.push('', 'Some queries: expected hits found / expected (+ wrong hits).', '')
  out.push(`| query | ${approaches.map((a) => a.name.slice(0, a.name.indexOf(')') + 1)).join(' | ')} |`, `|---|${approaches.map(() => '---').join('|')}|`)
  for (const [q, cells] of named) out.push(`| ${q} | ${cells.join(' | ')} |`)

  // --- does the trigram index help short queries? ---
  out.push('', 'pg_trgm plans (EXPLAIN ANALYZE, enable_seqscan off so the planner shows what the index can do; rows the index returned that the recheck threw away):', '')
  out.push('| pattern | plan | rows found | removed by recheck |', '|---|---|---|---|')
  await db.query('SET enable_seqscan = off')
  for (const term of ['猫', '上海', '南京市', 'react', 'ok']) {
    const plan = (await db.query<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> }>('EXPLAIN (ANALYZE, FORMAT JSON) SELECT id FROM msgs WHERE text ILIKE $1', [likeTerm(term)])).rows[0]!['QUERY PLAN'][0]!.Plan
    const nodes: PlanNode[] = []
    const walk = (n: PlanNode): void => { nodes.push(n); for (const c of n.Plans ?? []) walk(c) }
    walk(plan)
    const recheck = nodes.reduce((s, n) => s + (n['Rows Removed by Index Recheck'] ?? 0), 0)
    out.push(`| \`%${term}%\` (${[...term].length} char) | ${nodes.map((n) => n['Node Type'] + (n['Index Name'] !== undefined ? ` on ${n['Index Name']}` : '')).join(' → ')} | ${plan['Actual Rows']} | ${recheck} of ${texts.length} |`)
  }
  await db.query('RESET enable_seqscan')

  // --- scaled: sizes and query times ---
  await load((c) => `#${c + 1}`, SCALE - 1)
  await db.query('VACUUM ANALYZE msgs')
  const rows = (await db.query<{ n: string }>('SELECT count(*) AS n FROM msgs')).rows[0]!.n
  out.push('', `The corpus copied ${SCALE} times (${rows} rows): index size and the median time of the corpus's queries (the planner choosing; 3 runs each, warm cache).`, '')
  out.push('| approach | index size | median query | slowest query |', '|---|---|---|---|')
  for (const a of approaches) {
    const size = (await db.query<{ s: string }>('SELECT pg_size_pretty(pg_relation_size($1::regclass)) AS s', [a.index])).rows[0]!.s
    const times: Array<[number, string]> = []
    for (const q of corpus.queries) {
      const runs: number[] = []
      for (let i = 0; i < 3; i++) { const s = performance.now(); try { await a.run(q.q) } catch {} runs.push(performance.now() - s) }
      times.push([runs.sort((x, y) => x - y)[1]!, q.q])
    }
    times.sort((x, y) => x[0] - y[0])
    const median = times[times.length >> 1]![0]
    const [slow, slowQ] = times[times.length - 1]!
    out.push(`| ${a.name} | ${size} | ${median.toFixed(2)} ms | ${slow.toFixed(2)} ms (${slowQ}) |`)
  }
  const table = (await db.query<{ s: string }>("SELECT pg_size_pretty(pg_table_size('msgs')) AS s")).rows[0]!.s
  out.push('', `(table with both token columns: ${table})`)

  out.push('', 'Tokenizer (search/tokenize.ts, this machine, one core; best of 5 batches):', '')
  out.push('| what | figure |', '|---|---|')
  out.push(`| jieba's dictionary load (first use, once per process) | ${jiebaLoadMs.toFixed(0)} ms |`)
  out.push(`| documentTokens, mean over the corpus | ${usDoc.toFixed(1)} µs per message |`)
  out.push(`| … without jieba's words | ${usDocNoJieba.toFixed(1)} µs per message |`)
  out.push(`| queryTokens | ${usQuery.toFixed(1)} µs per query |`)
  out.push(`| tokens per message: median / p90 / max | ${tokenCounts[tokenCounts.length >> 1]} / ${tokenCounts[Math.floor(tokenCounts.length * 0.9)]} / ${tokenCounts[tokenCounts.length - 1]} (bound: ${MAX_DOC_TOKENS} from the first ${MAX_TEXT_CHARS} characters) |`)
  out.push(`| jieba's words among them | ${jiebaCounts.reduce((s, n) => s + n, 0)} of ${tokenCounts.reduce((s, n) => s + n, 0)} |`)
  console.log(out.join('\n'))
  if (process.env.BENCH_VERBOSE === '1') for (const [name, wrong] of failures) console.error(name, '\n  ' + wrong.join('\n  '))
} finally {
  await db.end().catch(() => {})
  await admin.query(`DROP DATABASE IF EXISTS ${dbName}`)
  await admin.end()
}

interface PlanNode { 'Node Type': string, 'Index Name'?: string, 'Actual Rows': number, 'Rows Removed by Index Recheck'?: number, Plans?: PlanNode[] }
