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
  listen (listener: (message: Record<string, unknown>) => void): void
  close (): Promise<void>
}

export class LocalSignal implements ClusterSignal {
  readonly #listeners: Array<(message: Record<string, unknown>) => void> = []
  async send (message: Record<string, unknown>): Promise<void> { for (const listener of this.#listeners) listener(message) }
  listen (listener: (message: Record<string, unknown>) => void): void { this.#listeners.push(listener) }
  async close (): Promise<void> {}
}

const CHANNEL = 'inboxd:signal'

export class RedisSignal implements ClusterSignal {
  readonly #listeners: Array<(message: Record<string, unknown>) => void> = []

  private constructor (private readonly pub: RedisClient, private readonly sub: RedisClient) {}

  /** `sub` becomes this signal's subscriber connection. */
  static async open (pub: RedisClient, sub: RedisClient): Promise<RedisSignal> {
    const signal = new RedisSignal(pub, sub)
    sub.on('message', (channel: string, text: string) => {
      if (channel !== CHANNEL) return
      let message: Record<string, unknown>
      try { message = JSON.parse(text) as Record<string, unknown> } catch { return }
      for (const listener of signal.#listeners) listener(message)
    })
    await sub.subscribe(CHANNEL)
    return signal
  }

  async send (message: Record<string, unknown>): Promise<void> {
    await this.pub.publish(CHANNEL, JSON.stringify(message))
  }

  listen (listener: (message: Record<string, unknown>) => void): void { this.#listeners.push(listener) }

  async close (): Promise<void> { this.sub.disconnect() }
}
