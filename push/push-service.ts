// When a message is stored, alert each registered device of the recipient
// whose session is not connected on any process. Asynchronous: it never
// slows or blocks delivery. Coalesced per (device, conversation) window;
// throttling and server errors are retried with bounded backoff; tokens the
// push service calls dead are removed.
import type { Logger } from 'pino'
import type { StoredMessage } from '../messaging/message-service.ts'
import type { DeviceRegistry, RegisteredDevice } from './device-registry.ts'
import type { PushGate } from './push-gate.ts'
import type { PushProvider } from './push-provider.ts'

export interface PushServiceOptions {
  provider: PushProvider
  devices: DeviceRegistry
  gate: PushGate
  isConnected: (user: string, clientId: string) => Promise<boolean>
  unreadTotal: (user: string) => Promise<number>
  text: string
  coalesceMs: number
  /** How long a push may wait at the push service: the broker's backlog retention. */
  expirySeconds: number
  retryBaseMs: number
  maxAttempts: number
  log: Logger
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms).unref())

export class PushService {
  readonly #options: PushServiceOptions
  readonly #timers = new Set<NodeJS.Timeout>()
  readonly #inflight = new Set<Promise<void>>()
  #closed = false

  constructor (options: PushServiceOptions) {
    this.#options = options
  }

  /** Called for every newly stored message; returns at once. */
  notify (message: StoredMessage): void {
    this.#track(this.#notify(message))
  }

  #track (work: Promise<void>): void {
    const guarded = work.catch((error: unknown) => this.#options.log.error({ err: error }, 'push failed'))
    this.#inflight.add(guarded)
    void guarded.finally(() => this.#inflight.delete(guarded))
  }

  async #notify (message: StoredMessage): Promise<void> {
    const { devices, isConnected, gate, coalesceMs } = this.#options
    const registered = await devices.list(message.to)
    await Promise.all(registered.map(async (device) => {
      if (await isConnected(message.to, `${message.to}:${device.deviceId}`)) return
      const key = `${message.to}:${device.deviceId}:${message.from}`
      if (coalesceMs === 0 || await gate.open(key, coalesceMs)) {
        if (coalesceMs > 0) this.#scheduleTrailing(key, message.to, device)
        await this.#push(message, device)
      } else {
        await gate.defer(key, JSON.stringify(message), coalesceMs)
      }
    }))
  }

  /** At the end of the window, one push for whatever arrived during it (and a new window). */
  #scheduleTrailing (key: string, user: string, device: RegisteredDevice, delayMs = this.#options.coalesceMs): void {
    const timer = setTimeout(() => {
      this.#timers.delete(timer)
      if (this.#closed) return
      this.#track((async () => {
        const { gate, isConnected, coalesceMs } = this.#options
        const deferred = await gate.take(key)
        if (deferred === undefined || await isConnected(user, `${user}:${device.deviceId}`)) return
        if (!await gate.open(key, coalesceMs)) {
          // The window is still open (a timer can fire a little early, or
          // another process opened a new one): keep the message, look again soon.
          await gate.defer(key, deferred, coalesceMs)
          return this.#scheduleTrailing(key, user, device, 100)
        }
        this.#scheduleTrailing(key, user, device)
        await this.#push(JSON.parse(deferred) as StoredMessage, device)
      })())
    }, delayMs)
    timer.unref()
    this.#timers.add(timer)
  }

  async #push (message: StoredMessage, device: RegisteredDevice): Promise<void> {
    const { provider, devices, unreadTotal, text, expirySeconds, retryBaseMs, maxAttempts, log } = this.#options
    for (let attempt = 1; ; attempt++) {
      const push = {
        title: message.from,
        text,
        badge: await unreadTotal(message.to),
        collapseKey: message.from,
        expiresAt: Math.floor(Date.now() / 1000) + expirySeconds,
        data: { conversation: message.from, id: message.id, seq: message.seq }
      }
      const outcome = await provider.send({ token: device.token, sandbox: device.sandbox }, push)
      const context = { user: message.to, deviceId: device.deviceId, id: message.id, attempt }
      switch (outcome.status) {
        case 'sent':
          log.debug(context, 'push sent')
          return
        case 'unregistered':
          // A 410 older than the registration is about a previous install: keep the token.
          if (outcome.since === undefined || outcome.since > device.registeredAt) {
            log.info(context, 'push token unregistered: removed')
            await devices.removeToken(message.to, device.deviceId, device.token)
          }
          return
        case 'bad_token':
          log.info({ ...context, reason: outcome.reason }, 'push token invalid: removed')
          await devices.removeToken(message.to, device.deviceId, device.token)
          return
        case 'failed':
          log.warn({ ...context, reason: outcome.reason }, 'push refused')
          return
        case 'retry':
          if (attempt >= maxAttempts || this.#closed) {
            log.warn({ ...context, reason: outcome.reason }, 'push given up after retries')
            return
          }
          // Exponential backoff with jitter: base, 2×base, 4×base, ...
          await sleep(retryBaseMs * 2 ** (attempt - 1) * (0.5 + Math.random() / 2))
      }
    }
  }

  async close (): Promise<void> {
    this.#closed = true
    for (const timer of this.#timers) clearTimeout(timer)
    await Promise.all(this.#inflight)
    await this.#options.provider.close()
  }
}
