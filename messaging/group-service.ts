// Groups, independent of transport: who may do what, and what each change
// tells the members. The store applies a change only if the group has not
// changed since it was read (its version), so two admins acting at once on
// two processes cannot both act on a stale membership: the loser re-reads
// and decides again.
//   owner: everything; the only one who changes roles (handing over
//          ownership makes the old owner an admin); leaves only after that.
//   admin: renames, edits metadata, adds members, removes members (not the
//          owner, not another admin).
//   member: sends, reads, leaves.
import { randomUUID } from 'node:crypto'
import { GROUP_TRIM_EVERY, GroupsFull, type Group, type GroupChange, type GroupPage, type GroupStore, type Role } from '../history/group-store.ts'
import { groupEventTail, groupReadersNoticeTail, parseGroupEvent, type GroupEvent, type GroupMessageEvent } from '../history/group-events.ts'
import type { LogStore } from '../history/history-store.ts'
import { MAX_EDITS_PER_MESSAGE } from '../history/events.ts'
import { isValidId } from '../protocol/identity.ts'
import { PublishRejected } from '../protocol/errors.ts'
import { checkedAttachments, type ReferenceAttachments, type SendEphemeral } from './message-service.ts'
import type { OutgoingMessage } from '../protocol/message.ts'
import type { AttachmentRef } from '../protocol/attachments.ts'
import type { LogSink } from '../history/log-sink.ts'

export type GroupErrorCode =
  | 'group_not_found' | 'not_a_member' | 'not_allowed' | 'already_a_member' | 'member_not_found'
  | 'too_many_members' | 'too_many_groups' | 'owner_must_hand_over' | 'invalid_group' | 'id_conflict'
  | 'message_not_found' | 'recall_window_expired' | 'edit_window_expired' | 'message_recalled' | 'too_many_edits'

/** A group request the rules refuse; the doors map `code` to an HTTP status or an error event. */
export class GroupRejected extends Error {
  constructor (readonly code: GroupErrorCode, message: string) {
    super(message)
  }
}

export interface GroupView {
  id: string
  name: string
  meta: Record<string, unknown> | null
  creator: string
  createdAt: number
  members: Array<{ user: string, role: Role }>
}

export interface GroupServiceOptions {
  groups: GroupStore
  /** Where read receipts for senders are appended. */
  history: Pick<LogStore, 'appendNotices'>
  /** Read receipts to a sender are collected for this long, then sent as one event. */
  readCoalesceMs?: number
  /** Where durable appends are reported (messaging/log-delivery.ts). */
  log: LogSink
  ephemeral: SendEphemeral
  maxMembers: number
  /** Groups one user may be a member of (0: no limit): creating or adding beyond it is refused whole. */
  maxGroupsPerUser?: number
  /** How long a sender may recall their own message; admins and the owner may recall any, any time. */
  recallWindowMs: number
  /** Undefined without attachment storage: messages with attachments are refused. */
  attachments?: ReferenceAttachments
  /** How long a sender may edit their own message (nobody else may); 0 by default (no edits). */
  editWindowMs?: number
  now?: () => number
  /** Delivered marks from PUBACKs are written at most this often. */
  coalesceMs?: number
  /** How often this process sweeps for group fan-outs a dead process left (0: never). */
  sweepMs?: number
  onError?: (error: unknown) => void
}

/** Whether `user` has muted the group now. */
export async function isMuted (groups: GroupStore, user: string, group: string, now = Date.now()): Promise<boolean> {
  const until = await groups.mutedUntil(group, user)
  return until !== undefined && (until === 0 || until > now)
}

const MAX_NAME = 100
const MAX_META_BYTES = 2048
const RANK: Record<Role, number> = { member: 0, admin: 1, owner: 2 }

const json = (value: unknown): string => JSON.stringify(value)

function view (group: Group): GroupView {
  const members = [...group.members].map(([user, role]) => ({ user, role })).sort((a, b) => RANK[b.role] - RANK[a.role] || a.user.localeCompare(b.user))
  return { id: group.id, name: group.name, meta: group.meta ?? null, creator: group.creator, createdAt: group.createdAt, members }
}

