// One behaviour, both implementations of the archive (archive/archive-store.ts):
// PostgreSQL (a real database of this file's own, made by test/helpers/postgres.ts)
// and LevelDB (a real LevelDB in a temp dir). Every test opens an empty store.
// Tokens are literal arrays here: making them is search/'s job.
// The last test puts one random dataset in both and asks both the same
// searches: the answers must be identical.
import t, { type Test } from 'tap'
import { join } from 'node:path'
import pg from 'pg'
import type { ArchivedGroupEvent, ArchivedUserEvent, ArchiveStore, SearchQuery } from '../archive/archive-store.ts'
import { PgArchive } from '../archive/pg-archive.ts'
import { LevelArchive } from '../archive/level-archive.ts'
import { migrateArchive } from '../archive/pg-migrate.ts'
import { createTestDatabase } from './helpers/postgres.ts'
import { tempDataDir } from './helpers/server-process.ts'

const database = await createTestDatabase()
t.teardown(() => database.drop())
await migrateArchive(database.url)

const STORES: Array<{ name: string, open: () => Promise<ArchiveStore> }> = [
  {
    name: 'postgres',
    open: async () => {
      const client = new pg.Client({ connectionString: database.url })
      await client.connect()
      await client.query('TRUNCATE user_events, group_events')
      await client.end()
      return PgArchive.open(database.url, { migrate: false })
    }
  },
  {
    name: 'leveldb',
    open: () => LevelArchive.open(join(tempDataDir(), 'archive'))
  }
]

const T0 = 1_700_000_000_000

/** A 1:1 message in `owner`'s log; `tokens` make it searchable. */
function message (owner: string, seq: number, peer: string, tokens?: string[], ts = T0 + seq): ArchivedUserEvent {
  const row: ArchivedUserEvent = { owner, seq, ts, conversation: peer, kind: 'm', id: `m-${owner}-${seq}`, event: `{"seq":${seq},"type":"message","id":"m-${owner}-${seq}","peer":"${peer}","ts":${ts}}` }
  if (tokens !== undefined) row.search = { text: tokens.join(' '), tokens }
  return row
}

/** Anything else in a user's log (a receipt, by default). */
function other (owner: string, seq: number, peer: string, kind: ArchivedUserEvent['kind'] = 'r', ts = T0 + seq): ArchivedUserEvent {
  return { owner, seq, ts, conversation: peer, kind, event: `{"seq":${seq},"type":"receipt","ts":${ts}}` }
}

/** `owner`'s reference to a group event. */
function ref (owner: string, seq: number, group: string, gseq: number, kind: ArchivedUserEvent['kind'] = 'm', ts = T0 + gseq): ArchivedUserEvent {
  return { owner, seq, ts, conversation: `g:${group}`, kind, id: kind === 'm' ? `gm-${group}-${gseq}` : undefined, event: { group, gseq } }
}

const tailOf = (group: string, gseq: number, ts: number): string => `"type":"message","id":"gm-${group}-${gseq}","from":"u","group":"${group}","gseq":${gseq},"ts":${ts}}`

function groupMessage (group: string, gseq: number, tokens?: string[], ts = T0 + gseq): ArchivedGroupEvent {
  const row: ArchivedGroupEvent = { group, gseq, ts, kind: 'm', from: 'u', id: `gm-${group}-${gseq}`, tail: tailOf(group, gseq, ts) }
  if (tokens !== undefined) row.search = { text: tokens.join(' '), tokens }
  return row
}

function groupEvent (group: string, gseq: number, ts = T0 + gseq): ArchivedGroupEvent {
  return { group, gseq, ts, kind: 'e', from: 'u', tail: `"type":"member_added","group":"${group}","gseq":${gseq},"ts":${ts},"by":"u","users":["x"]}` }
}

const seqsOf = (events: string[]): number[] => events.map((event) => (JSON.parse(event) as { seq: number }).seq)
const gseqsOf = (tails: string[]): number[] => tails.map((tail) => (JSON.parse(`{${tail}`) as { gseq: number }).gseq)

async function searchSeqs (store: ArchiveStore, owner: string, query: Partial<SearchQuery> & { tokens: string[] }): Promise<{ seqs: number[], hasMore: boolean }> {
  const { hits, hasMore } = await store.search(owner, { limit: 100, ...query })
  return { seqs: hits.map((hit) => hit.seq), hasMore }
}

