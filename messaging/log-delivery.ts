// The append-to-delivery path: a durable event is announced on the log feed
// (every process holding one of the user's devices sends it from the log),
// and a message that reached its recipient goes to push. Implements the
// LogSink the stores and services report to; nothing else sends a durable event.
import type { ArrivedMessage, LogSink } from '../history/log-sink.ts'
import type { Recipients } from '../history/group-store.ts'
import type { LogFeed } from '../storage/log-feed.ts'

/** What push is told: the group's name is looked up for the alert. */
export interface StoredMessage { from: string, to: string, id: string, seq: number, group?: { id: string, name: string } }

export interface LogDeliveryOptions {
  feed: Pick<LogFeed, 'publish' | 'publishMany'>
  /** Push hooks in here. Must not throw. */
  onStored?: (message: StoredMessage) => void
  /** The group's name for a push alert. */
  groupName?: (group: string) => Promise<string | undefined>
  /** Two users' first message (presence may become visible between them). Must not throw. */
  onNewConversation?: (from: string, to: string) => void
  onError: (error: unknown) => void
}

export class LogDelivery implements LogSink {
  readonly #options: LogDeliveryOptions
  /** A group message arrives for every member at once: one name lookup serves them all. */
  readonly #names = new Map<string, Promise<string | undefined>>()

  constructor (options: LogDeliveryOptions) {
    this.#options = options
  }

  appended (user: string, event: string): void {
    this.#options.feed.publish(user, event)
  }

  appendedToMembers (tail: string, recipients: Recipients): void {
    this.#options.feed.publishMany(tail, recipients)
  }

  arrived (message: ArrivedMessage): void {
    const { onStored, onNewConversation, groupName } = this.#options
    if (message.newConversation === true) onNewConversation?.(message.from, message.to)
    if (onStored === undefined) return
    const { group, newConversation: _, ...stored } = message
    if (group === undefined) return onStored(stored)
    this.#groupName(group, groupName)
      .then((name) => onStored({ ...stored, group: { id: group, name: name ?? group } }))
      .catch(this.#options.onError)
  }

  #groupName (group: string, lookUp: LogDeliveryOptions['groupName']): Promise<string | undefined> {
    let name = this.#names.get(group)
    if (name === undefined) {
      name = (lookUp?.(group) ?? Promise.resolve(undefined)).finally(() => this.#names.delete(group))
      this.#names.set(group, name)
    }
    return name
  }
}
