// Groups in embedded mode, on the history LevelDB and its group commit, so a
// group event and every member's log entry land in one batch. A group's
// name, members and join points are one JSON value (`g!<group>!info`), read
// synchronously inside a transaction (parsed once per version).
//   g!<group>!info   {name, meta, creator, createdAt, v, members, joined}
//   g!<group>!seq    gseq counter        g!<group>!ev!<gseq>   event JSON without its `{`
//   g!<group>!low    the oldest gseq not yet removed by retention
//   ug!<user>!<group>                    the user's groups
//   ugn!<user>       how many groups the user is in (written by every membership
//                    change; absent for data from before it: counted once from ug!)
//   g!<group>!gid!<from>!<id>   gseq of a message (idempotency per (sender, id))
// One process owns the database, so a write and its fan-out stay one batch;
// the sink hears of it once the batch is written. Retention is its own call (trimGroup).
import { markArchivePending } from './level-archive-source.ts'
import type { ClassicLevel } from 'classic-level'
import type { GroupReadResult, Group, GroupAppend, GroupChange, GroupMessageResult, GroupPage, GroupRetentionHook, GroupStore, Recipients, Role } from './group-store.ts'
import { GROUP_TRIM_MAX, GroupsFull, REMOVE_PAST_RETENTION, groupEventTs, groupPeer, groupRef, visibleWindow } from './group-store.ts'
import { formatIdRecord, formatMeta, type LogMeta } from './history-store.ts'
import { groupEventTail, parseGroupEvent, type GroupEvent, type GroupMessageEvent } from './group-events.ts'
import { editWithoutBody, MAX_EDITS_PER_MESSAGE } from './events.ts'
import type { LogSink } from './log-sink.ts'
import { countBeforeCounter, type GroupCommit, type Transaction } from './level-group-commit.ts'
import { BoundedMap } from './bounded-map.ts'

interface Info {
  name: string
  meta: Record<string, unknown> | undefined
  creator: string
  createdAt: number
  v: number
  members: Record<string, Role>
  /** The gseq before each member joined: they see what comes after. */
  joined: Record<string, number>
}

export const pad = (seq: number): string => String(seq).padStart(16, '0')
export const groupEventKey = (group: string, gseq: number): string => `g!${group}!ev!${pad(gseq)}`
/** The gseqs of a message's edit events (a recall cuts their bodies). */
const editsKey = (group: string, gseq: number): string => `g!${group}!ed!${pad(gseq)}`
const infoKey = (group: string): string => `g!${group}!info`
const gidKey = (group: string, from: string, id: string): string => `g!${group}!gid!${from}!${id}`

export class LevelGroups implements GroupStore {
  readonly #db: ClassicLevel<string, string>
  readonly #commit: GroupCommit
  /** Parsed group records, by group: a cache (at most 10,000 groups; one evicted is parsed again). */
  readonly #parsed = new BoundedMap<string, { raw: string, info: Info }>(10_000)

  /** History retention, applied to group logs too (0 keeps them forever). */
  readonly #keepMs: number
  readonly #retention: GroupRetentionHook

  constructor (db: ClassicLevel<string, string>, commit: GroupCommit, keepMs = 0, retention: GroupRetentionHook = REMOVE_PAST_RETENTION) {
    this.#keepMs = keepMs
    this.#retention = retention
    this.#db = db
    this.#commit = commit
  }

  /** The same store, asking `retention` before trimming. */
  withRetention (retention: GroupRetentionHook): LevelGroups {
    return new LevelGroups(this.#db, this.#commit, this.#keepMs, retention)
  }

  #info (tx: Pick<Transaction, 'get'>, group: string): Info | undefined {
    const raw = tx.get(infoKey(group))
    if (raw === undefined) return undefined
    const cached = this.#parsed.get(group)
    if (cached?.raw === raw) return cached.info
    const info = JSON.parse(raw) as Info
    this.#parsed.set(group, { raw, info })
    return info
  }