for (const { name, open } of STORES) {
  t.test(name, async (t) => {
    /** An empty store for one test, closed after it. */
    const fresh = async (t: Test): Promise<ArchiveStore> => {
      const store = await open()
      t.teardown(() => store.close())
      return store
    }

    t.test('puts are idempotent: a repeated or overlapping batch changes nothing already there', async (t) => {
      const store = await fresh(t)
      const first = [message('al', 1, 'bob', ['hello']), other('al', 2, 'bob'), message('al', 3, 'bob', ['again'])]
      await store.putUserEvents(first)
      const before = await store.readLog('al', 0, 100)
      await store.putUserEvents(first)
      t.same(await store.readLog('al', 0, 100), before, 'the same batch again: nothing changes')
      const changed = { ...message('al', 3, 'bob', ['changed']), event: '{"seq":3,"other":true}' }
      await store.putUserEvents([changed, message('al', 4, 'bob', ['later'])])
      const after = await store.readLog('al', 0, 100)
      t.same(after.slice(0, 3), before, 'an overlapping batch leaves the stored rows as they were')
      t.same(after.map((entry) => entry.seq), [1, 2, 3, 4], 'and adds the new ones')
      t.same((await searchSeqs(store, 'al', { tokens: ['changed'] })).seqs, [], 'the ignored row\'s doc is not indexed')
      t.same((await searchSeqs(store, 'al', { tokens: ['again'] })).seqs, [3])

      await store.putUserEvents([message('al', 5, 'bob', ['dup']), { ...message('al', 5, 'bob', ['other']), event: '{"seq":5,"second":true}' }])
      t.same((await store.readLog('al', 4, 10))[0]?.event, message('al', 5, 'bob').event, 'the same key twice in one batch: the first is stored')
      t.same((await searchSeqs(store, 'al', { tokens: ['other'] })).seqs, [])

      const rows = [groupMessage('g1', 1, ['hi']), groupEvent('g1', 2)]
      await store.putGroupEvents(rows)
      await store.putGroupEvents([{ ...groupMessage('g1', 1, ['bye']), tail: '"changed":1}' }, groupMessage('g1', 3)])
      t.same((await store.groupEvents('g1', { fromGseq: 0, after: 0, limit: 10 })).tails, [rows[0]!.tail, rows[1]!.tail, groupMessage('g1', 3).tail])
      await store.putUserEvents([])
      await store.putGroupEvents([])
    })

    t.test('readLog: oldest first after a seq, group references resolved, a missing group event is a gap', async (t) => {
      const store = await fresh(t)
      await store.putGroupEvents([groupMessage('g1', 7), groupEvent('g1', 8)])
      await store.putUserEvents([message('al', 1, 'bob'), ref('al', 2, 'g1', 7), ref('al', 3, 'g1', 8, 'e'), ref('al', 4, 'g1', 9), other('al', 5, 'bob', 'n', T0 + 99)])
      const log = await store.readLog('al', 0, 10)
      t.same(log.map((entry) => entry.seq), [1, 2, 3, 4, 5])
      t.same(log.map((entry) => entry.ts), [T0 + 1, T0 + 7, T0 + 8, T0 + 9, T0 + 99])
      t.equal(log[0]!.event, message('al', 1, 'bob').event, 'a 1:1 event byte for byte')
      t.equal(log[1]!.event, `{"seq":2,${tailOf('g1', 7, T0 + 7)}`, 'a group message with the owner\'s seq')
      t.equal(log[2]!.event, `{"seq":3,${groupEvent('g1', 8).tail}`)
      t.equal(log[3]!.event, undefined, 'its group event is not archived: the seq is there, the event is not')
      t.same((await store.readLog('al', 2, 2)).map((entry) => entry.seq), [3, 4], 'after and limit')
      t.same(await store.readLog('al', 5, 10), [])
      t.same(await store.readLog('nobody', 0, 10), [])
      t.same((await store.readLog('al', 0, 10)), log, 'reading does not change anything')
    })

    t.test('conversation pages: messages only, after / before / newest, hasMore', async (t) => {
      const store = await fresh(t)
      const rows: ArchivedUserEvent[] = []
      for (let seq = 1; seq <= 10; seq++) rows.push(seq % 3 === 0 ? other('al', seq, 'bob') : message('al', seq, seq % 2 === 0 ? 'bob' : 'carol'))
      await store.putUserEvents(rows)
      // bob: messages at 2, 4, 8, 10 (6 is a receipt)
      t.same(await store.conversation('al', 'bob', { limit: 10 }).then((page) => ({ seqs: seqsOf(page.events), hasMore: page.hasMore })), { seqs: [2, 4, 8, 10], hasMore: false })
      t.same(await store.conversation('al', 'bob', { limit: 2 }).then((page) => ({ seqs: seqsOf(page.events), hasMore: page.hasMore })), { seqs: [8, 10], hasMore: true }, 'the newest page, oldest first')
      t.same(await store.conversation('al', 'bob', { before: 8, limit: 2 }).then((page) => ({ seqs: seqsOf(page.events), hasMore: page.hasMore })), { seqs: [2, 4], hasMore: false })
      t.same(await store.conversation('al', 'bob', { before: 8, limit: 1 }).then((page) => ({ seqs: seqsOf(page.events), hasMore: page.hasMore })), { seqs: [4], hasMore: true })
      t.same(await store.conversation('al', 'bob', { after: 2, limit: 2 }).then((page) => ({ seqs: seqsOf(page.events), hasMore: page.hasMore })), { seqs: [4, 8], hasMore: true })
      t.same(await store.conversation('al', 'bob', { after: 8, limit: 2 }).then((page) => ({ seqs: seqsOf(page.events), hasMore: page.hasMore })), { seqs: [10], hasMore: false })
      t.same(await store.conversation('al', 'carol', { limit: 10 }).then((page) => seqsOf(page.events)), [1, 5, 7])
      t.same(await store.conversation('al', 'dave', { limit: 10 }), { events: [], hasMore: false })

      await store.putGroupEvents([groupMessage('g1', 1), groupMessage('g1', 2)])
      await store.putUserEvents([ref('al', 11, 'g1', 1), ref('al', 12, 'g1', 5, 'e'), ref('al', 13, 'g1', 2)])
      const group = await store.conversation('al', 'g:g1', { limit: 10 })
      t.same(group.events, [`{"seq":11,${tailOf('g1', 1, T0 + 1)}`, `{"seq":13,${tailOf('g1', 2, T0 + 2)}`], 'group messages resolved; a group event (kind e) is not a message')
    })

    t.test('groupEvents: tails from fromGseq, after / before / newest, hasMore', async (t) => {
      const store = await fresh(t)
      const rows: ArchivedGroupEvent[] = []
      for (let gseq = 1; gseq <= 9; gseq++) rows.push(gseq % 4 === 0 ? groupEvent('g1', gseq) : groupMessage('g1', gseq))
      await store.putGroupEvents([...rows, groupMessage('g2', 1)])
      const page = async (range: { fromGseq: number, before?: number, after?: number, limit: number }): Promise<{ gseqs: number[], hasMore: boolean }> => {
        const { tails, hasMore } = await store.groupEvents('g1', range)
        return { gseqs: gseqsOf(tails), hasMore }
      }
      t.same((await store.groupEvents('g1', { fromGseq: 1, after: 0, limit: 2 })).tails, [rows[0]!.tail, rows[1]!.tail], 'tails as stored')
      t.same(await page({ fromGseq: 0, limit: 3 }), { gseqs: [7, 8, 9], hasMore: true }, 'the newest, oldest first')
      t.same(await page({ fromGseq: 5, limit: 10 }), { gseqs: [5, 6, 7, 8, 9], hasMore: false }, 'a member since 5 sees nothing before it')
      t.same(await page({ fromGseq: 5, before: 8, limit: 2 }), { gseqs: [6, 7], hasMore: true })
      t.same(await page({ fromGseq: 5, before: 7, limit: 2 }), { gseqs: [5, 6], hasMore: false })
      t.same(await page({ fromGseq: 5, after: 2, limit: 2 }), { gseqs: [5, 6], hasMore: true }, 'after is below fromGseq: fromGseq bounds it')
      t.same(await page({ fromGseq: 1, after: 7, limit: 2 }), { gseqs: [8, 9], hasMore: false })
      t.same(await page({ fromGseq: 1, after: 9, limit: 2 }), { gseqs: [], hasMore: false })
      t.same(await store.groupEvents('nope', { fromGseq: 0, limit: 5 }), { tails: [], hasMore: false })
    })

    t.test('archivedSeq / archivedGseq: the highest archived, 0 for none', async (t) => {
      const store = await fresh(t)
      t.equal(await store.archivedSeq('al'), 0)
      t.equal(await store.archivedGseq('g1'), 0)
      await store.putUserEvents([message('al', 3, 'bob'), message('al', 12, 'bob'), message('al2', 40, 'bob')])
      await store.putGroupEvents([groupMessage('g1', 9), groupMessage('g1', 100), groupMessage('g10', 500)])
      t.equal(await store.archivedSeq('al'), 12, 'another user whose id starts the same is not counted')
      t.equal(await store.archivedGseq('g1'), 100)
      t.equal(await store.archivedSeq('bob'), 0)
    })

    t.test('replace with a doc (an edit): found by the new text only, at once', async (t) => {
      const store = await fresh(t)
      await store.putGroupEvents([groupMessage('g1', 1, ['kiwi'])])
      await store.putUserEvents([message('al', 1, 'bob', ['pineapple', 'pizza']), ref('al', 2, 'g1', 1)])
      const edited = '{"seq":1,"type":"message","id":"m-al-1","body":"mushroom pizza","edited":true}'
      await store.replaceUserEvent('al', 1, edited, { text: 'mushroom pizza', tokens: ['mushroom', 'pizza', 'pizza'] })
      t.equal((await store.readLog('al', 0, 1))[0]!.event, edited)
      t.same((await searchSeqs(store, 'al', { tokens: ['pineapple'] })).seqs, [], 'the old text is not found')
      t.same((await searchSeqs(store, 'al', { tokens: ['mushroom', 'pizza'] })).seqs, [1], 'the new one is')
      const tail = '"type":"message","id":"gm-g1-1","from":"u","group":"g1","gseq":1,"body":"mango","edited":true}'
      await store.replaceGroupEvent('g1', 1, tail, { text: 'mango', tokens: ['mango'] })
      t.same((await searchSeqs(store, 'al', { tokens: ['kiwi'] })).seqs, [])
      t.same((await searchSeqs(store, 'al', { tokens: ['mango'] })).seqs, [2], 'a member finds the group message by its new text')
      t.equal((await store.readLog('al', 1, 1))[0]!.event, `{"seq":2,${tail}`)
    })

    t.test('replace: the tombstone is read back, and the message leaves search at once', async (t) => {
      const store = await fresh(t)
      await store.putGroupEvents([groupMessage('g1', 1, ['secret', 'plan'])])
      await store.putUserEvents([message('al', 1, 'bob', ['secret', 'plan']), message('al', 2, 'bob', ['secret']), ref('al', 3, 'g1', 1), message('bob', 1, 'al', ['secret', 'plan'])])
      t.same((await searchSeqs(store, 'al', { tokens: ['secret', 'plan'] })).seqs, [3, 1])

      const tombstone = '{"seq":1,"type":"message","id":"m-al-1","recalled":true}'
      await store.replaceUserEvent('al', 1, tombstone)
      t.equal((await store.readLog('al', 0, 1))[0]!.event, tombstone)
      t.same((await store.conversation('al', 'bob', { limit: 10 })).events[0], tombstone)
      t.same((await searchSeqs(store, 'al', { tokens: ['secret', 'plan'] })).seqs, [3], 'the recalled copy is gone from the owner\'s search')
      t.same((await searchSeqs(store, 'al', { tokens: ['secret'] })).seqs, [3, 2])
      t.same((await searchSeqs(store, 'bob', { tokens: ['secret'] })).seqs, [1], 'the peer\'s copy is the peer\'s own (recalled by its own call)')

      const tail = '"type":"message","id":"gm-g1-1","from":"u","group":"g1","gseq":1,"recalled":true}'
      await store.replaceGroupEvent('g1', 1, tail)
      t.same((await store.groupEvents('g1', { fromGseq: 0, limit: 5 })).tails, [tail])
      t.equal((await store.readLog('al', 2, 1))[0]!.event, `{"seq":3,${tail}`, 'a member reads the tombstone through the reference')
      t.same((await searchSeqs(store, 'al', { tokens: ['secret'] })).seqs, [2])

      await store.replaceUserEvent('al', 99, tombstone)
      await store.replaceGroupEvent('g1', 99, tail)
      t.same(await store.readLog('al', 3, 10), [], 'replacing what is not there writes nothing')
      t.equal(await store.archivedGseq('g1'), 1)
    })

    t.test('search: every token, the owner\'s own rows only, newest first', async (t) => {
      const store = await fresh(t)
      await store.putUserEvents([
        message('al', 1, 'bob', ['red', 'apple']),
        message('al', 2, 'bob', ['green', 'apple']),
        message('al', 3, 'carol', ['red', 'apple', 'pie']),
        other('al', 4, 'bob'),
        message('al', 5, 'bob'),
        message('al', 6, 'carol', ['red']),
        message('bob', 1, 'al', ['red', 'apple']),
        message('alx', 1, 'bob', ['red', 'apple'])
      ])
      t.same(await searchSeqs(store, 'al', { tokens: ['red', 'apple'] }), { seqs: [3, 1], hasMore: false }, 'both tokens')
      t.same((await searchSeqs(store, 'al', { tokens: ['apple'] })).seqs, [3, 2, 1])
      t.same((await searchSeqs(store, 'al', { tokens: ['apple', 'red', 'pie'] })).seqs, [3])
      t.same((await searchSeqs(store, 'al', { tokens: ['red', 'missing'] })).seqs, [], 'a token no message holds: nothing')
      t.same((await searchSeqs(store, 'al', { tokens: ['appl'] })).seqs, [], 'tokens match whole')
      t.same((await searchSeqs(store, 'bob', { tokens: ['red', 'apple'] })).seqs, [1], 'another user\'s matching rows are never returned')
      t.same((await searchSeqs(store, 'nobody', { tokens: ['red'] })).seqs, [])
      t.same((await searchSeqs(store, 'al', { tokens: ['red'], conversation: 'carol' })).seqs, [6, 3], 'one conversation')
      t.same((await searchSeqs(store, 'al', { tokens: ['red'], conversation: 'dave' })).seqs, [])

      const { hits } = await store.search('al', { tokens: ['red', 'apple'], limit: 1 })
      t.same(hits, [{ seq: 3, ts: T0 + 3, conversation: 'carol', event: message('al', 3, 'carol').event, text: 'red apple pie' }], 'a hit: seq, ts, conversation, the event as stored, the doc\'s text')
    })

    t.test('search: a token that starts another one, tokens with quotes, backslashes, `!`, CJK', async (t) => {
      const store = await fresh(t)
      const odd = ['a!b', 'say "hi"', 'back\\slash', '你好', 'a']
      await store.putUserEvents([message('al', 1, 'bob', odd), message('al', 2, 'bob', ['a!b!c']), message('al', 3, 'bob', ['a!'])])
      for (const token of odd) t.same((await searchSeqs(store, 'al', { tokens: [token] })).seqs, [1], JSON.stringify(token))
      t.same((await searchSeqs(store, 'al', { tokens: ['a!b!c'] })).seqs, [2])
      t.same((await searchSeqs(store, 'al', { tokens: ['a!'] })).seqs, [3])
      t.same((await searchSeqs(store, 'al', { tokens: ['你好', 'a!b'] })).seqs, [1])
    })

    t.test('search: group messages only where the owner\'s log references them', async (t) => {
      const store = await fresh(t)
      const group: ArchivedGroupEvent[] = []
      for (let gseq = 1; gseq <= 8; gseq++) group.push(groupMessage('g1', gseq, gseq % 2 === 1 ? ['meeting', `n${gseq}`] : ['lunch']))
      await store.putGroupEvents([...group, groupMessage('g2', 1, ['meeting'])])
      // al was a member throughout; bea joined at gseq 5; cy never was.
      await store.putUserEvents([
        ...group.map((row, i) => ref('al', 10 + i, 'g1', row.gseq)),
        message('al', 30, 'bob', ['meeting']),
        ...group.slice(4).map((row, i) => ref('bea', 1 + i, 'g1', row.gseq)),
        message('cy', 1, 'bob', ['lunch'])
      ])
      t.same((await searchSeqs(store, 'al', { tokens: ['meeting'] })).seqs, [30, 16, 14, 12, 10], '1:1 and group hits, newest first by the owner\'s seq')
      t.same((await searchSeqs(store, 'bea', { tokens: ['meeting'] })).seqs, [3, 1], 'a member from gseq 5 finds 5 and 7, with her seqs')
      t.same((await searchSeqs(store, 'bea', { tokens: ['n3'] })).seqs, [], 'not gseq 3')
      t.same((await searchSeqs(store, 'cy', { tokens: ['meeting'] })).seqs, [], 'a non-member finds nothing')
      t.same((await searchSeqs(store, 'cy', { tokens: ['lunch'] })).seqs, [1], 'only their own')
      t.same((await searchSeqs(store, 'al', { tokens: ['meeting'], conversation: 'g:g1' })).seqs, [16, 14, 12, 10], 'the group\'s conversation')
      t.same((await searchSeqs(store, 'al', { tokens: ['meeting'], conversation: 'bob' })).seqs, [30])
      t.same((await searchSeqs(store, 'al', { tokens: ['meeting'], conversation: 'g:g2' })).seqs, [], 'a group al never was in')

      const { hits } = await store.search('bea', { tokens: ['meeting', 'n7'], limit: 5 })
      t.same(hits, [{ seq: 3, ts: T0 + 7, conversation: 'g:g1', group: 'g1', gseq: 7, event: `{"seq":3,${tailOf('g1', 7, T0 + 7)}`, text: 'meeting n7' }], 'a group hit: the owner\'s seq, the group event as a member reads it')
    })

    t.test('search: beforeSeq pages newest first with hasMore; limit', async (t) => {
      const store = await fresh(t)
      const rows: ArchivedUserEvent[] = []
      const group: ArchivedGroupEvent[] = []
      // Odd seqs 1:1 messages, even seqs references to g1; every one holds `x`.
      for (let seq = 1; seq <= 25; seq++) {
        if (seq % 2 === 1) rows.push(message('al', seq, 'bob', ['x', `s${seq}`]))
        else { group.push(groupMessage('g1', seq / 2, ['x'])); rows.push(ref('al', seq, 'g1', seq / 2)) }
      }
      await store.putGroupEvents(group)
      await store.putUserEvents(rows)
      const seen: number[] = []
      let beforeSeq: number | undefined
      for (let page = 0; page < 10; page++) {
        const query: SearchQuery = { tokens: ['x'], limit: 7 }
        if (beforeSeq !== undefined) query.beforeSeq = beforeSeq
        const { hits, hasMore } = await store.search('al', query)
        seen.push(...hits.map((hit) => hit.seq))
        t.equal(hasMore, seen.length < 25, `page ${page}: hasMore`)
        if (!hasMore) break
        beforeSeq = hits.at(-1)!.seq
      }
      t.same(seen, Array.from({ length: 25 }, (_, i) => 25 - i), 'every match once, newest first, across 1:1 and group rows')
      t.same(await searchSeqs(store, 'al', { tokens: ['x'], limit: 3, beforeSeq: 10 }), { seqs: [9, 8, 7], hasMore: true })
      t.same(await searchSeqs(store, 'al', { tokens: ['x'], limit: 3, beforeSeq: 4 }), { seqs: [3, 2, 1], hasMore: false })
      t.same(await searchSeqs(store, 'al', { tokens: ['x'], limit: 3, beforeSeq: 1 }), { seqs: [], hasMore: false })
      t.same(await searchSeqs(store, 'al', { tokens: ['x'], limit: 25 }), { seqs: Array.from({ length: 25 }, (_, i) => 25 - i), hasMore: false }, 'exactly limit: no more')
      t.same(await searchSeqs(store, 'al', { tokens: ['x', 's13'], limit: 1 }), { seqs: [13], hasMore: false })
    })

    t.test('deleteUser: gone from reads and search; the peer\'s copy and the group log stay', async (t) => {
      const store = await fresh(t)
      await store.putGroupEvents([groupMessage('g1', 1, ['hello'])])
      await store.putUserEvents([message('al', 1, 'bob', ['hello']), ref('al', 2, 'g1', 1), message('bob', 1, 'al', ['hello']), ref('bob', 2, 'g1', 1), message('al2', 1, 'bob', ['hello'])])
      await store.deleteUser('al')
      t.same(await store.readLog('al', 0, 10), [])
      t.same(await store.conversation('al', 'bob', { limit: 10 }), { events: [], hasMore: false })
      t.equal(await store.archivedSeq('al'), 0)
      t.same((await searchSeqs(store, 'al', { tokens: ['hello'] })).seqs, [])
      t.same((await searchSeqs(store, 'bob', { tokens: ['hello'] })).seqs, [2, 1], 'the peer keeps theirs')
      t.same((await searchSeqs(store, 'al2', { tokens: ['hello'] })).seqs, [1], 'a user whose id starts the same keeps theirs')
      t.equal(await store.archivedGseq('g1'), 1, 'the group log is not theirs alone')
      await store.putUserEvents([message('al', 1, 'bob', ['again'])])
      t.same((await searchSeqs(store, 'al', { tokens: ['again'] })).seqs, [1], 'the same seq may be archived again after')
      t.same((await searchSeqs(store, 'al', { tokens: ['hello'] })).seqs, [])
      await store.deleteUser('nobody')
    })

    t.test('deleteGroup: its log goes; members\' references read as gaps', async (t) => {
      const store = await fresh(t)
      await store.putGroupEvents([groupMessage('g1', 1, ['hello']), groupMessage('g1', 2, ['hello']), groupMessage('g10', 1, ['hello'])])
      await store.putUserEvents([ref('al', 1, 'g1', 1), ref('al', 2, 'g1', 2), ref('al', 3, 'g10', 1)])
      await store.deleteGroup('g1')
      t.same(await store.groupEvents('g1', { fromGseq: 0, limit: 10 }), { tails: [], hasMore: false })
      t.equal(await store.archivedGseq('g1'), 0)
      t.same((await store.readLog('al', 0, 10)).map((entry) => entry.event === undefined), [true, true, false])
      t.same((await searchSeqs(store, 'al', { tokens: ['hello'] })).seqs, [3], 'only the other group\'s message')
      t.same((await store.conversation('al', 'g:g1', { limit: 10 })).events, [])
    })

    t.test('trim: up to limit rows older than beforeTs, user and group rows, oldest first', async (t) => {
      const store = await fresh(t)
      await store.putUserEvents([message('al', 1, 'bob', ['old'], 100), message('al', 2, 'bob', ['old'], 200), message('al', 3, 'bob', ['new'], 1_000), ref('al', 4, 'g1', 1, 'm', 150)])
      await store.putGroupEvents([groupMessage('g1', 1, ['old'], 150), groupMessage('g1', 2, ['new'], 2_000)])
      t.equal(await store.trim(500, 2), 2, 'the limit')
      t.same((await store.readLog('al', 0, 10)).map((entry) => entry.seq), [2, 3], 'the oldest user rows went first (ts 100, 150)')
      t.equal(await store.trim(500, 10), 2, 'the rest: a user row and a group row')
      t.same((await store.readLog('al', 0, 10)).map((entry) => entry.seq), [3])
      t.same(gseqsOf((await store.groupEvents('g1', { fromGseq: 0, limit: 10 })).tails), [2])
      t.same((await searchSeqs(store, 'al', { tokens: ['old'] })).seqs, [], 'trimmed rows leave search')
      t.same((await searchSeqs(store, 'al', { tokens: ['new'] })).seqs, [3])
      t.equal(await store.trim(500, 10), 0, 'nothing older is left')
      t.equal(await store.trim(1_000, 10), 0, 'strictly older')
      t.equal(await store.trim(5_000, 0), 0, 'limit 0')
    })

    t.test('large batches: 5,000 rows in one put', async (t) => {
      const store = await fresh(t)
      const rows: ArchivedUserEvent[] = []
      for (let seq = 1; seq <= 5_000; seq++) rows.push(message('big', seq, `p${seq % 7}`, [`w${seq % 10}`, 'all']))
      const groupRows: ArchivedGroupEvent[] = []
      for (let gseq = 1; gseq <= 5_000; gseq++) groupRows.push(groupMessage('bg', gseq, ['all']))
      await store.putGroupEvents(groupRows)
      await store.putUserEvents(rows)
      await store.putUserEvents(rows.slice(2_500))
      t.equal(await store.archivedSeq('big'), 5_000)
      t.equal(await store.archivedGseq('bg'), 5_000)
      t.equal((await store.readLog('big', 0, 10_000)).length, 5_000)
      t.same(await searchSeqs(store, 'big', { tokens: ['w3', 'all'], limit: 3 }), { seqs: [4993, 4983, 4973], hasMore: true })
      t.same(await searchSeqs(store, 'big', { tokens: ['w3'], conversation: 'p0', limit: 2 }), { seqs: [4963, 4893], hasMore: true })
      t.equal(await store.trim(T0 + 2_001, 10_000), 4_000, '2,000 user rows and 2,000 group rows')
    })
  })
}

