// The archive in embedded mode: one LevelDB (its own directory), one process.
// Every write is one batch, and writes are serialised in-process, so "stored
// unless already there" is a read then a batch nobody interleaves. Seqs and
// times are zero-padded so that key order is number order (as in
// history/level-history.ts); ids never contain `!` (protocol/identity.ts):
//   u!owner!<seq>              the row (JSON)       g!group!<gseq>          the row (JSON)
//   c!owner!conv!<seq>         a message, by conversation (conversation pages)
//   ur!owner!group!<gseq>      owner seq: the owner's reference to a group event
//   t!owner!token!<seq>        posting of a 1:1 row  gt!group!token!<gseq>  posting of a group row
//   tu!<ts>!owner!<seq>        retention order       tg!<ts>!group!<gseq>    retention order
// Search reads postings, not rows: the owner's under one token (the longest,
// likely the rarest), each candidate's row checked for the others; and per
// group the owner references (a skip scan over `ur!`), the group's postings,
// kept where the owner holds a reference. A token may contain `!`: a posting
// is under `prefix` only if its key is exactly `prefix` + a padded seq.
import { ClassicLevel } from 'classic-level'
import type { LogEntry } from '../history/history-store.ts'
import type { ArchivedGroupEvent, ArchivedKind, ArchivedUserEvent, ArchiveStore, SearchDoc, SearchHit, SearchQuery } from './archive-store.ts'

const PAD = 16
const pad = (n: number): string => String(n).padStart(PAD, '0')
const withSeq = (seq: number, tail: string): string => `{"seq":${seq},${tail}`

/** A user row as stored under `u!`: `e` its JSON, or `g`/`q` its group event; `x`/`t` its doc. */
interface UserRow { ts: number, c: string, k: ArchivedKind, id?: string, e?: string, g?: string, q?: number, x?: string, t?: string[] }
/** A group row as stored under `g!`. */
interface GroupRow { ts: number, k: 'm' | 'e', f: string, id?: string, tail: string, x?: string, t?: string[] }

const userKey = (owner: string, seq: number): string => `u!${owner}!${pad(seq)}`
const groupKey = (group: string, gseq: number): string => `g!${group}!${pad(gseq)}`
const refKey = (owner: string, group: string, gseq: number): string => `ur!${owner}!${group}!${pad(gseq)}`

type Op = { type: 'put', key: string, value: string } | { type: 'del', key: string }

/** Every key a user row puts (value '' for an index entry). */
function userEntries (owner: string, seq: number, row: UserRow): Array<[string, string]> {
  const entries: Array<[string, string]> = [[userKey(owner, seq), JSON.stringify(row)], [`tu!${pad(row.ts)}!${owner}!${pad(seq)}`, '']]
  if (row.k === 'm') entries.push([`c!${owner}!${row.c}!${pad(seq)}`, ''])
  if (row.g !== undefined) entries.push([refKey(owner, row.g, row.q!), String(seq)])
  for (const token of row.t ?? []) entries.push([`t!${owner}!${token}!${pad(seq)}`, ''])
  return entries
}

function groupEntries (group: string, gseq: number, row: GroupRow): Array<[string, string]> {
  const entries: Array<[string, string]> = [[groupKey(group, gseq), JSON.stringify(row)], [`tg!${pad(row.ts)}!${group}!${pad(gseq)}`, '']]
  for (const token of row.t ?? []) entries.push([`gt!${group}!${token}!${pad(gseq)}`, ''])
  return entries
}

const puts = (entries: Array<[string, string]>): Op[] => entries.map(([key, value]) => ({ type: 'put', key, value }))
const dels = (entries: Array<[string, string]>): Op[] => entries.map(([key]) => ({ type: 'del', key }))