function checkName (name: unknown): string {
  if (typeof name !== 'string' || name.trim() === '' || name.length > MAX_NAME) throw new GroupRejected('invalid_group', `"name" must be 1-${MAX_NAME} characters`)
  return name
}

function checkMeta (meta: unknown): Record<string, unknown> | undefined {
  if (meta === undefined || meta === null) return undefined
  if (typeof meta !== 'object' || Array.isArray(meta)) throw new GroupRejected('invalid_group', '"meta" must be a JSON object')
  if (Buffer.byteLength(JSON.stringify(meta)) > MAX_META_BYTES) throw new GroupRejected('invalid_group', `"meta" must be at most ${MAX_META_BYTES} bytes of JSON`)
  return meta as Record<string, unknown>
}

export class GroupService {
  readonly #groups: GroupStore
  readonly #log: LogSink
  readonly #ephemeral: SendEphemeral
  readonly #maxMembers: number
  readonly #maxGroupsPerUser: number
  readonly #recallWindowMs: number
  readonly #editWindowMs: number
  readonly #now: () => number
  readonly #coalesceMs: number
  readonly #onError: (error: unknown) => void
  readonly #history: Pick<LogStore, 'appendNotices'>
  readonly #readCoalesceMs: number
  /** `group \n sender` → reader → their read mark (gseq), not yet told. */
  readonly #reads = new Map<string, Map<string, number>>()
  #readTimer: NodeJS.Timeout | undefined
  /** `group \n user` → highest gseq acknowledged by a device, not yet written. */
  readonly #delivered = new Map<string, number>()
  #flushTimer: NodeJS.Timeout | undefined
  readonly #sweeper: NodeJS.Timeout | undefined

  readonly #attachments: ReferenceAttachments | undefined

  constructor ({ groups, history, log, ephemeral, maxMembers, maxGroupsPerUser = 0, recallWindowMs, editWindowMs = 0, attachments, now = Date.now, coalesceMs = 250, readCoalesceMs = 1000, sweepMs = 1000, onError = () => {} }: GroupServiceOptions) {
    this.#history = history
    this.#attachments = attachments
    this.#readCoalesceMs = readCoalesceMs
    this.#recallWindowMs = recallWindowMs
    this.#editWindowMs = editWindowMs
    this.#maxGroupsPerUser = maxGroupsPerUser
    this.#groups = groups
    this.#log = log
    this.#ephemeral = ephemeral
    this.#maxMembers = maxMembers
    this.#now = now
    this.#coalesceMs = coalesceMs
    this.#onError = onError
    if (sweepMs > 0) {
      this.#sweeper = setInterval(() => { groups.sweepFanOut(log).catch(onError) }, sweepMs)
      this.#sweeper.unref()
    }
  }

