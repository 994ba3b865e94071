// The JSON of log events that the server itself creates: the one place their
// bytes are made. Field order is part of the contract (`seq` first, so a store
// can give an event its seq by prefixing `{"seq":N,` to the tail made here;
// receipt detection reads the prefix of message events). Redis scripts only
// put numbers into the tails and templates built here.
import type { ReceiptKind } from './history-store.ts'
import type { MessageEnvelope } from '../protocol/message.ts'

/** A stored message envelope: the stamped tail prefixed with the owner's seq. */
export function withSeq (seq: number, tail: string): string {
  return `{"seq":${seq},${tail}`
}

export function receiptEvent (seq: number, kind: ReceiptKind, by: string, peer: string, upTo: number, id: string, ts: number): string {
  return JSON.stringify({ seq, type: 'receipt', kind, by, peer, upTo, id, ts })
}

export function recallEvent (seq: number, id: string, from: string, to: string, messageSeq: number, ts: number): string {
  return JSON.stringify({ seq, type: 'recall', id, from, to, messageSeq, ts })
}

/** An edit: the message at `messageSeq` (the receiving log's seq) now has `body`. `body` last, so a reader of the prefix never parses it. */
export function editEvent (seq: number, id: string, from: string, to: string, messageSeq: number, ts: number, body: unknown): string {
  return JSON.stringify({ seq, type: 'edit', id, from, to, messageSeq, ts, body })
}

/** An edit event's tail around its `messageSeq` (the recipient's, known only where it is written): `{"seq":N,` + pre + messageSeq + post. */
export function editTemplate (id: string, from: string, to: string, ts: number, body: unknown): { pre: string, post: string } {
  const tail = tailOf(editEvent(0, id, from, to, 0, ts, body))
  const at = tail.indexOf('"messageSeq":0') + '"messageSeq":'.length
  return { pre: tail.slice(0, at), post: tail.slice(at + 1) }
}

/**
 * A stored message (1:1 with its seq, or a group tail) after an edit: the same fields
 * (id, from, to or group, ts, replyTo), the new body, `"edited": true` and `editedAt`.
 */
export function editedMessage (stored: string, body: unknown, editedAt: number): string {
  const { body: _body, edited: _edited, editedAt: _at, ...rest } = JSON.parse(stored) as Record<string, unknown>
  return JSON.stringify({ ...rest, body, edited: true, editedAt })
}

/**
 * An edit event after its message was recalled: the same bytes without the body (cut at
 * `,"body":`, the event's last key, then `}`). The Redis scripts make the same cut (SCRUB in
 * redis-scripts.ts; ids never hold a quote, so the first `,"body":` is the key).
 */
export function editWithoutBody (event: string): string {
  const at = event.indexOf(',"body":')
  return at < 0 ? event : `${event.slice(0, at)}}`
}

/** Edits one message may have: the edit events a recall must find again are listed per message. */
export const MAX_EDITS_PER_MESSAGE = 50

/** Whether the edit would change nothing (a retry of the same edit). */
export function sameBody (stored: string, body: unknown): boolean {
  return JSON.stringify((JSON.parse(stored) as { body?: unknown }).body) === JSON.stringify(body)
}

/** What history holds after a recall: the envelope without its body. */
export function tombstone (seq: number, id: string, from: string, to: string, ts: number, recalledAt: number): string {
  return JSON.stringify({ seq, type: 'message', id, from, to, ts, recalled: true, recalledAt })
}

/** A stamped message's JSON after the `{"seq":N,` a log gives it (and without it, `{` + this: a QoS 0 message). */
export function messageTail (message: MessageEnvelope): string {
  return JSON.stringify(message).slice(1)
}

/** An event's JSON after its `{"seq":N,`: what a store prefixes with the seq it assigns. */
export function tailOf (event: string): string {
  return event.slice(event.indexOf(',') + 1)
}

export function receiptTail (kind: ReceiptKind, by: string, peer: string, upTo: number, id: string, ts: number): string {
  return tailOf(receiptEvent(0, kind, by, peer, upTo, id, ts))
}

export function tombstoneTail (id: string, from: string, to: string, ts: number, recalledAt: number): string {
  return tailOf(tombstone(0, id, from, to, ts, recalledAt))
}

/**
 * A recall event's tail around its `messageSeq`, for a store that learns that seq only
 * where it writes (the recipient's copy): the event is `{"seq":N,` + pre + messageSeq + post.
 */
export function recallTemplate (id: string, from: string, to: string, ts: number): { pre: string, post: string } {
  const tail = tailOf(recallEvent(0, id, from, to, 0, ts))
  const at = tail.indexOf('"messageSeq":0') + '"messageSeq":'.length
  return { pre: tail.slice(0, at), post: tail.slice(at + 1) }
}

const MESSAGE_PREFIX = /^\{"seq":(\d+),"type":"message","id":"([^"]+)","from":"([^"]+)","to":"([^"]+)"/

const GROUP_MESSAGE_PREFIX = /^\{"seq":\d+,"type":"message","id":"[^"]+","from":"([^"]+)","group":"([^"]+)","gseq":(\d+)/

/** Reads from, group and gseq of a group message envelope without parsing its body. */
export function groupMessageHeader (json: string): { from: string, group: string, gseq: number } | undefined {
  const match = GROUP_MESSAGE_PREFIX.exec(json)
  return match === null ? undefined : { from: match[1]!, group: match[2]!, gseq: Number(match[3]) }
}

/** Reads seq, id, from and to of a stored message envelope without parsing its body. */
export function messageHeader (json: string): { seq: number, id: string, from: string, to: string } | undefined {
  const match = MESSAGE_PREFIX.exec(json.slice(0, 512))
  return match === null ? undefined : { seq: Number(match[1]), id: match[2]!, from: match[3]!, to: match[4]! }
}
