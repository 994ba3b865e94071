// The chat client an app uses: one persistent MQTT session per device, an
// outbox, and an inbox stream that is complete, in seq order and free of
// duplicates however the connection, the app or the server come and go.
//
// Flow: connect (fresh token) → subscribe → republish the outbox → sync from
// the last seq → live. Every event, live or synced, goes through the
// InboxSequencer, which is what makes overlap harmless.
import mqtt, { type MqttClient } from 'mqtt'
import { Emitter } from './emitter.ts'
import { InboxSequencer } from './inbox-sequencer.ts'
import { Outbox, type OutboxItem } from './outbox.ts'
import { RestClient } from './rest.ts'
import { MemoryStorage, type ClientStorage } from './storage.ts'
import { readToken, refreshAt, type TokenInfo } from './token.ts'
import { associatedData, fromBase64, isSealed, open, seal, toBase64, type KeyPair } from './e2ee.ts'
import type {
  ConnectionState, ConversationSummary, LogEvent, MessageEvent, PresenceState, ReceiptEvent,
  RecallEvent, ServerErrorEvent, TypingEvent
} from './types.ts'

export interface ClientOptions {
  /** MQTT URL: `wss://host/mqtt` (browsers, mobile) or `mqtt://host:1883`. */
  url: string
  /** REST base URL; by default derived from a ws(s) `url` (same host, http(s)). */
  apiUrl?: string
  deviceId: string
  /** Returns a valid JWT for the user; called before the current one expires and after a refusal. */
  getToken: () => Promise<string>
  /** Keeps the last seq and the outbox across app restarts. Default: in memory. */
  storage?: ClientStorage
  /** Your X25519 key pair: turns end-to-end encryption on for everything you send. */
  e2ee?: { keyPair: KeyPair }
  keepaliveSeconds?: number
  reconnect?: { minDelayMs?: number, maxDelayMs?: number }
  /** How long a seq gap may stay open before the client syncs. */
  gapWaitMs?: number
  /** How long after its PUBACK a send waits for its stamped copy before asking the server. */
  confirmWaitMs?: number
}

export interface ClientEvents {
  [event: string]: (...args: any[]) => void
  state: (state: ConnectionState) => void
  message: (message: MessageEvent) => void
  receipt: (receipt: ReceiptEvent) => void
  recall: (recall: RecallEvent) => void
  typing: (typing: TypingEvent) => void
  presence: (user: string, state: PresenceState) => void
  error: (error: Error) => void
}

/** A send the server refused; `code` is the error event's code (docs/protocol.md). */
export class SendError extends Error {
  constructor (readonly code: string, message: string, readonly id: string) {
    super(message)
  }
}

interface PendingSend {
  resolve: (message: MessageEvent) => void
  reject: (error: Error) => void
  confirmTimer?: ReturnType<typeof setTimeout>
}

const LAST_SEQ_KEY = 'inboxd.lastSeq'

function defaultApiUrl (url: string): string {
  const parsed = new URL(url)
  if (parsed.protocol !== 'ws:' && parsed.protocol !== 'wss:') throw new Error('apiUrl is required when url is not ws:// or wss://')
  return `${parsed.protocol === 'wss:' ? 'https:' : 'http:'}//${parsed.host}`
}

function newId (): string {
  return globalThis.crypto.randomUUID()
}

export class ChatClient extends Emitter<ClientEvents> {
  readonly deviceId: string
  readonly #options: ClientOptions
  readonly #storage: ClientStorage
  readonly #outbox: Outbox
  readonly #rest: RestClient
  readonly #pending = new Map<string, PendingSend>()
  /** Own messages recently seen, by id: resolves a retried send whose copy came earlier. */
  readonly #recentOwn = new Map<string, MessageEvent>()
  readonly #watched = new Set<string>()
  readonly #publicKeys = new Map<string, Uint8Array>()
  #sequencer!: InboxSequencer
  #token: TokenInfo | undefined
  #tokenInvalid = false
  #mqtt: MqttClient | undefined
  #state: ConnectionState = 'offline'
  #attempt = 0
  #reconnectTimer: ReturnType<typeof setTimeout> | undefined
  #refreshTimer: ReturnType<typeof setTimeout> | undefined
  /** False from CONNACK until the outbox has been republished, so new sends queue behind it in order. */
  #outboxFlushed = false
  #syncing: Promise<void> | undefined
  #syncAgain = false
  #stopped = false

  constructor (options: ClientOptions) {
    super()
    this.#options = options
    this.deviceId = options.deviceId
    this.#storage = options.storage ?? new MemoryStorage()
    this.#outbox = new Outbox(this.#storage)
    this.#rest = new RestClient(options.apiUrl ?? defaultApiUrl(options.url), (forceNew) => this.#currentToken(forceNew))
  }

