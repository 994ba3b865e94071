// Small control messages to every server process (e.g. "close this user's
// connections"): Redis pub/sub in Redis mode, a function call embedded.
// Unlike the log feed, nothing here needs to survive a lost message: a
// revoked token is also refused at its next CONNECT.
// On a Redis Cluster this is classic pub/sub too: a PUBLISH on any node
// reaches the subscribers of every node over the cluster bus. That is a
// broadcast by design (every process must hear a logout), and it is rare.
import type { RedisClient } from './redis-client.ts'

export interface ClusterSignal {
  send (message: Record<string, unknown>): Promise<void>
  /** Listeners get JSON objects only. */
  listen (listener: (message: Record<string, unknown>) => void): void
  /** Stops delivery to this process's listeners at once. */
  close (): Promise<void>
}

type Listener = (message: Record<string, unknown>) => void

/** Calls each listener unless one of them closed the signal. */
function deliver (listeners: Listener[], message: Record<string, unknown>, closed: () => boolean): void {
  for (const listener of listeners) {
    if (closed()) return
    listener(message)
  }
}

export class LocalSignal implements ClusterSignal {
  readonly #listeners: Listener[] = []
  #closed = false
  async send (message: Record<string, unknown>): Promise<void> { deliver(this.#listeners, message, () => this.#closed) }
  listen (listener: Listener): void { this.#listeners.push(listener) }
  async close (): Promise<void> { this.#closed = true }
}

const CHANNEL = 'inboxd:signal'

export class RedisSignal implements ClusterSignal {
  readonly #listeners: Listener[] = []
  #closed = false

  private constructor (private readonly pub: RedisClient, private readonly sub: RedisClient) {}

  /** `sub` becomes this signal's subscriber connection. */
  static async open (pub: RedisClient, sub: RedisClient): Promise<RedisSignal> {
    const signal = new RedisSignal(pub, sub)
    sub.on('message', (channel: string, text: string) => {
      if (channel !== CHANNEL) return
      let message: unknown
      try { message = JSON.parse(text) } catch { return }
      // `null` or an array would make a listener's `message.type` throw, or mean something else.
      if (typeof message !== 'object' || message === null || Array.isArray(message)) return
      deliver(signal.#listeners, message as Record<string, unknown>, () => signal.#closed)
    })
    await sub.subscribe(CHANNEL)
    return signal
  }

  async send (message: Record<string, unknown>): Promise<void> {
    await this.pub.publish(CHANNEL, JSON.stringify(message))
  }

  listen (listener: Listener): void { this.#listeners.push(listener) }

  /** The subscriber connection may still read what was on its way: it is not handed on. */
  async close (): Promise<void> {
    this.#closed = true
    this.sub.disconnect()
  }
}