function userRow (row: ArchivedUserEvent): UserRow {
  const stored: UserRow = { ts: row.ts, c: row.conversation, k: row.kind }
  if (row.id !== undefined) stored.id = row.id
  if (typeof row.event === 'string') {
    stored.e = row.event
    // A reference's doc is its group row's: only the owner's own JSON is indexed here.
    if (row.search !== undefined) { stored.x = row.search.text; stored.t = [...new Set(row.search.tokens)] }
  } else {
    stored.g = row.event.group
    stored.q = row.event.gseq
  }
  return stored
}

/** A search doc as a row stores it (nothing for none). */
function docOf (search: SearchDoc | undefined): { x?: string, t?: string[] } {
  return search === undefined ? {} : { x: search.text, t: [...new Set(search.tokens)] }
}

function groupRow (row: ArchivedGroupEvent): GroupRow {
  const stored: GroupRow = { ts: row.ts, k: row.kind, f: row.from, tail: row.tail }
  if (row.id !== undefined) stored.id = row.id
  if (row.search !== undefined) { stored.x = row.search.text; stored.t = [...new Set(row.search.tokens)] }
  return stored
}

/** Rows with a key seen earlier in the batch are left out (the first one is stored). */
function firstOfEach<T> (rows: T[], keyOf: (row: T) => string): Array<{ key: string, row: T }> {
  const seen = new Set<string>()
  return rows.flatMap((row) => {
    const key = keyOf(row)
    if (seen.has(key)) return []
    seen.add(key)
    return [{ key, row }]
  })
}

const parse = <T>(value: string | undefined): T | undefined => value === undefined ? undefined : JSON.parse(value) as T
const seqOfKey = (key: string): number => Number(key.slice(-PAD))
const hasAll = (held: string[] | undefined, tokens: string[]): boolean => held !== undefined && tokens.every((token) => held.includes(token))

/** Postings are read this many at a time. */
const CHUNK = 256

export class LevelArchive implements ArchiveStore {
  readonly #db: ClassicLevel<string, string>
  readonly #sync: boolean
  /** The tail of the write queue: each write starts when the one before it is done. */
  #writing: Promise<unknown> = Promise.resolve()

  private constructor (db: ClassicLevel<string, string>, sync: boolean) {
    this.#db = db
    this.#sync = sync
  }

  /** `sync`: fsync every batch before its write resolves (DURABILITY=disk); otherwise it survives kill -9, not a power cut. */
  static async open (path: string, options: { sync?: boolean } = {}): Promise<LevelArchive> {
    const db = new ClassicLevel<string, string>(path, { valueEncoding: 'utf8', writeBufferSize: 32 * 1024 * 1024 })
    await db.open()
    return new LevelArchive(db, options.sync ?? false)
  }

