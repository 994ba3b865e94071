// The archive on PostgreSQL (DATABASE_URL): two tables, user_events and
// group_events (archive/migrations/), written in one multi-row statement per
// batch and idempotent through their primary keys. A member's log holds a
// reference to a group event, never a copy; reads join it back.
//
// Search is a GIN index over (owner, tokens) and (group_id, tokens) (btree_gin):
// the owner's own rows holding every token, and the group rows holding them that
// the owner's log references, newest first by the owner's seq. A recall clears
// a row's tokens, so it leaves the index in the same statement.
import pg from 'pg'
import type { LogEntry } from '../history/history-store.ts'
import type { ArchivedGroupEvent, ArchivedUserEvent, ArchiveStore, SearchDoc, SearchHit, SearchQuery } from './archive-store.ts'
import { migrateArchive } from './pg-migrate.ts'

export interface PgArchiveOptions {
  /** Apply pending migrations before opening (default true). */
  migrate?: boolean
  /** Connections in the pool (default 10). */
  max?: number
}

const withSeq = (seq: number, tail: string): string => `{"seq":${seq},${tail}`

interface LogRow { seq: string, ts: string, event: string | null, tail: string | null }

/** A user row as read back: its own JSON, or its group event resolved (null if that is gone). */
function resolved (row: LogRow): string | undefined {
  if (row.event !== null) return row.event
  return row.tail === null ? undefined : withSeq(Number(row.seq), row.tail)
}

const LOG_COLUMNS = 'u.seq, u.ts, u.event, g.tail'
const RESOLVE_JOIN = 'LEFT JOIN group_events g ON u.ref_group IS NOT NULL AND g.group_id = u.ref_group AND g.gseq = u.ref_gseq'

export class PgArchive implements ArchiveStore {
  readonly #pool: pg.Pool

  private constructor (pool: pg.Pool) {
    this.#pool = pool
  }

  static async open (databaseUrl: string, options: PgArchiveOptions = {}): Promise<PgArchive> {
    if (options.migrate ?? true) await migrateArchive(databaseUrl)
    const pool = new pg.Pool({ connectionString: databaseUrl, max: options.max ?? 10 })
    // An idle connection the server dropped: the next query opens another.
    pool.on('error', () => {})
    return new PgArchive(pool)
  }

