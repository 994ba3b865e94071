// Owns the SDK client for the signed-in user, and replaces it when the
// browser says the network went away or came back.
//
// Why: when a phone or laptop loses or changes network, its WebSocket is
// usually dead without knowing it, and the SDK would only notice at the next
// keepalive, then wait out its backoff. The browser's `offline` and `online`
// events say so at once. The public API's way to act on them is a new client
// on the same device id and storage: it resumes the persistent session
// (queued messages arrive), republishes the outbox (so what was sent while
// offline goes out) and syncs from the last seq, so nothing is lost or shown
// twice. A client made while offline keeps retrying; the one made on
// `online` connects at once.
import { createClient, type ChatClient, type ClientEvents, type ClientStorage, type ConnectionState, type MessageEvent, type PresenceState } from '../../client-sdk/src/index.ts'

export interface ConnectionOptions {
  deviceId: string
  getToken: () => Promise<string>
  storage: ClientStorage
}

export interface ConnectionHandlers {
  message: (message: MessageEvent) => void
  receipt: ClientEvents['receipt']
  recall: ClientEvents['recall']
  edit: ClientEvents['edit']
  groupEvent: ClientEvents['groupEvent']
  typing: ClientEvents['typing']
  presence: (user: string, state: PresenceState) => void
  /** The SDK's state, or 'offline' while the browser has no network. */
  state: (state: ConnectionState) => void
  /** A new client is up (first start or after a network change): refresh what may have moved. */
  connected: () => void
  error: (error: Error) => void
}

export class Connection {
  #client: ChatClient | undefined
  #starting: Promise<ChatClient> | undefined
  #unsubscribe: Array<() => void> = []
  readonly #watched = new Map<string, () => void>()
  #stopped = false
  #replacing: Promise<void> | undefined
  #replaceAgain = false
  readonly #onNetworkChange = (): void => {
    this.#emitState()
    void this.#replace()
  }

  constructor (private readonly options: ConnectionOptions, private readonly handlers: ConnectionHandlers) {}

  get state (): ConnectionState {
    if (!navigator.onLine) return 'offline'
    return this.#client?.state ?? 'connecting'
  }

  async start (): Promise<void> {
    addEventListener('online', this.#onNetworkChange)
    addEventListener('offline', this.#onNetworkChange)
    await this.#open()
  }

  async stop (): Promise<void> {
    this.#stopped = true
    removeEventListener('online', this.#onNetworkChange)
    removeEventListener('offline', this.#onNetworkChange)
    await this.#replacing
    const client = this.#client
    this.#detach()
    await client?.stop()
  }

  /** The current client, waiting for one that is being (re)created. */
  async client (): Promise<ChatClient> {
    for (;;) {
      if (this.#client !== undefined) return this.#client
      if (this.#starting !== undefined) return this.#starting
      if (this.#replacing === undefined) throw new Error('not connected')
      await this.#replacing
    }
  }

  /** Streams `user`'s presence (again after each client replacement). */
  watch (user: string): void {
    if (this.#watched.has(user)) return
    this.#watched.set(user, this.#client?.watchPresence(user) ?? (() => {}))
  }

  #emitState (): void {
    this.handlers.state(this.state)
  }

  async #open (): Promise<ChatClient> {
    this.#starting = createClient({
      url: `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/mqtt`,
      apiUrl: location.origin,
      deviceId: this.options.deviceId,
      getToken: this.options.getToken,
      storage: this.options.storage,
      // Quicker to notice a dead connection, and to retry, than the SDK's defaults: a person is watching.
      keepaliveSeconds: 15,
      reconnect: { minDelayMs: 500, maxDelayMs: 5_000 }
    })
    try {
      const client = await this.#starting
      this.#client = client
      const { handlers } = this
      this.#unsubscribe = [
        client.on('message', handlers.message),
        client.on('receipt', handlers.receipt),
        client.on('recall', handlers.recall),
        client.on('edit', handlers.edit),
        client.on('groupEvent', handlers.groupEvent),
        client.on('typing', handlers.typing),
        client.on('presence', handlers.presence),
        client.on('error', handlers.error),
        client.on('state', (state) => {
          this.#emitState()
          if (state === 'online') handlers.connected()
        })
      ]
      for (const user of this.#watched.keys()) this.#watched.set(user, client.watchPresence(user))
      this.#emitState()
      if (client.state === 'online') handlers.connected()
      return client
    } finally {
      this.#starting = undefined
    }
  }

  #detach (): void {
    for (const unsubscribe of this.#unsubscribe) unsubscribe()
    this.#unsubscribe = []
    this.#client = undefined
  }

  /** Replaces the client; one replacement at a time, and one more if asked again meanwhile. */
  #replace (): Promise<void> {
    if (this.#replacing !== undefined) {
      this.#replaceAgain = true
      return this.#replacing
    }
    this.#replacing = (async () => {
      do {
        this.#replaceAgain = false
        try {
          const old = this.#client ?? await this.#starting?.catch(() => undefined)
          // The old client's events still reach the page while it stops (the
          // page keys messages by seq, so a repeat is harmless); detaching
          // first could drop events whose seq the new client then skips.
          await old?.stop()
          this.#detach()
          if (!this.#stopped) await this.#open()
        } catch (error) {
          this.handlers.error(error as Error)
          // No client now (a token could not be had, say): try again soon.
          setTimeout(() => { if (this.#client === undefined && !this.#stopped) void this.#replace() }, 3_000)
        }
      } while (this.#replaceAgain && !this.#stopped)
      this.#replacing = undefined
    })()
    return this.#replacing
  }
}