  #serial<T> (work: () => Promise<T>): Promise<T> {
    const result = this.#writing.then(work)
    this.#writing = result.catch(() => {})
    return result
  }

  async #batch (ops: Op[]): Promise<void> {
    if (ops.length === 0) return
    // A chained batch: about half the cost per key of an array batch (abstract-level's #arrayBatch copies each op; bench/OPTIMISATIONS.md).
    const batch = this.#db.batch()
    for (const op of ops) {
      if (op.type === 'put') batch.put(op.key, op.value)
      else batch.del(op.key)
    }
    await batch.write({ sync: this.#sync })
  }

  putUserEvents (rows: ArchivedUserEvent[]): Promise<void> {
    return this.#serial(async () => {
      const fresh = firstOfEach(rows, (row) => userKey(row.owner, row.seq))
      const existing = await this.#db.getMany(fresh.map(({ key }) => key))
      await this.#batch(fresh.flatMap(({ row }, i) => existing[i] === undefined ? puts(userEntries(row.owner, row.seq, userRow(row))) : []))
    })
  }

  putGroupEvents (rows: ArchivedGroupEvent[]): Promise<void> {
    return this.#serial(async () => {
      const fresh = firstOfEach(rows, (row) => groupKey(row.group, row.gseq))
      const existing = await this.#db.getMany(fresh.map(({ key }) => key))
      await this.#batch(fresh.flatMap(({ row }, i) => existing[i] === undefined ? puts(groupEntries(row.group, row.gseq, groupRow(row))) : []))
    })
  }

  replaceUserEvent (owner: string, seq: number, event: string, search?: SearchDoc): Promise<void> {
    return this.#serial(async () => {
      const row = parse<UserRow>(await this.#db.get(userKey(owner, seq)))
      if (row === undefined) return
      // The row now holds its own JSON (a reference stops being one), and the new doc if any.
      const { g, q, x, t, ...kept } = row
      await this.#batch([...dels(userEntries(owner, seq, row)), ...puts(userEntries(owner, seq, { ...kept, e: event, ...docOf(search) }))])
    })
  }

  replaceGroupEvent (group: string, gseq: number, tail: string, search?: SearchDoc): Promise<void> {
    return this.#serial(async () => {
      const row = parse<GroupRow>(await this.#db.get(groupKey(group, gseq)))
      if (row === undefined) return
      const { x, t, ...kept } = row
      await this.#batch([...dels(groupEntries(group, gseq, row)), ...puts(groupEntries(group, gseq, { ...kept, tail, ...docOf(search) }))])
    })
  }

  /** Each row's event: its own JSON, or its group event with its seq (undefined if that is gone). */
  async #resolve (rows: Array<{ seq: number, row: UserRow }>): Promise<Array<string | undefined>> {
    const refs = rows.flatMap(({ row }) => row.g === undefined ? [] : [groupKey(row.g, row.q!)])
    const groupRows = refs.length === 0 ? [] : await this.#db.getMany(refs)
    let next = 0
    return rows.map(({ seq, row }) => {
      if (row.g === undefined) return row.e
      const stored = parse<GroupRow>(groupRows[next++])
      return stored === undefined ? undefined : withSeq(seq, stored.tail)
    })
  }

  async readLog (owner: string, after: number, limit: number): Promise<LogEntry[]> {
    if (limit <= 0) return []
    const prefix = `u!${owner}!`
    const stored = await this.#db.iterator({ gt: prefix + pad(after), lt: prefix + '~', limit }).all()
    const rows = stored.map(([key, value]) => ({ seq: seqOfKey(key), row: JSON.parse(value) as UserRow }))
    const events = await this.#resolve(rows)
    return rows.map(({ seq, row }, i) => ({ seq, ts: row.ts, event: events[i] }))
  }

  async conversation (owner: string, conversation: string, range: { before?: number, after?: number, limit: number }): Promise<{ events: string[], hasMore: boolean }> {
    const forward = range.after !== undefined
    const prefix = `c!${owner}!${conversation}!`
    const keys = await this.#db.keys({
      gt: prefix + pad(range.after ?? 0),
      lt: range.before === undefined ? prefix + '~' : prefix + pad(range.before),
      reverse: !forward,
      limit: range.limit + 1
    }).all()
    const seqs = keys.slice(0, range.limit).map(seqOfKey)
    if (!forward) seqs.reverse()
    const values = await this.#db.getMany(seqs.map((seq) => userKey(owner, seq)))
    const rows = seqs.flatMap((seq, i) => values[i] === undefined ? [] : [{ seq, row: JSON.parse(values[i]!) as UserRow }])
    // A message whose group event is gone is passed over, as the hot log does.
    return { events: (await this.#resolve(rows)).flatMap((event) => event ?? []), hasMore: keys.length > range.limit }
  }

  async groupEvents (group: string, range: { fromGseq: number, before?: number, after?: number, limit: number }): Promise<{ tails: string[], hasMore: boolean }> {
    const forward = range.after !== undefined
    const prefix = `g!${group}!`
    const values = await this.#db.values({
      gte: prefix + pad(Math.max(range.fromGseq, (range.after ?? -1) + 1, 0)),
      lt: range.before === undefined ? prefix + '~' : prefix + pad(range.before),
      reverse: !forward,
      limit: range.limit + 1
    }).all()
    const page = values.slice(0, range.limit).map((value) => (JSON.parse(value) as GroupRow).tail)
    if (!forward) page.reverse()
    return { tails: page, hasMore: values.length > range.limit }
  }

  async #last (prefix: string): Promise<number> {
    const [key] = await this.#db.keys({ gt: prefix, lt: prefix + '~', reverse: true, limit: 1 }).all()
    return key === undefined ? 0 : seqOfKey(key)
  }

  archivedSeq (owner: string): Promise<number> {
    return this.#last(`u!${owner}!`)
  }

  archivedGseq (group: string): Promise<number> {
    return this.#last(`g!${group}!`)
  }

  async search (owner: string, query: SearchQuery): Promise<{ hits: SearchHit[], hasMore: boolean }> {
    const tokens = [...new Set(query.tokens)]
    if (tokens.length === 0 || query.limit <= 0) return { hits: [], hasMore: false }
    const lead = tokens.reduce((a, b) => b.length > a.length ? b : a)
    const wanted = query.limit + 1
    const groups = query.conversation?.startsWith('g:') === true ? [query.conversation.slice(2)] : await this.#groupsOf(owner)
    const found = await Promise.all([
      this.#ownHits(owner, lead, tokens, query, wanted),
      ...groups.map((group) => this.#groupHits(owner, group, lead, tokens, query, wanted))
    ])
    const hits = found.flat().sort((a, b) => b.seq - a.seq)
    return { hits: hits.slice(0, query.limit), hasMore: hits.length > query.limit }
  }

  /** The groups the owner's log references: one seek per group. */
  async #groupsOf (owner: string): Promise<string[]> {
    const prefix = `ur!${owner}!`
    const groups: string[] = []
    let from = prefix
    for (;;) {
      const [key] = await this.#db.keys({ gt: from, lt: prefix + '~', limit: 1 }).all()
      if (key === undefined) return groups
      const group = key.slice(prefix.length, key.length - PAD - 1)
      groups.push(group)
      from = `${prefix}${group}!~`
    }
  }

  /** Up to `wanted` of the owner's own rows matching, newest first. */
  async #ownHits (owner: string, lead: string, tokens: string[], query: SearchQuery, wanted: number): Promise<SearchHit[]> {
    const prefix = `t!${owner}!${lead}!`
    const hits: SearchHit[] = []
    await this.#postings(prefix, query.beforeSeq, async (seqs) => {
      const values = await this.#db.getMany(seqs.map((seq) => userKey(owner, seq)))
      seqs.forEach((seq, i) => {
        const row = parse<UserRow>(values[i])
        if (row === undefined || !hasAll(row.t, tokens) || row.e === undefined) return
        if (query.conversation !== undefined && row.c !== query.conversation) return
        hits.push({ seq, ts: row.ts, conversation: row.c, event: row.e, text: row.x ?? '' })
      })
      return hits.length >= wanted
    })
    return hits
  }

  /**
   * Up to `wanted` of the group's rows matching that the owner references, newest
   * first. A member's references follow gseq order (the fan-out keeps it), so
   * newest by gseq is newest by the owner's seq and the scan may stop there.
   */
  async #groupHits (owner: string, group: string, lead: string, tokens: string[], query: SearchQuery, wanted: number): Promise<SearchHit[]> {
    const prefix = `gt!${group}!${lead}!`
    const hits: SearchHit[] = []
    await this.#postings(prefix, undefined, async (gseqs) => {
      const refs = await this.#db.getMany(gseqs.map((gseq) => refKey(owner, group, gseq)))
      const held = gseqs.flatMap((gseq, i) => {
        const seq = refs[i] === undefined ? undefined : Number(refs[i])
        return seq === undefined || (query.beforeSeq !== undefined && seq >= query.beforeSeq) ? [] : [{ gseq, seq }]
      })
      if (held.length === 0) return false
      const [groupValues, userValues] = await Promise.all([
        this.#db.getMany(held.map(({ gseq }) => groupKey(group, gseq))),
        this.#db.getMany(held.map(({ seq }) => userKey(owner, seq)))
      ])
      held.forEach(({ gseq, seq }, i) => {
        const row = parse<GroupRow>(groupValues[i])
        const ref = parse<UserRow>(userValues[i])
        if (row === undefined || ref === undefined || !hasAll(row.t, tokens)) return
        if (query.conversation !== undefined && ref.c !== query.conversation) return
        hits.push({ seq, ts: row.ts, conversation: ref.c, group, gseq, event: withSeq(seq, row.tail), text: row.x ?? '' })
      })
      return hits.length >= wanted
    })
    return hits
  }

  /** Walks the postings under `prefix`, newest first, below `before`, a chunk at a time, until `visit` says it has enough. */
  async #postings (prefix: string, before: number | undefined, visit: (seqs: number[]) => Promise<boolean>): Promise<void> {
    const iterator = this.#db.keys({ gt: prefix, lt: before === undefined ? prefix + '~' : prefix + pad(before), reverse: true })
    try {
      for (;;) {
        const keys = await iterator.nextv(CHUNK)
        if (keys.length === 0) return
        // A longer key is another token's (one that starts with this one and a `!`).
        const seqs = keys.filter((key) => key.length === prefix.length + PAD).map(seqOfKey)
        if (seqs.length > 0 && await visit(seqs)) return
      }
    } finally {
      await iterator.close()
    }
  }

  deleteUser (owner: string): Promise<void> {
    const prefix = `u!${owner}!`
    return this.#serial(() => this.#removeAll(prefix, (key, value) => userEntries(owner, seqOfKey(key), JSON.parse(value) as UserRow)))
  }

  deleteGroup (group: string): Promise<void> {
    const prefix = `g!${group}!`
    return this.#serial(() => this.#removeAll(prefix, (key, value) => groupEntries(group, seqOfKey(key), JSON.parse(value) as GroupRow)))
  }

  /** Removes every row under `prefix` and its index entries, a batch per chunk of rows. */
  async #removeAll (prefix: string, entriesOf: (key: string, value: string) => Array<[string, string]>): Promise<void> {
    const iterator = this.#db.iterator({ gt: prefix, lt: prefix + '~' })
    try {
      for (;;) {
        const rows = await iterator.nextv(1_000)
        if (rows.length === 0) return
        await this.#batch(rows.flatMap(([key, value]) => dels(entriesOf(key, value))))
      }
    } finally {
      await iterator.close()
    }
  }

  trim (beforeTs: number, limit: number): Promise<number> {
    // Oldest first, user rows before group rows (the PostgreSQL archive does the same).
    return this.#serial(async () => {
      const users = await this.#trimOf('tu!', beforeTs, limit, (name, seq) => userKey(name, seq), (name, seq, value) => userEntries(name, seq, JSON.parse(value) as UserRow))
      const groups = users >= limit ? 0 : await this.#trimOf('tg!', beforeTs, limit - users, (name, seq) => groupKey(name, seq), (name, seq, value) => groupEntries(name, seq, JSON.parse(value) as GroupRow))
      return users + groups
    })
  }

  async #trimOf (prefix: string, beforeTs: number, limit: number, keyOf: (name: string, seq: number) => string, entriesOf: (name: string, seq: number, value: string) => Array<[string, string]>): Promise<number> {
    if (limit <= 0) return 0
    const keys = await this.#db.keys({ gt: prefix, lt: prefix + pad(beforeTs), limit }).all()
    // `<prefix><ts>!<name>!<seq>`
    const places = keys.map((key) => ({ key, name: key.slice(prefix.length + PAD + 1, key.length - PAD - 1), seq: seqOfKey(key) }))
    const values = await this.#db.getMany(places.map(({ name, seq }) => keyOf(name, seq)))
    let removed = 0
    const ops = places.flatMap(({ key, name, seq }, i): Op[] => {
      const value = values[i]
      if (value === undefined) return [{ type: 'del', key }]
      removed++
      return dels(entriesOf(name, seq, value))
    })
    await this.#batch(ops)
    return removed
  }

  async close (): Promise<void> {
    await this.#writing
    await this.#db.close()
  }
}
