// The connection: one persistent MQTT session per device, a fresh mqtt.js
// client per attempt, exponential backoff with jitter, and the token kept
// fresh (a new one before `exp`, and after a refusal). It knows nothing of
// messages: it reports state changes, each new connection and each packet.
import mqtt, { type MqttClient } from 'mqtt'
import { readToken, refreshAt, type TokenInfo } from './token.ts'
import type { ConnectionState } from './types.ts'

export interface ConnectionOptions {
  url: string
  deviceId: string
  getToken: () => Promise<string>
  keepaliveSeconds?: number
  reconnect?: { minDelayMs?: number, maxDelayMs?: number }
  onState: (state: ConnectionState) => void
  /** A new connection is up (after CONNACK). */
  onConnect: (client: MqttClient) => void
  onPacket: (topic: string, payload: Buffer | Uint8Array) => void
  onError: (error: Error) => void
  /** After the server refused a token: was it revoked (then the client stops for good)? */
  isRevoked?: (token: string) => Promise<boolean>
}

export class Connection {
  readonly #options: ConnectionOptions
  #token: TokenInfo | undefined
  #tokenInvalid = false
  /** The token of the last CONNACK refusal, until it is checked for revocation. */
  #refusedToken: string | undefined
  #mqtt: MqttClient | undefined
  #state: ConnectionState = 'offline'
  #attempt = 0
  #reconnectTimer: ReturnType<typeof setTimeout> | undefined
  #refreshTimer: ReturnType<typeof setTimeout> | undefined
  #stopped = false

  constructor (options: ConnectionOptions) {
    this.#options = options
  }

  get state (): ConnectionState { return this.#state }
  /** The current MQTT client, if any (connected or not). */
  get mqtt (): MqttClient | undefined { return this.#mqtt }
  get connected (): boolean { return this.#mqtt?.connected === true }
  get userId (): string {
    if (this.#token === undefined) throw new Error('not started')
    return this.#token.sub
  }

  /** The current token; a new one when forced, refused before, or about to expire. */
  async token (forceNew: boolean): Promise<string> {
    const expiring = this.#token?.expiresAt !== undefined && this.#token.expiresAt - Date.now() < 5_000
    if (this.#token === undefined || forceNew || this.#tokenInvalid || expiring) {
      this.#token = readToken(await this.#options.getToken())
      this.#tokenInvalid = false
    }
    return this.#token.token
  }

  start (): Promise<void> {
    return this.#connect()
  }

  /** Stops for good in a final state (`revoked`, `loggedOut`). */
  async finish (state: 'revoked' | 'loggedOut'): Promise<void> {
    await this.stop()
    this.#setState(state)
  }

  async stop (): Promise<void> {
    if (this.#stopped) return
    this.#stopped = true
    clearTimeout(this.#reconnectTimer)
    clearTimeout(this.#refreshTimer)
    const client = this.#mqtt
    this.#mqtt = undefined
    if (client !== undefined) {
      // A clean DISCONNECT when connected; never wait long for a dead socket.
      await Promise.race([client.endAsync(), new Promise((resolve) => setTimeout(resolve, 2_000))])
      client.end(true)
    }
    this.#setState('offline')
  }

  #setState (state: ConnectionState): void {
    if (this.#state === state) return
    this.#state = state
    this.#options.onState(state)
  }

  async #connect (): Promise<void> {
    if (this.#stopped) return
    this.#setState('connecting')
    let token: string
    try {
      token = await this.token(false)
    } catch (error) {
      this.#options.onError(error as Error)
      return this.#scheduleReconnect()
    }
    if (this.#stopped) return // stopped while the token was being fetched
    const user = this.#token!.sub
    // A new client per connection: the outbox, not mqtt.js' in-memory store,
    // is what carries unconfirmed sends across connections.
    const client = mqtt.connect(this.#options.url, {
      clientId: `${user}:${this.#options.deviceId}`,
      username: user,
      password: token,
      clean: false,
      keepalive: this.#options.keepaliveSeconds ?? 30,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
      resubscribe: false
    })
    this.#mqtt = client
    client.on('connect', () => {
      this.#attempt = 0
      this.#setState('online')
      this.#scheduleTokenRefresh()
      this.#options.onConnect(client)
    })
    client.on('message', (topic, payload) => this.#options.onPacket(topic, payload))
    client.on('error', (error: Error & { code?: number }) => {
      if (this.#stopped) return // e.g. "write after end" from a PUBACK while closing
      // CONNACK 4 or 5: the token was refused; get a new one for the next try.
      if (error.code === 4 || error.code === 5) {
        this.#tokenInvalid = true
        this.#refusedToken = token
      }
      this.#options.onError(error)
    })
    client.on('close', () => {
      if (this.#mqtt !== client) return
      clearTimeout(this.#refreshTimer)
      this.#setState('offline')
      void this.#afterClose()
    })
  }

  /** Reconnects, unless the refusal that closed the connection was a revocation. */
  async #afterClose (): Promise<void> {
    const refused = this.#refusedToken
    this.#refusedToken = undefined
    if (refused !== undefined && this.#options.isRevoked !== undefined && !this.#stopped) {
      let revoked = false
      try { revoked = await this.#options.isRevoked(refused) } catch { /* unreachable: reconnect as usual */ }
      if (revoked) return this.finish('revoked')
    }
    this.#scheduleReconnect()
  }

  #scheduleReconnect (): void {
    if (this.#stopped || this.#reconnectTimer !== undefined) return
    const { minDelayMs = 500, maxDelayMs = 30_000 } = this.#options.reconnect ?? {}
    // Exponential backoff with full jitter, so a fleet does not reconnect in lockstep.
    const ceiling = Math.min(maxDelayMs, minDelayMs * 2 ** this.#attempt)
    const delay = minDelayMs / 2 + Math.random() * (ceiling - minDelayMs / 2)
    this.#attempt++
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined
      const old = this.#mqtt
      this.#mqtt = undefined
      old?.end(true)
      void this.#connect()
    }, delay)
  }

  /** Fetches a new token before the server closes the connection at `exp`, then reconnects with it. */
  #scheduleTokenRefresh (): void {
    clearTimeout(this.#refreshTimer)
    const at = this.#token === undefined ? undefined : refreshAt(this.#token)
    if (at === undefined) return
    this.#refreshTimer = setTimeout(() => {
      this.token(true).then(() => {
        const old = this.#mqtt
        this.#mqtt = undefined
        old?.end(false, () => { void this.#connect() })
      }, (error: Error) => this.#options.onError(error))
    }, Math.max(0, at - Date.now()))
  }
}