  // A batch travels as one JSON parameter, unpacked by json_to_recordset: JSON.stringify is native,
  // where pg's escaping of eleven parameter arrays cost the archiver about 40 µs of CPU per row
  // (bench/OPTIMISATIONS.md, round 7).
  async putUserEvents (rows: ArchivedUserEvent[]): Promise<void> {
    if (rows.length === 0) return
    const records = rows.map((row) => {
      const ref = typeof row.event === 'string' ? undefined : row.event
      // A reference's doc is its group row's: the owner's own columns stay empty.
      const doc = ref === undefined ? row.search : undefined
      return {
        owner: row.owner,
        seq: row.seq,
        ts: row.ts,
        conversation: row.conversation,
        kind: row.kind,
        id: row.id ?? null,
        event: typeof row.event === 'string' ? row.event : null,
        ref_group: ref?.group ?? null,
        ref_gseq: ref?.gseq ?? null,
        search_text: doc?.text ?? null,
        tokens: doc === undefined ? null : [...new Set(doc.tokens)]
      }
    })
    await this.#pool.query(
      `INSERT INTO user_events (owner, seq, ts, conversation, kind, id, event, ref_group, ref_gseq, search_text, tokens)
       SELECT owner, seq, ts, conversation, kind, id, event, ref_group, ref_gseq, search_text, tokens
       FROM json_to_recordset($1::json)
         AS r(owner text, seq int8, ts int8, conversation text, kind text, id text, event text, ref_group text, ref_gseq int8, search_text text, tokens text[])
       ON CONFLICT DO NOTHING`,
      [JSON.stringify(records)]
    )
  }

  async putGroupEvents (rows: ArchivedGroupEvent[]): Promise<void> {
    if (rows.length === 0) return
    const records = rows.map((row) => ({
      group_id: row.group,
      gseq: row.gseq,
      ts: row.ts,
      kind: row.kind,
      from: row.from,
      id: row.id ?? null,
      tail: row.tail,
      search_text: row.search?.text ?? null,
      tokens: row.search === undefined ? null : [...new Set(row.search.tokens)]
    }))
    await this.#pool.query(
      `INSERT INTO group_events (group_id, gseq, ts, kind, "from", id, tail, search_text, tokens)
       SELECT group_id, gseq, ts, kind, "from", id, tail, search_text, tokens
       FROM json_to_recordset($1::json)
         AS r(group_id text, gseq int8, ts int8, kind text, "from" text, id text, tail text, search_text text, tokens text[])
       ON CONFLICT DO NOTHING`,
      [JSON.stringify(records)]
    )
  }

  async replaceUserEvent (owner: string, seq: number, event: string, search?: SearchDoc): Promise<void> {
    // The row now holds its own JSON (a reference stops being one).
    await this.#pool.query(
      'UPDATE user_events SET event = $3, ref_group = NULL, ref_gseq = NULL, search_text = $4, tokens = $5 WHERE owner = $1 AND seq = $2',
      [owner, seq, event, search?.text ?? null, search === undefined ? null : [...new Set(search.tokens)]]
    )
  }

  async replaceGroupEvent (group: string, gseq: number, tail: string, search?: SearchDoc): Promise<void> {
    await this.#pool.query('UPDATE group_events SET tail = $3, search_text = $4, tokens = $5 WHERE group_id = $1 AND gseq = $2',
      [group, gseq, tail, search?.text ?? null, search === undefined ? null : [...new Set(search.tokens)]])
  }

  async readLog (owner: string, after: number, limit: number): Promise<LogEntry[]> {
    const { rows } = await this.#pool.query<LogRow>(
      `SELECT ${LOG_COLUMNS} FROM user_events u ${RESOLVE_JOIN} WHERE u.owner = $1 AND u.seq > $2 ORDER BY u.seq LIMIT $3`,
      [owner, after, limit]
    )
    return rows.map((row) => ({ seq: Number(row.seq), ts: Number(row.ts), event: resolved(row) }))
  }

  async conversation (owner: string, conversation: string, range: { before?: number, after?: number, limit: number }): Promise<{ events: string[], hasMore: boolean }> {
    const forward = range.after !== undefined
    const params: unknown[] = [owner, conversation, range.limit + 1]
    const bounds: string[] = []
    if (range.after !== undefined) bounds.push(`u.seq > $${params.push(range.after)}`)
    if (range.before !== undefined) bounds.push(`u.seq < $${params.push(range.before)}`)
    const { rows } = await this.#pool.query<LogRow>(
      `SELECT ${LOG_COLUMNS} FROM user_events u ${RESOLVE_JOIN}
       WHERE u.owner = $1 AND u.conversation = $2 AND u.kind = 'm' ${bounds.map((bound) => `AND ${bound}`).join(' ')}
       ORDER BY u.seq ${forward ? 'ASC' : 'DESC'} LIMIT $3`,
      params
    )
    const page = rows.slice(0, range.limit)
    if (!forward) page.reverse()
    // A message whose group event is gone is passed over, as the hot log does.
    return { events: page.flatMap((row) => resolved(row) ?? []), hasMore: rows.length > range.limit }
  }

  async groupEvents (group: string, range: { fromGseq: number, before?: number, after?: number, limit: number }): Promise<{ tails: string[], hasMore: boolean }> {
    const forward = range.after !== undefined
    const params: unknown[] = [group, range.fromGseq, range.limit + 1]
    const bounds: string[] = []
    if (range.after !== undefined) bounds.push(`gseq > $${params.push(range.after)}`)
    if (range.before !== undefined) bounds.push(`gseq < $${params.push(range.before)}`)
    const { rows } = await this.#pool.query<{ tail: string }>(
      `SELECT tail FROM group_events WHERE group_id = $1 AND gseq >= $2 ${bounds.map((bound) => `AND ${bound}`).join(' ')}
       ORDER BY gseq ${forward ? 'ASC' : 'DESC'} LIMIT $3`,
      params
    )
    const page = rows.slice(0, range.limit)
    if (!forward) page.reverse()
    return { tails: page.map((row) => row.tail), hasMore: rows.length > range.limit }
  }

  async archivedSeq (owner: string): Promise<number> {
    const { rows } = await this.#pool.query<{ seq: string | null }>('SELECT max(seq) AS seq FROM user_events WHERE owner = $1', [owner])
    return Number(rows[0]?.seq ?? 0)
  }

  async archivedGseq (group: string): Promise<number> {
    const { rows } = await this.#pool.query<{ gseq: string | null }>('SELECT max(gseq) AS gseq FROM group_events WHERE group_id = $1', [group])
    return Number(rows[0]?.gseq ?? 0)
  }

  async search (owner: string, query: SearchQuery): Promise<{ hits: SearchHit[], hasMore: boolean }> {
    const tokens = [...new Set(query.tokens)]
    if (tokens.length === 0 || query.limit <= 0) return { hits: [], hasMore: false }
    const { sql, params } = searchSql(owner, tokens, query)
    const { rows } = await this.#pool.query<SearchRow>(sql, params)
    const hits = rows.slice(0, query.limit).map((row): SearchHit => {
      const seq = Number(row.seq)
      const hit: SearchHit = { seq, ts: Number(row.ts), conversation: row.conversation, event: row.event ?? withSeq(seq, row.tail!), text: row.search_text }
      if (row.group_id !== null) { hit.group = row.group_id; hit.gseq = Number(row.gseq) }
      return hit
    })
    return { hits, hasMore: rows.length > query.limit }
  }

  async deleteUser (owner: string): Promise<void> {
    await this.#pool.query('DELETE FROM user_events WHERE owner = $1', [owner])
  }

  async deleteGroup (group: string): Promise<void> {
    await this.#pool.query('DELETE FROM group_events WHERE group_id = $1', [group])
  }

  async trim (beforeTs: number, limit: number): Promise<number> {
    // Oldest first, user rows before group rows (the LevelDB archive does the same).
    let removed = 0
    for (const table of ['user_events', 'group_events']) {
      if (removed >= limit) break
      const result = await this.#pool.query(
        `DELETE FROM ${table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM ${table} WHERE ts < $1 ORDER BY ts LIMIT $2))`,
        [beforeTs, limit - removed]
      )
      removed += result.rowCount ?? 0
    }
    return removed
  }

  /** The plan of a search, for measuring (EXPLAIN ANALYZE). */
  async explainSearch (owner: string, query: SearchQuery): Promise<string> {
    const { sql, params } = searchSql(owner, [...new Set(query.tokens)], query)
    const { rows } = await this.#pool.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, BUFFERS) ${sql}`, params)
    return rows.map((row) => row['QUERY PLAN']).join('\n')
  }

  async close (): Promise<void> {
    await this.#pool.end()
  }
}

