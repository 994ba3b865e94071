// The log feed across processes on one Redis: local listeners are called at
// once; other processes get the events of one event-loop turn in a single
// PUBLISH on one channel, so the bus costs well under one Redis command per
// message. Each process ignores its own batches.
import type { Redis } from 'ioredis'
import type { Logger } from 'pino'
import { LocalFeed, seqOf, type Interest, type LogFeed, type LogListener } from './log-feed.ts'

/** On the bus: `[user, event]`, or `[tail, [[user, seq], ...]]` for a group event. */
type Entry = [string, string] | [string, Array<[string, number]>]

const CHANNEL = 'inboxd:feed'

export class RedisFeed implements LogFeed {
  readonly #local = new LocalFeed()
  readonly #listeners: Array<{ listener: LogListener, interested: Interest }> = []
  readonly #resync: Array<() => void> = []
  readonly #pub: Redis
  readonly #sub: Redis
  readonly #nodeId: string
  readonly #log: Logger
  #pending: Entry[] = []

  private constructor (pub: Redis, sub: Redis, nodeId: string, log: Logger) {
    this.#pub = pub
    this.#sub = sub
    this.#nodeId = nodeId
    this.#log = log
  }

  /** `pub` may be shared; `sub` becomes this feed's subscriber connection. */
  static async open (pub: Redis, sub: Redis, nodeId: string, log: Logger): Promise<RedisFeed> {
    const feed = new RedisFeed(pub, sub, nodeId, log)
    sub.on('messageBuffer', (_channel: Buffer, message: Buffer) => feed.#receive(message.toString()))
    await sub.subscribe(CHANNEL)
    // ioredis resubscribes after a reconnect; what was published meanwhile is lost.
    sub.on('ready', () => { for (const listener of feed.#resync) listener() })
    return feed
  }

  publish (user: string, event: string): void {
    this.#local.publish(user, event)
    if (this.#pending.length === 0) setImmediate(() => this.#flush())
    this.#pending.push([user, event])
  }

  publishMany (tail: string, recipients: Array<[string, number]>): void {
    this.#local.publishMany(tail, recipients)
    if (this.#pending.length === 0) setImmediate(() => this.#flush())
    this.#pending.push([tail, recipients])
  }

  #flush (): void {
    const batch = this.#pending
    this.#pending = []
    this.#pub.publish(CHANNEL, `${this.#nodeId}\n${JSON.stringify(batch)}`).catch((error: unknown) => {
      // The events are in the log; remote devices catch up on their next gap or reconnect.
      this.#log.warn({ err: error, events: batch.length }, 'could not publish log notifications')
    })
  }

  #receive (message: string): void {
    const newline = message.indexOf('\n')
    if (message.slice(0, newline) === this.#nodeId) return
    let batch: Entry[]
    try {
      batch = JSON.parse(message.slice(newline + 1)) as Entry[]
    } catch {
      return
    }
    for (const [first, second] of batch) {
      if (typeof second === 'string') {
        const seq = seqOf(second)
        for (const { listener } of this.#listeners) listener(first, seq, second)
        continue
      }
      for (const { listener, interested } of this.#listeners) {
        for (const [user, seq] of second) if (interested(user)) listener(user, seq, `{"seq":${seq},${first}`)
      }
    }
  }

  listen (listener: LogListener, interested: Interest = () => true): void {
    this.#local.listen(listener, interested)
    this.#listeners.push({ listener, interested })
  }

  onResync (listener: () => void): void { this.#resync.push(listener) }

  async close (): Promise<void> {
    if (this.#pending.length > 0) this.#flush()
    this.#sub.disconnect()
  }
}