  get state (): ConnectionState { return this.#state }
  get userId (): string {
    if (this.#token === undefined) throw new Error('not started')
    return this.#token.sub
  }

  /** The highest seq processed: everything up to it was emitted exactly once. */
  get lastSeq (): number { return this.#sequencer.lastSeq }

  async start (): Promise<void> {
    await this.#currentToken(false)
    const lastSeq = Number(await this.#storage.get(LAST_SEQ_KEY) ?? 0)
    this.#sequencer = new InboxSequencer({
      lastSeq,
      gapWaitMs: this.#options.gapWaitMs ?? 300,
      deliver: (event) => this.#deliver(event),
      onGap: () => { void this.sync() }
    })
    await this.#outbox.load()
    for (const item of this.#outbox.items()) this.#trackSend(item.id)
    await this.#connect()
  }

  async stop (): Promise<void> {
    if (this.#stopped) return
    this.#stopped = true
    clearTimeout(this.#reconnectTimer)
    clearTimeout(this.#refreshTimer)
    this.#sequencer?.stop()
    for (const pending of this.#pending.values()) clearTimeout(pending.confirmTimer)
    const client = this.#mqtt
    this.#mqtt = undefined
    if (client !== undefined) {
      // A clean DISCONNECT when connected; never wait long for a dead socket.
      await Promise.race([client.endAsync(), new Promise((resolve) => setTimeout(resolve, 2_000))])
      client.end(true)
    }
    this.#setState('offline')
  }

  // ---- connection ------------------------------------------------------------

  async #currentToken (forceNew: boolean): Promise<string> {
    const expiring = this.#token?.expiresAt !== undefined && this.#token.expiresAt - Date.now() < 5_000
    if (this.#token === undefined || forceNew || this.#tokenInvalid || expiring) {
      this.#token = readToken(await this.#options.getToken())
      this.#tokenInvalid = false
    }
    return this.#token.token
  }

  #setState (state: ConnectionState): void {
    if (this.#state === state) return
    this.#state = state
    this.emit('state', state)
  }

  async #connect (): Promise<void> {
    if (this.#stopped) return
    this.#setState('connecting')
    let token: string
    try {
      token = await this.#currentToken(false)
    } catch (error) {
      this.emit('error', error as Error)
      return this.#scheduleReconnect()
    }
    const user = this.#token!.sub
    // A new client per connection: the outbox, not mqtt.js' in-memory store,
    // is what carries unconfirmed sends across connections.
    const client = mqtt.connect(this.#options.url, {
      clientId: `${user}:${this.deviceId}`,
      username: user,
      password: token,
      clean: false,
      keepalive: this.#options.keepaliveSeconds ?? 30,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
      resubscribe: false
    })
    this.#mqtt = client
    client.on('connect', () => { void this.#onConnect(client) })
    client.on('message', (topic, payload) => this.#onMqttMessage(topic, payload))
    client.on('error', (error: Error & { code?: number }) => {
      // CONNACK 4 or 5: the token was refused; get a new one for the next try.
      if (error.code === 4 || error.code === 5) this.#tokenInvalid = true
      this.emit('error', error)
    })
    client.on('close', () => {
      if (this.#mqtt !== client) return
      clearTimeout(this.#refreshTimer)
      this.#setState('offline')
      this.#scheduleReconnect()
    })
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

  async #onConnect (client: MqttClient): Promise<void> {
    this.#outboxFlushed = false
    this.#attempt = 0
    this.#setState('online')
    this.#scheduleTokenRefresh()
    const user = this.userId
    try {
      await client.subscribeAsync([`user/${user}/inbox`, `user/${user}/device/${this.deviceId}/errors`], { qos: 1 })
      // Re-subscribing delivers the retained presence again (sessions do not).
      if (this.#watched.size > 0) await client.subscribeAsync([...this.#watched].map((u) => `presence/${u}`), { qos: 0 })
    } catch (error) {
      this.emit('error', error as Error)
    }
    this.#outboxFlushed = true
    for (const item of this.#outbox.items()) this.#publish(item)
    await this.sync()
  }

  /** Fetches a new token before the server closes the connection at `exp`, then reconnects with it. */
  #scheduleTokenRefresh (): void {
    clearTimeout(this.#refreshTimer)
    const at = this.#token === undefined ? undefined : refreshAt(this.#token)
    if (at === undefined) return
    this.#refreshTimer = setTimeout(() => {
      this.#currentToken(true).then(() => {
        const old = this.#mqtt
        this.#mqtt = undefined
        old?.end(false, () => { void this.#connect() })
      }, (error: Error) => this.emit('error', error))
    }, Math.max(0, at - Date.now()))
  }

  // ---- receiving ------------------------------------------------------------

  #onMqttMessage (topic: string, payload: Buffer | Uint8Array): void {
    let event: unknown
    try { event = JSON.parse(new TextDecoder().decode(payload)) } catch { return }
    if (topic.startsWith('presence/')) {
      this.emit('presence', topic.slice('presence/'.length), event as PresenceState)
      return
    }
    const typed = event as { type?: string, seq?: number }
    if (typed.type === 'error') return this.#onServerError(event as ServerErrorEvent)
    if (typed.type === 'typing') return this.emit('typing', event as TypingEvent)
    if (typeof typed.seq === 'number') this.#sequencer.accept(event as LogEvent)
  }

  #deliver (event: LogEvent): void {
    void this.#storage.set(LAST_SEQ_KEY, String(event.seq))
    if (event.type === 'message') {
      const message = this.#decrypt(event)
      if (message.from === this.userId) this.#ownMessageStored(message)
      this.emit('message', message)
    } else if (event.type === 'receipt') {
      this.emit('receipt', event)
    } else if (event.type === 'recall') {
      this.emit('recall', event)
    }
  }

  /** Catches up from the last seq through /v1/sync (one at a time; a request during a run runs again after). */
  sync (): Promise<void> {
    if (this.#syncing !== undefined) {
      this.#syncAgain = true
      return this.#syncing
    }
    this.#syncing = (async () => {
      try {
        do {
          this.#syncAgain = false
          let since = this.#sequencer.lastSeq
          for (;;) {
            const page = await this.#rest.request<{ events: LogEvent[], next: number, hasMore: boolean }>('GET', `/v1/sync?since=${since}&limit=500`)
            const first = page.events[0]
            // Events before the first returned one are past retention: do not wait for them.
            if (first !== undefined && since === this.#sequencer.lastSeq && first.seq > since + 1) this.#sequencer.skipTo(first.seq - 1)
            for (const event of page.events) this.#sequencer.accept(event)
            since = page.next
            if (!page.hasMore) break
          }
        } while (this.#syncAgain)
      } catch (error) {
        this.emit('error', error as Error)
      } finally {
        this.#syncing = undefined
      }
    })()
    return this.#syncing
  }

  // ---- sending --------------------------------------------------------------

  /** Sends `body` to `to`; resolves with the stamped message once the server has stored it. */
  async send (to: string, body: unknown): Promise<MessageEvent> {
    const id = newId()
    const sealed = this.#options.e2ee === undefined ? body : await this.#seal(to, id, body)
    const item: OutboxItem = { id, to, body: sealed }
    const confirmed = this.#trackSend(id)
    await this.#outbox.add(item)
    this.#publish(item)
    return confirmed
  }

  #trackSend (id: string): Promise<MessageEvent> {
    return new Promise<MessageEvent>((resolve, reject) => this.#pending.set(id, { resolve, reject }))
  }

  #publish (item: OutboxItem): void {
    const client = this.#mqtt
    // Not connected, or the outbox is about to be republished: it goes out then, in order.
    if (client === undefined || !client.connected || !this.#outboxFlushed) return
    client.publishAsync(`user/${item.to}/inbox`, JSON.stringify({ id: item.id, body: item.body }), { qos: 1 }).then(
      () => this.#acknowledged(item),
      () => { /* the connection dropped: republished on the next connect */ })
  }

  /** PUBACK: stored. The stamped copy normally follows on the inbox; if not, ask the server for it. */
  #acknowledged (item: OutboxItem): void {
    const pending = this.#pending.get(item.id)
    if (pending === undefined) return
    const seen = this.#recentOwn.get(item.id)
    if (seen !== undefined) return this.#ownMessageStored(seen)
    clearTimeout(pending.confirmTimer)
    pending.confirmTimer = setTimeout(() => {
      if (!this.#pending.has(item.id)) return
      // A retry of a message stored earlier is not delivered again; the same
      // id over REST returns the stored original.
      this.#rest.request<{ message: MessageEvent }>('POST', '/v1/messages', { to: item.to, id: item.id, body: item.body }).then(
        ({ message }) => {
          this.#sequencer.accept(message)
          // Already emitted in an earlier run (seq below lastSeq): resolve anyway.
          this.#ownMessageStored(this.#decrypt(message))
        },
        (error: Error) => this.emit('error', error))
    }, this.#options.confirmWaitMs ?? 3_000)
  }

  #ownMessageStored (message: MessageEvent): void {
    this.#recentOwn.set(message.id, message)
    if (this.#recentOwn.size > 1_000) this.#recentOwn.delete(this.#recentOwn.keys().next().value!)
    const pending = this.#pending.get(message.id)
    if (pending === undefined) return
    clearTimeout(pending.confirmTimer)
    this.#pending.delete(message.id)
    void this.#outbox.remove(message.id)
    pending.resolve(message)
  }

  #onServerError (event: ServerErrorEvent): void {
    const pending = event.id === undefined ? undefined : this.#pending.get(event.id)
    if (pending === undefined || event.id === undefined) {
      this.emit('error', new SendError(event.code, event.message, event.id ?? ''))
      return
    }
    clearTimeout(pending.confirmTimer)
    this.#pending.delete(event.id)
    void this.#outbox.remove(event.id)
    pending.reject(new SendError(event.code, event.message, event.id))
  }

  /** Tells `peer` you are typing (or stopped). Ephemeral: never stored or pushed. */
  typing (peer: string, active = true): void {
    this.#mqtt?.publish(`user/${peer}/inbox`, JSON.stringify({ type: 'typing', active }), { qos: 0 })
  }

  // ---- REST-backed reads and actions ------------------------------------------

  /** Messages with `peer`, oldest first (decrypted). */
  async history (peer: string, range: { before?: number, after?: number, limit?: number } = {}): Promise<{ messages: MessageEvent[], hasMore: boolean }> {
    const query = new URLSearchParams()
    for (const [key, value] of Object.entries(range)) if (value !== undefined) query.set(key, String(value))
    const page = await this.#rest.request<{ messages: MessageEvent[], hasMore: boolean }>('GET', `/v1/conversations/${peer}/messages?${query}`)
    return { messages: page.messages.map((message) => this.#decrypt(message)), hasMore: page.hasMore }
  }

  async conversations (): Promise<ConversationSummary[]> {
    const page = await this.#rest.request<{ conversations: ConversationSummary[] }>('GET', '/v1/conversations?limit=100')
    return page.conversations.map((c) => ({ ...c, lastMessage: c.lastMessage === null ? null : this.#decrypt(c.lastMessage) }))
  }

  /** Marks the conversation read up to a seq (yours) or a message id. */
  async markRead (peer: string, upTo: number | { id: string }): Promise<{ readUpTo: number, unread: number }> {
    return this.#rest.request('POST', `/v1/conversations/${peer}/read`, typeof upTo === 'number' ? { seq: upTo } : upTo)
  }

  async recall (id: string): Promise<MessageEvent> {
    return (await this.#rest.request<{ message: MessageEvent }>('POST', `/v1/messages/${id}/recall`)).message
  }

  async presence (user: string): Promise<PresenceState & { user: string }> {
    return this.#rest.request('GET', `/v1/presence/${user}`)
  }

  /** Streams `user`'s presence as 'presence' events (the current state first); returns a function to stop. */
  watchPresence (user: string): () => void {
    this.#watched.add(user)
    if (this.#mqtt?.connected === true) this.#mqtt.subscribe(`presence/${user}`, { qos: 0 })
    return () => {
      this.#watched.delete(user)
      this.#mqtt?.unsubscribe(`presence/${user}`)
    }
  }

  // ---- end-to-end encryption ------------------------------------------------

  /** Publishes this client's public key, so others can encrypt to you. */
  async publishKey (): Promise<void> {
    const keyPair = this.#requireKeyPair()
    await this.#rest.request('PUT', '/v1/keys', { publicKey: toBase64(keyPair.publicKey) })
  }

  async #publicKeyOf (user: string): Promise<Uint8Array> {
    let key = this.#publicKeys.get(user)
    if (key === undefined) {
      const published = await this.#rest.request<{ publicKey: string }>('GET', `/v1/keys/${user}`)
      key = fromBase64(published.publicKey)
      this.#publicKeys.set(user, key)
    }
    return key
  }

  #requireKeyPair (): KeyPair {
    const keyPair = this.#options.e2ee?.keyPair
    if (keyPair === undefined) throw new Error('end-to-end encryption is not configured (options.e2ee)')
    return keyPair
  }

  async #seal (to: string, id: string, body: unknown): Promise<unknown> {
    const keyPair = this.#requireKeyPair()
    return seal(body, keyPair, await this.#publicKeyOf(to), associatedData(this.userId, to, id))
  }

  #decrypt (message: MessageEvent): MessageEvent {
    if (!isSealed(message.body)) return message
    const keyPair = this.#options.e2ee?.keyPair
    if (keyPair === undefined) return { ...message, decryptError: 'no key pair configured' }
    try {
      return { ...message, body: open(message.body, keyPair, associatedData(message.from, message.to, message.id)) }
    } catch (error) {
      return { ...message, decryptError: (error as Error).message }
    }
  }
}

/** Creates and starts a client; see client-sdk/README.md. */
export async function createClient (options: ClientOptions): Promise<ChatClient> {
  const client = new ChatClient(options)
  await client.start()
  return client
}
