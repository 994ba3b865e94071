// Where every durable append is reported: the one path from "stored in a
// user's log" to "that user's devices and push hear of it"
// (messaging/log-delivery.ts implements it). Stores and services call it once
// an event is durable; with a relay (issue #20) the recipient's copy is
// reported when it lands, which may be after the sender's PUBACK.
/** Who got the event in their own log, and at which seq. */
export type Recipients = Array<[user: string, seq: number]>

/** A message now in its recipient's log (not one withheld because the recipient blocked the sender). */
export interface ArrivedMessage {
  from: string
  to: string
  id: string
  /** In the recipient's log. */
  seq: number
  /** For a group message: the group's id. */
  group?: string
  /** The sender's first message to this recipient: presence may become visible between them. */
  newConversation?: true
}

export interface LogSink {
  /** `event` (`{"seq":N,…}`) is durable in `user`'s log. */
  appended (user: string, event: string): void
  /** One group event is durable in each recipient's log at their seq (`{"seq":N,` + tail each). */
  appendedToMembers (tail: string, recipients: Recipients): void
  /** A message reached its recipient's log (push, presence visibility). Must not throw. */
  arrived (message: ArrivedMessage): void
}
