// When a message is stored, alert each registered device of the recipient
// whose session is not connected on any process. Asynchronous: it never
// slows or blocks delivery. Coalesced per (device, conversation) window;
// throttling and server errors are retried with bounded backoff (never
// sooner than a Retry-After); tokens the push service calls dead are removed.
// Each device goes to the provider of its platform (APNs, FCM).
import type { Logger } from 'pino'
import type { StoredMessage } from '../messaging/log-delivery.ts'
import type { DeviceRegistry, RegisteredDevice } from './device-registry.ts'
import type { DeferredAlert, PushGate, PushWindow } from './push-gate.ts'
import type { PushProvider } from './push-provider.ts'

export interface PushServiceOptions {
  /** At most one per platform; devices of a platform without one get no push. */
  providers: PushProvider[]
  devices: DeviceRegistry
  gate: PushGate
  isConnected: (user: string, clientId: string) => Promise<boolean>
  /** Told of every answer of a push provider (metrics). */
  onOutcome?: (provider: string, outcome: string) => void
  /** Whether `user` muted the group (no alerts; unread counts go on). */
  isMuted?: (user: string, group: string) => Promise<boolean>
  unreadTotal: (user: string) => Promise<number>
  text: string
  coalesceMs: number
  /** How long a push may wait at the push service: the broker's backlog retention. */
  expirySeconds: number
  retryBaseMs: number
  maxAttempts: number
  log: Logger
}

/** The conversation an alert is about: the sender, or `g:<groupId>`. */
const conversationOf = (message: DeferredAlert): string => message.group === undefined ? message.from : `g:${message.group.id}`

export class PushService {
  readonly #options: PushServiceOptions
  readonly #providers: Map<string, PushProvider>
  /** Backoff waits, cut short by close(). */
  readonly #sleeping = new Set<() => void>()
  readonly #timers = new Set<NodeJS.Timeout>()
  readonly #inflight = new Set<Promise<void>>()
  #closed = false

  constructor (options: PushServiceOptions) {
    this.#options = options
    this.#providers = new Map(options.providers.map((provider) => [provider.platform, provider]))
  }

  #sleep (ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer)
        this.#sleeping.delete(wake)
        resolve()
      }
      const timer = setTimeout(wake, ms)
      timer.unref()
      this.#sleeping.add(wake)
    })
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
    const { devices, isConnected, isMuted, gate, coalesceMs } = this.#options
    if (message.group !== undefined && await isMuted?.(message.to, message.group.id) === true) return
    const registered = (await devices.list(message.to)).filter((device) => this.#providers.has(device.platform))
    await Promise.all(registered.map(async (device) => {
      if (await isConnected(message.to, `${message.to}:${device.deviceId}`)) return
      const window: PushWindow = { user: message.to, deviceId: device.deviceId, conversation: conversationOf(message) }
      if (coalesceMs === 0 || await gate.open(window, coalesceMs)) {
        if (coalesceMs > 0) this.#scheduleTrailing(window, device)
        await this.#push(message, device)
      } else {
        await gate.defer(window, message, coalesceMs)
      }
    }))
  }

  /** At the end of the window, one push for whatever arrived during it (and a new window). */
  #scheduleTrailing (window: PushWindow, device: RegisteredDevice, delayMs = this.#options.coalesceMs): void {
    const timer = setTimeout(() => {
      this.#timers.delete(timer)
      if (this.#closed) return
      this.#track((async () => {
        const { gate, isConnected, coalesceMs } = this.#options
        const { user } = window
        const deferred = await gate.take(window)
        if (deferred === undefined || await isConnected(user, `${user}:${device.deviceId}`)) return
        if (!await gate.open(window, coalesceMs)) {
          // The window is still open (a timer can fire a little early, or
          // another process opened a new one): keep the message, look again soon.
          await gate.defer(window, deferred, coalesceMs)
          return this.#scheduleTrailing(window, device, 100)
        }
        this.#scheduleTrailing(window, device)
        await this.#push(deferred, device)
      })())
    }, delayMs)
    timer.unref()
    this.#timers.add(timer)
  }

  async #push (message: DeferredAlert, device: RegisteredDevice): Promise<void> {
    const { devices, unreadTotal, text, expirySeconds, retryBaseMs, maxAttempts, log } = this.#options
    const provider = this.#providers.get(device.platform)
    if (provider === undefined) return
    for (let attempt = 1; ; attempt++) {
      // A group alert: the group's name as title, the sender in the text; never the body.
      const push = {
        title: message.group?.name ?? message.from,
        text: message.group === undefined ? text : `${message.from}: ${text}`,
        badge: await unreadTotal(message.to),
        collapseKey: conversationOf(message),
        expiresAt: Math.floor(Date.now() / 1000) + expirySeconds,
        data: { conversation: conversationOf(message), id: message.id, seq: message.seq }
      }
      const outcome = await provider.send({ token: device.token, sandbox: device.sandbox }, push)
      this.#options.onOutcome?.(provider.platform, outcome.status)
      const context = { user: message.to, deviceId: device.deviceId, id: message.id, attempt }
      switch (outcome.status) {
        case 'sent':
          log.debug(context, 'push sent')
          return
        case 'unregistered':
          // A 410 older than the registration is about a previous install: keep the token.
          // Nor is a registration made while the request was under way removed.
          if (outcome.since === undefined || outcome.since > device.registeredAt) {
            log.info({ ...context, platform: device.platform }, 'push token unregistered: removed')
            await devices.removeToken(message.to, device.deviceId, device.token, device.registeredAt)
          }
          return
        case 'bad_token':
          log.info({ ...context, platform: device.platform, reason: outcome.reason }, 'push token invalid: removed')
          await devices.removeToken(message.to, device.deviceId, device.token, device.registeredAt)
          return
        case 'failed':
          log.warn({ ...context, reason: outcome.reason }, 'push refused')
          return
        case 'retry':
          if (attempt >= maxAttempts || this.#closed) {
            log.warn({ ...context, reason: outcome.reason }, 'push given up after retries')
            return
          }
          // Exponential backoff with jitter: base, 2×base, 4×base, ...; at least Retry-After.
          await this.#sleep(Math.max(retryBaseMs * 2 ** (attempt - 1) * (0.5 + Math.random() / 2), outcome.afterMs ?? 0))
          if (this.#closed) {
            log.warn({ ...context, reason: outcome.reason }, 'push given up: shutting down')
            return
          }
      }
    }
  }

  async close (): Promise<void> {
    this.#closed = true
    for (const timer of this.#timers) clearTimeout(timer)
    for (const wake of [...this.#sleeping]) wake()
    await Promise.all(this.#inflight)
    await Promise.all(this.#options.providers.map((provider) => provider.close()))
  }
}