  #append (tx: Transaction, group: string, event: GroupEvent): { gseq: number, tail: string } {
    const gseq = Number(tx.get(`g!${group}!seq`) ?? 0) + 1
    tx.put(`g!${group}!seq`, String(gseq))
    markArchivePending(tx, `g:${group}`)
    const tail = groupEventTail(event, gseq)
    tx.put(groupEventKey(group, gseq), tail)
    return { gseq, tail }
  }

  /**
   * Retention of a group log, its own step: drops its oldest events past
   * retention that the hook lets go (bounded work per call); `low` is the
   * oldest gseq that may still exist. Members' entries for them go with their
   * own logs' retention.
   */
  async trimGroup (group: string, now = Date.now()): Promise<number> {
    if (this.#keepMs <= 0) return 0
    const upTo = await this.#retention.removableUpTo(group)
    const cutoff = now - this.#keepMs
    return this.#commit.run((tx) => {
      const head = Number(tx.get(`g!${group}!seq`) ?? 0)
      let low = Number(tx.get(`g!${group}!low`) ?? 1)
      let removed = 0
      for (let n = 0; low < head && low <= upTo && n < GROUP_TRIM_MAX; n++, low++) {
        const tail = tx.get(groupEventKey(group, low))
        if (tail !== undefined) {
          const ts = groupEventTs(tail)
          if (ts === undefined || ts >= cutoff) break
          tx.del(groupEventKey(group, low))
          const event = parseGroupEvent(tail)
          if (event?.type === 'message') {
            tx.del(gidKey(group, event.from, event.id))
            tx.del(editsKey(group, low))
          }
          removed++
        }
      }
      tx.put(`g!${group}!low`, String(low))
      return removed
    })
  }

  /** Nothing is ever pending: a write and its fan-out are one batch. */
  async sweepFanOut (): Promise<number> {
    return 0
  }

  /** Reports a written batch: every recipient's copy, and a message's arrival. */
  #report (sink: LogSink, tail: string, recipients: Recipients, message?: GroupMessageEvent): void {
    sink.appendedToMembers(tail, recipients)
    if (message === undefined) return
    for (const [user, seq] of recipients) if (user !== message.from) sink.arrived({ from: message.from, to: user, id: message.id, seq, group: message.group })
  }

  /** How many groups each of `users` is in, for those without a `ugn!` counter yet (data from before it). */
  async #countGroups (users: Iterable<string>): Promise<Map<string, number>> {
    const counted = await Promise.all([...new Set(users)].map(async (user) => [user, await countBeforeCounter(this.#db, this.#commit, `ugn!${user}`, `ug!${user}!`)] as const))
    return new Map(counted.filter((entry): entry is readonly [string, number] => entry[1] !== undefined))
  }

  /** Joins and leaves inside a transaction, keeping each user's count of groups. */
  #memberships (tx: Transaction, group: string, counted: Map<string, number>) {
    const count = (user: string): number => Number(tx.get(`ugn!${user}`) ?? counted.get(user) ?? 0)
    return {
      /** The users not yet in `group` already in `limit` groups (0: no limit). */
      full: (users: string[], limit: number): string[] =>
        limit <= 0 ? [] : users.filter((user) => tx.get(`ug!${user}!${group}`) === undefined && count(user) >= limit),
      join: (user: string): void => {
        if (tx.get(`ug!${user}!${group}`) !== undefined) return
        tx.put(`ugn!${user}`, String(count(user) + 1))
        tx.put(`ug!${user}!${group}`, '')
      },
      leave: (user: string): void => {
        if (tx.get(`ug!${user}!${group}`) === undefined) return
        tx.put(`ugn!${user}`, String(Math.max(0, count(user) - 1)))
        tx.del(`ug!${user}!${group}`)
      }
    }
  }

  /** The group event into one member's log, as a reference. */
  #fanout (tx: Transaction, group: string, user: string, gseq: number, ts: number, kind: LogMeta['kind'], dir: LogMeta['dir'], id: string): number {
    const seq = Number(tx.get(`seq!${user}`) ?? 0) + 1
    tx.put(`seq!${user}`, String(seq))
    markArchivePending(tx, `u:${user}`)
    const peer = groupPeer(group)
    tx.put(`ev!${user}!${pad(seq)}`, `${formatMeta({ seq, ts, peer, kind, dir, id, peerSeq: gseq })}\n${groupRef(group, gseq)}`)
    // Keyed by gseq, so unread counts and read marks of a group are in gseq.
    // (No per-member conversation index: a group's history is its own log.)
    if (kind === 'm' && dir === 'in') tx.put(`in!${user}!${peer}!${pad(gseq)}`, '')
    tx.put(`convs!${user}!${peer}`, String(seq))
    return seq
  }

  async getGroup (id: string): Promise<Group | undefined> {
    const info = this.#info({ get: (key) => this.#commit.read(key) }, id)
    if (info === undefined) return undefined
    return { id, name: info.name, meta: info.meta, creator: info.creator, createdAt: info.createdAt, version: info.v, members: new Map(Object.entries(info.members)) }
  }

  async createGroup (group: Parameters<GroupStore['createGroup']>[0], event: GroupEvent, sink: LogSink, maxGroupsPerUser = 0): Promise<GroupAppend> {
    const counted = await this.#countGroups(group.members.map(({ user }) => user))
    const { gseq, tail, recipients } = await this.#commit.run((tx) => {
      if (tx.get(infoKey(group.id)) !== undefined) throw new Error(`group ${group.id} exists`)
      const memberships = this.#memberships(tx, group.id, counted)
      const refused = memberships.full(group.members.map(({ user }) => user), maxGroupsPerUser)
      if (refused.length > 0) throw new GroupsFull(refused)
      const { gseq, tail } = this.#append(tx, group.id, event)
      const info: Info = { name: group.name, meta: group.meta, creator: group.creator, createdAt: group.createdAt, v: 1, members: {}, joined: {} }
      const recipients: Array<[string, number]> = []
      for (const { user, role } of group.members) {
        info.members[user] = role
        info.joined[user] = gseq - 1
        memberships.join(user)
        recipients.push([user, this.#fanout(tx, group.id, user, gseq, group.createdAt, 'e', 'in', '')])
      }
      tx.put(infoKey(group.id), JSON.stringify(info))
      return { gseq, tail, recipients }
    })
    this.#report(sink, tail, recipients)
    return { gseq }
  }

  async changeGroup (id: string, expectedVersion: number, change: GroupChange, event: GroupEvent, sink: LogSink, maxGroupsPerUser = 0): Promise<GroupAppend | 'stale' | 'too_many_edits'> {
    const counted = await this.#countGroups([...(change.upsert ?? []).map(({ user }) => user), ...change.remove ?? []])
    const outcome = await this.#commit.run((tx) => {
      const current = this.#info(tx, id)
      if (current === undefined || current.v !== expectedVersion) return 'stale' as const
      const edits = change.editOf === undefined ? undefined : JSON.parse(tx.get(editsKey(id, change.editOf)) ?? '[]') as number[]
      if (edits !== undefined && edits.length >= MAX_EDITS_PER_MESSAGE) return 'too_many_edits' as const
      const memberships = this.#memberships(tx, id, counted)
      const refused = memberships.full((change.upsert ?? []).map(({ user }) => user).filter((user) => current.members[user] === undefined), maxGroupsPerUser)
      if (refused.length > 0) throw new GroupsFull(refused)
      const info: Info = { ...current, v: current.v + 1, members: { ...current.members }, joined: { ...current.joined } }
      if (change.name !== undefined) info.name = change.name
      if (change.meta !== undefined) info.meta = change.meta ?? undefined
      // A recall's tombstone, unless retention removed the event meanwhile.
      if (change.replace !== undefined && tx.get(groupEventKey(id, change.replace.gseq)) !== undefined) tx.put(groupEventKey(id, change.replace.gseq), groupEventTail(change.replace.event, change.replace.gseq))
      const { gseq, tail } = this.#append(tx, id, event)
      // An edit is listed with its message; a recall cuts the body off each one listed.
      if (edits !== undefined) tx.put(editsKey(id, change.editOf!), JSON.stringify([...edits, gseq]))
      if (change.scrubEditsOf !== undefined) {
        for (const editGseq of JSON.parse(tx.get(editsKey(id, change.scrubEditsOf)) ?? '[]') as number[]) {
          const stored = tx.get(groupEventKey(id, editGseq))
          if (stored !== undefined) tx.put(groupEventKey(id, editGseq), editWithoutBody(stored))
        }
        tx.del(editsKey(id, change.scrubEditsOf))
      }
      for (const { user, role } of change.upsert ?? []) {
        if (info.members[user] === undefined) {
          info.joined[user] = gseq - 1
          memberships.join(user)
        }
        info.members[user] = role
      }
      for (const user of change.remove ?? []) {
        delete info.members[user]
        delete info.joined[user]
        memberships.leave(user)
      }
      tx.put(infoKey(id), JSON.stringify(info))
      const ts = event.ts
      if (change.replace !== undefined && event.type === 'recall') {
        // A recalled message no longer counts as unread (an edited one still does).
        for (const user of Object.keys(info.members)) tx.del(`in!${user}!${groupPeer(id)}!${pad(change.replace.gseq)}`)
      }
      // A removed member gets the event that removed them.
      const everyone = new Set([...Object.keys(info.members), ...change.remove ?? []])
      const recipients: Array<[string, number]> = [...everyone].map((user) => [user, this.#fanout(tx, id, user, gseq, ts, 'e', 'in', '')])
      return { gseq, tail, recipients }
    })
    if (outcome === 'stale' || outcome === 'too_many_edits') return outcome
    this.#report(sink, outcome.tail, outcome.recipients)
    return { gseq: outcome.gseq }
  }

  async appendGroupMessage (message: GroupMessageEvent, sink: LogSink): Promise<GroupMessageResult> {
    const { group, from, id, ts } = message
    const outcome = await this.#commit.run((tx) => {
      const info = this.#info(tx, group)
      if (info?.members[from] === undefined) return { status: 'not_a_member' as const }
      const peer = groupPeer(group)
      const existing = tx.get(gidKey(group, from, id))
      if (existing !== undefined) {
        const record = tx.get(`ids!${from}!${id}`)?.split('|')
        const stored = tx.get(groupEventKey(group, Number(existing)))
        const own = record !== undefined && record[1] === existing && record[2] === peer ? record[0] : undefined
        return { status: 'duplicate' as const, senderEvent: stored === undefined || own === undefined ? undefined : `{"seq":${own},${stored}` }
      }
      const { gseq, tail } = this.#append(tx, group, message)
      tx.put(gidKey(group, from, id), String(gseq))
      let senderSeq = 0
      const recipients: Array<[string, number]> = Object.keys(info.members).map((user) => {
        const seq = this.#fanout(tx, group, user, gseq, ts, 'm', user === from ? 'out' : 'in', id)
        if (user === from) senderSeq = seq
        return [user, seq]
      })
      // The sender's record of the id, as for a 1:1 message (a 1:1 record of the same id is kept).
      if (tx.get(`ids!${from}!${id}`) === undefined) tx.put(`ids!${from}!${id}`, formatIdRecord({ senderSeq, recipientSeq: gseq, to: peer, ts, recalled: false }))
      return { status: 'stored' as const, gseq, tail, recipients, senderSeq }
    })
    if (outcome.status !== 'stored') return outcome
    this.#report(sink, outcome.tail, outcome.recipients, message)
    return { status: 'stored', gseq: outcome.gseq, senderEvent: `{"seq":${outcome.senderSeq},${outcome.tail}` }
  }

  async historyBounds (id: string, member: string): Promise<{ joined: number, low: number, head: number } | 'not_a_member'> {
    const joined = this.#info({ get: (key) => this.#commit.read(key) }, id)?.joined[member]
    if (joined === undefined) return 'not_a_member'
    return { joined, low: Number(this.#commit.read(`g!${id}!low`) ?? 1), head: Number(this.#commit.read(`g!${id}!seq`) ?? 0) }
  }

  async groupEvents (id: string, member: string, range: { before?: number, after?: number, limit: number }): Promise<GroupPage | 'not_a_member'> {
    const info = this.#info({ get: (key) => this.#commit.read(key) }, id)
    const joined = info?.joined[member]
    if (joined === undefined) return 'not_a_member'
    // Nothing before `low` exists any more (retention): pages stop there.
    const low = Number(this.#commit.read(`g!${id}!low`) ?? 1)
    const window = visibleWindow(Math.max(joined, low - 1), Number(this.#commit.read(`g!${id}!seq`) ?? 0), range)
    if (window.to < window.from) return { events: [], hasMore: window.hasMore }
    const keys = Array.from({ length: window.to - window.from + 1 }, (_, i) => groupEventKey(id, window.from + i))
    const tails = await this.#db.getMany(keys)
    return { events: tails.filter((tail): tail is string => tail !== undefined).map((tail) => `{${tail}`), hasMore: window.hasMore }
  }

  async markGroupRead (group: string, user: string, gseq: number, ts: number): Promise<GroupReadResult | 'not_a_member'> {
    const peer = groupPeer(group)
    const outcome = await this.#commit.run((tx) => {
      const info = this.#info(tx, group)
      if (info?.members[user] === undefined) return 'not_a_member' as const
      const upTo = Math.min(gseq, Number(tx.get(`g!${group}!seq`) ?? 0))
      const current = Number(tx.get(`mark!${user}!read!${peer}`) ?? 0)
      if (upTo <= current) return { changed: false, previous: current, upTo: current, readerEvent: undefined }
      tx.put(`mark!${user}!read!${peer}`, String(upTo))
      tx.put(`g!${group}!read!${user}`, String(upTo))
      if (upTo > Number(tx.get(`g!${group}!dlv!${user}`) ?? 0)) tx.put(`g!${group}!dlv!${user}`, String(upTo))
      const seq = Number(tx.get(`seq!${user}`) ?? 0) + 1
      tx.put(`seq!${user}`, String(seq))
      markArchivePending(tx, `u:${user}`)
      const readerEvent = JSON.stringify({ seq, type: 'receipt', kind: 'read', by: user, group, upTo, ts })
      tx.put(`ev!${user}!${pad(seq)}`, `${formatMeta({ seq, ts, peer, kind: 'r', dir: 'out', id: '', peerSeq: 0 })}\n${readerEvent}`)
      return { changed: true, previous: current, upTo, readerEvent }
    })
    if (outcome === 'not_a_member') return outcome
    const prefix = `in!${user}!${peer}!`
    const unread = (await this.#db.keys({ gt: prefix + pad(outcome.upTo), lt: prefix + '~' }).all()).length
    return { ...outcome, unread }
  }

  markGroupDelivered (marks: Array<{ group: string, user: string, gseq: number }>): Promise<void> {
    return this.#commit.run((tx) => {
      for (const { group, user, gseq } of marks) {
        if (gseq > Number(tx.get(`g!${group}!dlv!${user}`) ?? 0)) tx.put(`g!${group}!dlv!${user}`, String(gseq))
      }
    })
  }

  async groupMarks (group: string): Promise<{ read: Map<string, number>, delivered: Map<string, number> }> {
    const marks = async (name: string): Promise<Map<string, number>> => {
      const prefix = `g!${group}!${name}!`
      const entries = await this.#db.iterator({ gt: prefix, lt: prefix + '~' }).all()
      return new Map(entries.map(([key, value]) => [key.slice(prefix.length), Number(value)]))
    }
    return { read: await marks('read'), delivered: await marks('dlv') }
  }

  setMute (group: string, user: string, until: number | undefined): Promise<void> {
    return this.#commit.run((tx) => until === undefined ? tx.del(`g!${group}!mute!${user}`) : tx.put(`g!${group}!mute!${user}`, String(until)))
  }

  async mutedUntil (group: string, user: string): Promise<number | undefined> {
    const value = this.#commit.read(`g!${group}!mute!${user}`)
    return value === undefined ? undefined : Number(value)
  }

  async groupEvent (group: string, gseq: number): Promise<string | undefined> {
    return this.#commit.read(groupEventKey(group, gseq))
  }

  async groupsOf (user: string): Promise<string[]> {
    const prefix = `ug!${user}!`
    return (await this.#db.keys({ gt: prefix, lt: prefix + '~' }).all()).map((key) => key.slice(prefix.length))
  }
}