t.test('both implementations give the same answers on the same data', async (t) => {
  const stores = await Promise.all(STORES.map(({ open }) => open()))
  t.teardown(() => Promise.all(stores.map((store) => store.close())))
  // A small pseudo-random world: 6 users, 3 groups, words from a small vocabulary.
  let state = 12345
  const random = (n: number): number => { state = (state * 1103515245 + 12345) % 2 ** 31; return Math.floor(state / 2 ** 31 * n) }
  const words = ['a', 'b', 'c', 'd', 'e', 'f', '猫', 'a!b']
  const doc = (): string[] => [...new Set(Array.from({ length: 1 + random(3) }, () => words[random(words.length)]!))]
  const users = ['u0', 'u1', 'u2', 'u3', 'u4', 'u5']
  const seqs = new Map(users.map((user) => [user, 0]))
  const userRows: ArchivedUserEvent[] = []
  const groupRows: ArchivedGroupEvent[] = []
  const groups = ['g0', 'g1', 'g2'].map((group) => ({ group, gseq: 0, members: new Set<string>() }))
  const next = (user: string): number => { const seq = seqs.get(user)! + 1; seqs.set(user, seq); return seq }
  for (let step = 0; step < 1_500; step++) {
    const choice = random(10)
    if (choice < 5) {
      const from = users[random(users.length)]!
      const to = users[random(users.length)]!
      const tokens = random(5) === 0 ? undefined : doc()
      userRows.push(message(from, next(from), to, tokens), message(to, next(to), from, tokens))
    } else if (choice < 6) {
      const g = groups[random(groups.length)]!
      const user = users[random(users.length)]!
      if (g.members.has(user)) g.members.delete(user)
      else g.members.add(user)
      g.gseq++
      groupRows.push(groupEvent(g.group, g.gseq))
      for (const member of g.members) userRows.push(ref(member, next(member), g.group, g.gseq, 'e'))
    } else {
      const g = groups[random(groups.length)]!
      g.gseq++
      groupRows.push(groupMessage(g.group, g.gseq, random(6) === 0 ? undefined : doc()))
      for (const member of g.members) userRows.push(ref(member, next(member), g.group, g.gseq))
    }
  }
  for (const store of stores) {
    // In batches, out of order, some twice: as an archiver that retried would.
    for (let i = 0; i < groupRows.length; i += 97) await store.putGroupEvents(groupRows.slice(i, i + 150))
    for (let i = userRows.length; i > 0; i -= 211) await store.putUserEvents(userRows.slice(Math.max(0, i - 300), i))
    // A few recalls.
    for (let i = 0; i < userRows.length; i += 37) {
      const row = userRows[i]!
      if (typeof row.event === 'string') await store.replaceUserEvent(row.owner, row.seq, `{"seq":${row.seq},"recalled":true}`)
    }
    for (let i = 0; i < groupRows.length; i += 23) await store.replaceGroupEvent(groupRows[i]!.group, groupRows[i]!.gseq, `"recalled":${i}}`)
  }
  const queries: SearchQuery[] = []
  for (const first of words) {
    queries.push({ tokens: [first], limit: 10 })
    queries.push({ tokens: [first], limit: 3, beforeSeq: 200 })
    for (const second of words) if (second !== first) queries.push({ tokens: [first, second], limit: 5 })
    queries.push({ tokens: [first], limit: 4, conversation: 'g:g1' })
    queries.push({ tokens: [first], limit: 4, conversation: 'u2' })
  }
  let compared = 0
  let hits = 0
  for (const user of users) {
    for (const query of queries) {
      const [pgAnswer, levelAnswer] = await Promise.all(stores.map((store) => store.search(user, query)))
      if (!t.same(levelAnswer, pgAnswer, `${user} ${JSON.stringify(query)}`)) return
      compared++
      hits += pgAnswer!.hits.length
    }
    const [pgLog, levelLog] = await Promise.all(stores.map((store) => store.readLog(user, 0, 10_000)))
    t.same(levelLog, pgLog, `${user}: the same log`)
    for (const conversation of ['g:g0', 'u1']) {
      const [pgPage, levelPage] = await Promise.all(stores.map((store) => store.conversation(user, conversation, { limit: 20, before: 400 })))
      t.same(levelPage, pgPage, `${user}: the same ${conversation} page`)
    }
  }
  t.ok(hits > 500, `${compared} searches compared, ${hits} hits`)
})
