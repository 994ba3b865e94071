// Live notification of new log events. Appends make events durable; the feed
// only tells the processes holding the user's connected devices that there
// is something to send. A lost notification costs latency, never a message:
// the device streams read the log itself whenever they see a gap, and
// `onResync` asks them to re-read after the feed may have dropped some.

/** `event` is an event of `user`'s log, JSON starting `{"seq":<seq>,`. */
export type LogListener = (user: string, seq: number, event: string) => void

/** Who the listener has devices for: a group event's copy is built only for them. */
export type Interest = (user: string) => boolean

export interface LogFeed {
  /** Tells every process's listeners about an event already stored in `user`'s log. */
  publish (user: string, event: string): void
  /** One group event in many members' logs: `{"seq":<their seq>,` + tail each; the tail crosses the bus once. */
  publishMany (tail: string, recipients: Array<[user: string, seq: number]>): void
  listen (listener: LogListener, interested?: Interest): void
  /** Called when notifications may have been missed (the bus reconnected). */
  onResync (listener: () => void): void
  /** Stops delivery to this feed's listeners at once; what was published before is still sent to the other processes. */
  close (): Promise<void>
}

/** The seq of a stored log event, read from its first field without parsing the JSON. */
export function seqOf (event: string): number {
  return Number.parseInt(event.slice(7, event.indexOf(',', 7)), 10)
}

/** One process: notifications are function calls. */
export class LocalFeed implements LogFeed {
  readonly #listeners: Array<{ listener: LogListener, interested: Interest }> = []
  #closed = false

  publish (user: string, event: string): void {
    const seq = seqOf(event)
    for (const { listener } of this.#listeners) {
      if (this.#closed) return
      listener(user, seq, event)
    }
  }

  publishMany (tail: string, recipients: Array<[string, number]>): void {
    for (const { listener, interested } of this.#listeners) {
      for (const [user, seq] of recipients) {
        // Checked before each call: a listener may close the feed.
        if (this.#closed) return
        if (interested(user)) listener(user, seq, `{"seq":${seq},${tail}`)
      }
    }
  }

  listen (listener: LogListener, interested: Interest = () => true): void { this.#listeners.push({ listener, interested }) }
  onResync (): void {}
  /** From now on no listener is called. */
  async close (): Promise<void> { this.#closed = true }
}
