// What a chat view needs to know about its conversation, for the two kinds:
// a 1:1 conversation (ordered by our seq; REST /v1/conversations/:peer/...)
// and a group (ordered by gseq; REST /v1/groups/:id/...). The view itself
// is the same for both.
import type { EditEvent, MessageEvent, RecallEvent, ReplyTo } from '../../client-sdk/src/index.ts'
import type { Connection } from './connection.ts'
import { groupKey, keyOf, positionOf } from './store.ts'

/** A row of a chat: a message, or (groups) a membership change shown as a line of text. */
export type ChatItem = MessageEvent | { type: 'notice', position: number, ts: number, text: string }

export interface ChatTarget {
  kind: 'peer' | 'group'
  /** The store's key for this conversation. */
  key: string
  /** The id in REST paths and MQTT topics: the peer's user id, or the group id. */
  id: string
  /** Does this message (live, from the store) belong here? */
  has (message: { from: string, to?: string, group?: string }): boolean
  /** A page of the newest items before `before` (a position), oldest first (groups: also the page's raw events). */
  history (before: number | undefined, limit: number): Promise<{ items: ChatItem[], hasMore: boolean, events?: Array<Record<string, unknown>> }>
  send (text: string, replyTo?: ReplyTo): Promise<MessageEvent>
  /** How a reply names `message` here: `{id, from}` (1:1) or `{gseq}` (group). */
  replyTo (message: MessageEvent): ReplyTo
  /** The position of the message a reply names, if it is one of this conversation's. */
  replied (replyTo: ReplyTo): number | undefined
  /** Replaces the text of one of your messages (within the server's edit window). */
  edit (message: MessageEvent, text: string): Promise<void>
  /** The position of the message an edit event changes. */
  edited (edit: EditEvent): number | undefined
  typing (active: boolean): void
  markRead (upTo: number): Promise<{ readUpTo: number, unread: number }>
  recall (message: MessageEvent): Promise<void>
  /** The position of the message a recall event takes back. */
  recalled (recall: RecallEvent): number | undefined
}

export function peerTarget (connection: Connection, me: string, peer: string): ChatTarget {
  return {
    kind: 'peer',
    key: peer,
    id: peer,
    has: (message) => message.group === undefined && keyOf(message, me) === peer,
    async history (before, limit) {
      const client = await connection.client()
      const page = await client.history(peer, before === undefined ? { limit } : { before, limit })
      return { items: page.messages, hasMore: page.hasMore }
    },
    send: async (text, replyTo) => (await connection.client()).send(peer, text, replyTo === undefined ? {} : { replyTo }),
    replyTo: (message) => ({ id: message.id, from: message.from }),
    replied: () => undefined,
    async edit (message, text) { await (await connection.client()).edit(message.id, text) },
    edited: (edit) => edit.group === undefined ? edit.messageSeq : undefined,
    typing: (active) => { void connection.client().then((client) => client.typing(peer, active), () => {}) },
    markRead: async (upTo) => (await connection.client()).markRead(peer, upTo),
    async recall (message) { await (await connection.client()).recall(message.id) },
    recalled: (recall) => recall.group === undefined ? recall.messageSeq : undefined
  }
}

/** A membership change in words, for the chat ("alice added bob"). */
function noticeText (event: Record<string, unknown>): string | undefined {
  const by = String(event.by ?? '')
  const users = Array.isArray(event.users) ? event.users.join(', ') : ''
  switch (event.type) {
    case 'group_created': return `${by} created the group "${String(event.name ?? '')}"`
    case 'member_added': return `${by} added ${users}`
    case 'member_removed': return event.reason === 'left' ? `${String(event.user)} left` : `${by} removed ${String(event.user)}`
    case 'role_changed': return `${by} changed roles: ${Object.entries(event.roles as Record<string, string> ?? {}).map(([user, role]) => `${user} is ${role}`).join(', ')}`
    case 'group_updated': return typeof event.name === 'string' ? `${by} renamed the group "${event.name}"` : `${by} updated the group`
    default: return undefined
  }
}

/** A group event (from history or live) as a chat item; receipts and recalls are not rows. */
export function groupItem (event: Record<string, unknown>): ChatItem | undefined {
  if (event.type === 'message') return event as unknown as MessageEvent
  const text = noticeText(event)
  return text === undefined ? undefined : { type: 'notice', position: Number(event.gseq), ts: Number(event.ts), text }
}

export function groupTarget (connection: Connection, group: string): ChatTarget {
  return {
    kind: 'group',
    key: groupKey(group),
    id: group,
    has: (message) => message.group === group,
    async history (before, limit) {
      const client = await connection.client()
      const page = await client.groups.history(group, before === undefined ? { limit } : { before, limit })
      const items = page.events.map(groupItem).filter((item): item is ChatItem => item !== undefined)
      return { items, hasMore: page.hasMore, events: page.events }
    },
    send: async (text, replyTo) => (await connection.client()).sendToGroup(group, text, replyTo === undefined ? {} : { replyTo }),
    replyTo: (message) => ({ gseq: positionOf(message) }),
    replied: (replyTo) => replyTo.gseq,
    async edit (message, text) { await (await connection.client()).groups.edit(group, positionOf(message), text) },
    edited: (edit) => edit.group === group ? edit.messageGseq : undefined,
    typing: (active) => { void connection.client().then((client) => client.typingInGroup(group, active), () => {}) },
    markRead: async (upTo) => (await connection.client()).groups.markRead(group, upTo),
    async recall (message) { await (await connection.client()).groups.recall(group, positionOf(message)) },
    recalled: (recall) => recall.group === group ? recall.messageGseq : undefined
  }
}

/** Where an item stands in its conversation. */
export const itemPosition = (item: ChatItem): number => item.type === 'notice' ? item.position : positionOf(item)
