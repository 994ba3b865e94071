// The JSON of group events, made in one place. Services build a typed
// GroupEvent; the stores insert the gseq (Redis inside its script, from the
// template made here) and a member's copy is `{"seq":N,` + the stored tail.
// Field order is part of the contract: `type`, then for a message
// `id, from, group, gseq` (groupMessageHeader in events.ts reads that prefix),
// for every other event `group, gseq`; `ts` right after gseq (retention finds
// it there when a body defeats a JSON decoder).
import type { AttachmentRef } from '../protocol/attachments.ts'
import type { ReplyTo } from '../protocol/relations.ts'

/** A member's role in a group. */
export type Role = 'owner' | 'admin' | 'member'

interface Base { group: string, ts: number }

export type GroupMessageEvent = Base & {
  type: 'message'
  id: string
  from: string
  replyTo?: ReplyTo
  body?: unknown
  /** Uploaded files, as the server checked them (protocol/attachments.ts). */
  attachments?: AttachmentRef[]
  /** Edited by its sender (the body is the latest). */
  edited?: true
  editedAt?: number
  /** A tombstone: the body is gone. */
  recalled?: true
  recalledAt?: number
  by?: string
}

export type GroupEvent =
  | GroupMessageEvent
  | Base & { type: 'group_created', by: string, name: string, members: string[] }
  | Base & { type: 'group_updated', by: string, name: string, meta: Record<string, unknown> | null }
  | Base & { type: 'member_added', by: string, users: string[] }
  | Base & { type: 'member_removed', by: string, user: string, reason: 'left' | 'removed' }
  | Base & { type: 'role_changed', by: string, roles: Record<string, Role> }
  | Base & { type: 'recall', messageGseq: number, id: string, from: string, by: string }
  | Base & { type: 'edit', messageGseq: number, id: string, from: string, body: unknown }

/** A stored event, as read back (with its gseq). */
export type StoredGroupEvent = GroupEvent & { gseq: number }

/** The stored JSON without its `{`, split around the gseq: `{` + pre + gseq + post. */
export function groupEventTemplate (event: GroupEvent): { pre: string, post: string } {
  const { type, group, ts, ...rest } = event
  const head = event.type === 'message'
    ? `"type":"message","id":${JSON.stringify(event.id)},"from":${JSON.stringify(event.from)},"group":${JSON.stringify(group)},"gseq":`
    : `"type":${JSON.stringify(type)},"group":${JSON.stringify(group)},"gseq":`
  const fields: Record<string, unknown> = { ts, ...rest }
  if (event.type === 'message') { delete fields.id; delete fields.from }
  const post = Object.entries(fields).filter(([, value]) => value !== undefined).map(([key, value]) => `,${JSON.stringify(key)}:${JSON.stringify(value)}`).join('')
  return { pre: head, post: `${post}}` }
}

/** The stored tail of `event` at `gseq`. */
export function groupEventTail (event: GroupEvent, gseq: number): string {
  const { pre, post } = groupEventTemplate(event)
  return pre + gseq + post
}

/** A stored tail back to its event (undefined if it is not one). */
export function parseGroupEvent (tail: string): StoredGroupEvent | undefined {
  try {
    const event = JSON.parse(`{${tail}`) as StoredGroupEvent
    return typeof event === 'object' && event !== null && typeof event.type === 'string' && typeof event.gseq === 'number' ? event : undefined
  } catch {
    return undefined
  }
}

/** Who joins and who leaves the group with this event (the fan-out applies it to their `groups`). */
export function membershipChange (event: GroupEvent): { joins: string[], leaves: string[] } {
  switch (event.type) {
    case 'group_created': return { joins: event.members, leaves: [] }
    case 'member_added': return { joins: event.users, leaves: [] }
    case 'member_removed': return { joins: [], leaves: [event.user] }
    default: return { joins: [], leaves: [] }
  }
}

/** How an event stands in a member's log: its meta line's kind, direction and id. */
export function memberEntry (event: GroupEvent, member: string): { kind: 'm' | 'e', dir: 'in' | 'out', id: string } {
  if (event.type === 'message') return { kind: 'm', dir: event.from === member ? 'out' : 'in', id: event.id }
  return { kind: 'e', dir: 'in', id: '' }
}

/** The tail of the reader's own receipt for a group read mark (their other devices learn it); the store prefixes the seq. */
export function groupReadReceiptTail (by: string, group: string, upTo: number, ts: number): string {
  return JSON.stringify({ type: 'receipt', kind: 'read', by, group, upTo, ts }).slice(1)
}

/** The tail of a sender's notice: who read their messages in the group, up to which gseq. */
export function groupReadersNoticeTail (group: string, readers: Record<string, number>, ts: number): string {
  return JSON.stringify({ type: 'receipt', kind: 'read', group, readers, ts }).slice(1)
}