interface SearchRow {
  seq: string
  ts: string
  conversation: string
  group_id: string | null
  gseq: string | null
  event: string | null
  tail: string | null
  search_text: string
}

/**
 * The owner's 1:1 rows holding every token, and the group rows holding them
 * that the owner's log references (a group hit's seq and conversation are its
 * reference's), newest first by the owner's seq; limit + 1 rows (hasMore).
 * The owner's groups are found by a skip scan over their references (one
 * index probe per group, not one per reference).
 */
function searchSql (owner: string, tokens: string[], query: SearchQuery): { sql: string, params: unknown[] } {
  const params: unknown[] = [owner, tokens, query.limit + 1]
  const own: string[] = []
  const ref: string[] = []
  if (query.beforeSeq !== undefined) {
    const p = `$${params.push(query.beforeSeq)}`
    own.push(`u.seq < ${p}`)
    ref.push(`u.seq < ${p}`)
  }
  let groups = `WITH RECURSIVE groups (id) AS (
      (SELECT ref_group FROM user_events WHERE owner = $1 AND ref_group IS NOT NULL ORDER BY ref_group LIMIT 1)
      UNION ALL
      SELECT (SELECT ref_group FROM user_events WHERE owner = $1 AND ref_group > groups.id ORDER BY ref_group LIMIT 1)
      FROM groups WHERE groups.id IS NOT NULL
    )`
  if (query.conversation !== undefined) {
    const p = `$${params.push(query.conversation)}`
    own.push(`u.conversation = ${p}`)
    ref.push(`u.conversation = ${p}`)
    // A group's conversation: only that group's rows are read.
    if (query.conversation.startsWith('g:')) groups = `WITH groups (id) AS (SELECT $${params.push(query.conversation.slice(2))}::text)`
  }
  const and = (conditions: string[]): string => conditions.map((condition) => ` AND ${condition}`).join('')
  // Per group, its newest hits only: the LIMIT keeps the subquery apart, so it
  // runs once per group with the group in the GIN condition (joined freely,
  // the planner scanned every group's postings of the token, or the index once
  // per reference). The newest limit + 1 overall are among them.
  const sql = `${groups}
    SELECT * FROM (
      SELECT u.seq, u.ts, u.conversation, NULL::text AS group_id, NULL::bigint AS gseq, u.event, NULL::text AS tail, u.search_text
      FROM user_events u
      WHERE u.owner = $1 AND u.tokens @> $2::text[]${and(own)}
      UNION ALL
      SELECT hit.* FROM groups CROSS JOIN LATERAL (
        SELECT u.seq, g.ts, u.conversation, g.group_id, g.gseq, NULL, g.tail, g.search_text
        FROM group_events g
        JOIN user_events u ON u.owner = $1 AND u.ref_group IS NOT NULL AND u.ref_group = g.group_id AND u.ref_gseq = g.gseq
        WHERE g.group_id = groups.id AND g.tokens @> $2::text[]${and(ref)}
        ORDER BY u.seq DESC
        LIMIT $3
      ) hit
      WHERE groups.id IS NOT NULL
    ) hits
    ORDER BY seq DESC
    LIMIT $3`
  return { sql, params }
}