  /** The group as `user` may see it: only members see a group at all. */
  async #memberView (user: string, id: string): Promise<Group> {
    const group = await this.#groups.getGroup(id)
    if (group === undefined || !group.members.has(user)) throw new GroupRejected('group_not_found', 'no such group among yours')
    return group
  }

  async create (creator: string, request: { name: unknown, meta?: unknown, members?: string[] }): Promise<GroupView> {
    const name = checkName(request.name)
    const meta = checkMeta(request.meta)
    const others = [...new Set(request.members ?? [])].filter((user) => user !== creator)
    if (others.some((user) => !isValidId(user))) throw new GroupRejected('invalid_group', 'members must be user ids')
    if (others.length + 1 > this.#maxMembers) throw new GroupRejected('too_many_members', `a group has at most ${this.#maxMembers} members`)
    const id = `g${randomUUID().replace(/-/g, '').slice(0, 20)}`
    const members = [{ user: creator, role: 'owner' as const }, ...others.map((user) => ({ user, role: 'member' as const }))]
    const createdAt = this.#now()
    await this.#refuseFull(creator, () => this.#groups.createGroup({ id, name, meta, creator, createdAt, members },
      { type: 'group_created', group: id, ts: createdAt, by: creator, name, members: members.map(({ user }) => user) }, this.#log, this.#maxGroupsPerUser))
    return view((await this.#groups.getGroup(id))!)
  }

  async get (user: string, id: string): Promise<GroupView> {
    return view(await this.#memberView(user, id))
  }

  async list (user: string): Promise<GroupView[]> {
    const groups = await Promise.all((await this.#groups.groupsOf(user)).map((id) => this.#groups.getGroup(id)))
    return groups.filter((group): group is Group => group !== undefined && group.members.has(user)).map(view)
  }

  /** Reads, decides and applies; if another change landed in between, decides again on the new state. */
  async #change (actor: string, id: string, decide: (group: Group) => { change: GroupChange, event: GroupEvent }): Promise<GroupView> {
    for (let attempt = 0; attempt < 10; attempt++) {
      const group = await this.#memberView(actor, id)
      const { change, event } = decide(group)
      const appended = await this.#refuseFull(actor, () => this.#groups.changeGroup(id, group.version, change, event, this.#log, this.#maxGroupsPerUser))
      if (appended === 'stale') continue
      return view((await this.#groups.getGroup(id)) ?? { ...group, members: new Map() })
    }
    throw new Error(`group ${id} kept changing; try again`)
  }

  /** The store refused a membership over MAX_GROUPS_PER_USER (nothing changed): say whose. */
  async #refuseFull<T> (actor: string, work: () => Promise<T>): Promise<T> {
    try {
      return await work()
    } catch (error) {
      if (!(error instanceof GroupsFull)) throw error
      const users = error.users
      const who = users.length === 1 && users[0] === actor ? 'you are' : `${users.join(', ')} ${users.length === 1 ? 'is' : 'are'}`
      throw new GroupRejected('too_many_groups', `${who} already in ${this.#maxGroupsPerUser} groups, the most allowed`)
    }
  }

  #require (group: Group, actor: string, role: Role, what: string): void {
    if (RANK[group.members.get(actor)!] < RANK[role]) throw new GroupRejected('not_allowed', `only ${role === 'owner' ? 'the owner' : 'an admin or the owner'} may ${what}`)
  }

  update (actor: string, id: string, request: { name?: unknown, meta?: unknown }): Promise<GroupView> {
    const change: GroupChange = {}
    if (request.name !== undefined) change.name = checkName(request.name)
    if (request.meta !== undefined) change.meta = checkMeta(request.meta) ?? null
    return this.#change(actor, id, (group) => {
      this.#require(group, actor, 'admin', 'rename the group or edit its metadata')
      return { change, event: { type: 'group_updated', group: id, ts: this.#now(), by: actor, name: change.name ?? group.name, meta: change.meta === undefined ? group.meta ?? null : change.meta } }
    })
  }

  addMembers (actor: string, id: string, users: string[]): Promise<GroupView> {
    const wanted = [...new Set(users)]
    if (wanted.length === 0 || wanted.some((user) => !isValidId(user))) throw new GroupRejected('invalid_group', '"users" must be one or more user ids')
    return this.#change(actor, id, (group) => {
      this.#require(group, actor, 'admin', 'add members')
      const already = wanted.filter((user) => group.members.has(user))
      if (already.length > 0) throw new GroupRejected('already_a_member', `already a member: ${already.join(', ')}`)
      if (group.members.size + wanted.length > this.#maxMembers) throw new GroupRejected('too_many_members', `a group has at most ${this.#maxMembers} members`)
      return {
        change: { upsert: wanted.map((user) => ({ user, role: 'member' as const })) },
        event: { type: 'member_added', group: id, ts: this.#now(), by: actor, users: wanted }
      }
    })
  }

  /** Removes `user`; removing oneself is leaving. */
  removeMember (actor: string, id: string, user: string): Promise<GroupView> {
    return this.#change(actor, id, (group) => {
      const role = group.members.get(user)
      if (role === undefined) throw new GroupRejected('member_not_found', `${user} is not a member`)
      if (user === actor) {
        if (role === 'owner' && group.members.size > 1) throw new GroupRejected('owner_must_hand_over', 'the owner must make another member the owner before leaving')
      } else {
        this.#require(group, actor, 'admin', 'remove members')
        if (role === 'owner') throw new GroupRejected('not_allowed', 'the owner cannot be removed')
        if (role === 'admin' && group.members.get(actor) !== 'owner') throw new GroupRejected('not_allowed', 'only the owner may remove an admin')
      }
      return {
        change: { remove: [user] },
        // They get it too: their own last event of this group.
        event: { type: 'member_removed', group: id, ts: this.#now(), by: actor, user, reason: user === actor ? 'left' : 'removed' }
      }
    })
  }

  /** Owner only. Making someone the owner hands ownership over: the old owner becomes an admin. */
  setRole (actor: string, id: string, user: string, role: Role): Promise<GroupView> {
    return this.#change(actor, id, (group) => {
      this.#require(group, actor, 'owner', 'change roles')
      if (!group.members.has(user)) throw new GroupRejected('member_not_found', `${user} is not a member`)
      if (user === actor) throw new GroupRejected('not_allowed', 'hand ownership over by making another member the owner')
      const roles: Record<string, Role> = { [user]: role }
      if (role === 'owner') roles[actor] = 'admin'
      return {
        change: { upsert: Object.entries(roles).map(([member, newRole]) => ({ user: member, role: newRole })) },
        event: { type: 'role_changed', group: id, ts: this.#now(), by: actor, roles }
      }
    })
  }

  /**
   * A member's message to the group: durable once in the group log, then in
   * every member's log (the sender's own copy first: `event` is it).
   * Throws PublishRejected.
   */
  async send (from: string, group: string, message: OutgoingMessage, durable: boolean): Promise<{ created: boolean, event: string | undefined }> {
    let attachments: AttachmentRef[] | undefined
    if (message.attachments !== undefined) {
      // Only a member may grant the group's members read access.
      const current = await this.#groups.getGroup(group)
      if (current === undefined || !current.members.has(from)) throw new PublishRejected('not_a_member', 'you are not a member of this group', message.id)
      attachments = await checkedAttachments(this.#attachments, from, { group }, message)
    }
    const event = { type: 'message' as const, id: message.id, from, group, ts: this.#now(), ...(message.replyTo === undefined ? {} : { replyTo: message.replyTo }), body: message.body, ...(attachments === undefined ? {} : { attachments }) }
    if (!durable) {
      const current = await this.#groups.getGroup(group)
      if (current === undefined || !current.members.has(from)) throw new PublishRejected('not_a_member', 'you are not a member of this group', message.id)
      // No gseq: an ephemeral message is not in the group log.
      const { gseq: _, ...ephemeral } = { ...JSON.parse(`{${groupEventTail(event, 0)}`) as Record<string, unknown> }
      const text = json(ephemeral)
      await Promise.all([...current.members.keys()].map((user) => this.#ephemeral(user, text)))
      return { created: true, event: undefined }
    }
    const result = await this.#groups.appendGroupMessage(event, this.#log)
    if (result.status === 'not_a_member') throw new PublishRejected('not_a_member', 'you are not a member of this group', message.id)
    if (result.status === 'duplicate') return { created: false, event: result.senderEvent }
    // Retention is its own step, after the write and off the PUBACK's path.
    if (result.gseq % GROUP_TRIM_EVERY === 0) this.#groups.trimGroup(group).catch(this.#onError)
    return { created: true, event: result.senderEvent }
  }

  /** Mutes the group's alerts for `user` (until a time in ms, or until unmuted); unread counts go on. */
  async mute (user: string, group: string, until: number | undefined | null): Promise<{ mutedUntil: number | null }> {
    await this.#memberView(user, group)
    await this.#groups.setMute(group, user, until === null ? undefined : until ?? 0)
    return { mutedUntil: until === null ? null : until ?? 0 }
  }

  /** Typing in a group: ephemeral, to the other members' connected devices. */
  async typing (from: string, group: string, active: boolean): Promise<void> {
    const current = await this.#groups.getGroup(group)
    if (current === undefined || !current.members.has(from)) throw new PublishRejected('not_a_member', 'you are not a member of this group')
    const event = json({ type: 'typing', from, group, active, ts: this.#now() })
    await Promise.all([...current.members.keys()].filter((user) => user !== from).map((user) => this.#ephemeral(user, event)))
  }

  /**
   * Recalls the group message `gseq`: its sender within the recall window, an
   * admin or the owner at any time. The one stored copy becomes a tombstone,
   * so every member's log shows it at once, and every member gets a `recall`.
   */
  async recall (actor: string, id: string, gseq: number): Promise<Record<string, unknown>> {
    for (let attempt = 0; attempt < 10; attempt++) {
      const group = await this.#memberView(actor, id)
      const stored = await this.#groups.groupEvent(id, gseq)
      const message = stored === undefined ? undefined : parseGroupEvent(stored)
      if (message?.type !== 'message') throw new GroupRejected('message_not_found', 'no message with this gseq in the group')
      if (message.recalled === true) return { ...message }
      const moderator = RANK[group.members.get(actor)!] >= RANK.admin
      if (!moderator && message.from !== actor) throw new GroupRejected('not_allowed', 'only its sender, an admin or the owner may recall a message')
      const now = this.#now()
      if (!moderator && now - message.ts > this.#recallWindowMs) throw new GroupRejected('recall_window_expired', 'the recall window for this message has passed')
      const tombstone = { type: 'message' as const, id: message.id, from: message.from, group: id, ts: message.ts, recalled: true as const, recalledAt: now, by: actor }
      // The edit events' bodies go with the message's.
      const appended = await this.#groups.changeGroup(id, group.version, { replace: { gseq, event: tombstone }, scrubEditsOf: gseq },
        { type: 'recall', group: id, ts: now, messageGseq: gseq, id: message.id, from: message.from, by: actor }, this.#log)
      if (appended === 'stale') continue
      return JSON.parse(`{${groupEventTail(tombstone, gseq)}`) as Record<string, unknown>
    }
    throw new Error(`group ${id} kept changing; try again`)
  }

  /**
   * Edits the group message `gseq`: only its sender, within the edit window, never a
   * recalled one. The one stored copy takes the new body (`edited`, `editedAt`), so every
   * member's log shows it at once, and every member gets an `edit` event with the body.
   * Editing to the body it already has changes nothing (a retry is harmless).
   */
  async edit (actor: string, id: string, gseq: number, body: unknown): Promise<Record<string, unknown>> {
    for (let attempt = 0; attempt < 10; attempt++) {
      const group = await this.#memberView(actor, id)
      const stored = await this.#groups.groupEvent(id, gseq)
      const message = stored === undefined ? undefined : parseGroupEvent(stored)
      if (message?.type !== 'message') throw new GroupRejected('message_not_found', 'no message with this gseq in the group')
      if (message.from !== actor) throw new GroupRejected('not_allowed', 'only its sender may edit a message')
      if (message.recalled === true) throw new GroupRejected('message_recalled', 'the message was recalled')
      const now = this.#now()
      if (now - message.ts > this.#editWindowMs) throw new GroupRejected('edit_window_expired', 'the edit window for this message has passed')
      if (JSON.stringify(message.body) === JSON.stringify(body)) return { ...message }
      const edited: GroupMessageEvent = {
        type: 'message', id: message.id, from: message.from, group: id, ts: message.ts,
        ...(message.replyTo === undefined ? {} : { replyTo: message.replyTo }), body, edited: true, editedAt: now
      }
      const appended = await this.#groups.changeGroup(id, group.version, { replace: { gseq, event: edited }, editOf: gseq },
        { type: 'edit', group: id, ts: now, messageGseq: gseq, id: message.id, from: message.from, body }, this.#log)
      if (appended === 'stale') continue
      if (appended === 'too_many_edits') throw new GroupRejected('too_many_edits', `a message may be edited at most ${MAX_EDITS_PER_MESSAGE} times`)
      return JSON.parse(`{${groupEventTail(edited, gseq)}`) as Record<string, unknown>
    }
    throw new Error(`group ${id} kept changing; try again`)
  }

  /** Marks the group read up to `gseq` for `user`; their other devices get a `receipt` event. */
  async read (user: string, group: string, gseq: number): Promise<{ readUpTo: number, unread: number }> {
    const result = await this.#groups.markGroupRead(group, user, gseq, this.#now())
    if (result === 'not_a_member') throw new GroupRejected('group_not_found', 'no such group among yours')
    if (result.readerEvent !== undefined) this.#log.appended(user, result.readerEvent)
    if (result.changed) await this.#collectReaders(user, group, result.previous, result.upTo)
    return { readUpTo: result.upTo, unread: result.unread }
  }

  /** The senders of the messages just read learn it, coalesced: one event per sender and window. */
  async #collectReaders (reader: string, group: string, previous: number, upTo: number): Promise<void> {
    const page = await this.#groups.groupEvents(group, reader, { after: Math.max(previous, upTo - 100), limit: 100 })
    if (page === 'not_a_member') return
    const senders = new Set(page.events.map((event) => JSON.parse(event) as { type: string, from?: string, gseq: number })
      .filter((event) => event.type === 'message' && event.gseq <= upTo && event.from !== undefined && event.from !== reader)
      .map((event) => event.from!))
    for (const sender of senders) {
      const key = `${group}\n${sender}`
      let readers = this.#reads.get(key)
      if (readers === undefined) this.#reads.set(key, readers = new Map())
      readers.set(reader, Math.max(readers.get(reader) ?? 0, upTo))
    }
    if (senders.size > 0) this.#readTimer ??= setTimeout(() => { this.#flushReads().catch(this.#onError) }, this.#readCoalesceMs)
  }

  async #flushReads (): Promise<void> {
    this.#readTimer = undefined
    const ts = this.#now()
    const notices = [...this.#reads].map(([key, readers]) => {
      const [group, sender] = key.split('\n') as [string, string]
      return { user: sender, peer: `g:${group}`, ts, tail: groupReadersNoticeTail(group, Object.fromEntries(readers), ts) }
    })
    this.#reads.clear()
    const events = await this.#history.appendNotices(notices)
    for (const { user, event } of events) this.#log.appended(user, event)
  }

  /** A member's device acknowledged a group event (PUBACK): coalesced into one write per window. */
  delivered (user: string, group: string, gseq: number): void {
    const key = `${group}\n${user}`
    if ((this.#delivered.get(key) ?? 0) < gseq) this.#delivered.set(key, gseq)
    this.#flushTimer ??= setTimeout(() => { this.flush().catch(this.#onError) }, this.#coalesceMs)
  }

  async flush (): Promise<void> {
    this.#flushTimer = undefined
    const marks = [...this.#delivered].map(([key, gseq]) => {
      const [group, user] = key.split('\n') as [string, string]
      return { group, user, gseq }
    })
    this.#delivered.clear()
    await this.#groups.markGroupDelivered(marks)
  }

  async close (): Promise<void> {
    clearTimeout(this.#flushTimer)
    clearTimeout(this.#readTimer)
    clearInterval(this.#sweeper)
    await this.flush().catch(this.#onError)
    await this.#flushReads().catch(this.#onError)
  }

  /** Who of the current members has read, and whose devices have received, the group event `gseq`. */
  async receipts (user: string, group: string, gseq: number): Promise<{ read: string[], delivered: string[] }> {
    const current = await this.#memberView(user, group)
    const marks = await this.#groups.groupMarks(group)
    const reached = (map: Map<string, number>): string[] => [...current.members.keys()].filter((member) => (map.get(member) ?? 0) >= gseq).sort()
    return { read: reached(marks.read), delivered: reached(marks.delivered) }
  }

  /** The group's events a member may read (from when they joined), by gseq. */
  async history (user: string, id: string, range: { before?: number, after?: number, limit: number }): Promise<GroupPage> {
    const page = await this.#groups.groupEvents(id, user, range)
    if (page === 'not_a_member') throw new GroupRejected('group_not_found', 'no such group among yours')
    return page
  }
}
