// The chat client an app uses: one persistent MQTT session per device, an
// outbox, and an inbox stream that is complete, in seq order and free of
// duplicates however the connection, the app or the server come and go.
//
// Flow: connect (fresh token) → subscribe → republish the outbox → sync from
// the last seq → live. ChatClient only wires the parts, each with one job:
// Connection (session, backoff, token), Sender (outbox, confirmations),
// Receiver (sequencer, catch-up), Encryption, PresenceWatch, RestClient.
import type { MqttClient } from 'mqtt'
import { Emitter } from './emitter.ts'
import { Connection } from './connection.ts'
import { Encryption } from './encryption.ts'
import { Outbox } from './outbox.ts'
import { PresenceWatch } from './presence-watch.ts'
import { Receiver } from './receiver.ts'
import { RestClient } from './rest.ts'
import { Sender } from './sender.ts'
import { BlocksApi } from './blocks.ts'
import { GroupsApi } from './groups.ts'
import { MemoryStorage, type ClientStorage } from './storage.ts'
import { AttachmentsApi, type UploadOptions } from './attachments.ts'
import type { AttachmentRequest } from './outbox.ts'
import type { KeyPair } from './e2ee.ts'
import type {
  Attachment, ConnectionState, ConversationSummary, SearchResult, GroupEvent, LogEvent, MessageEvent, PresenceState, ReceiptEvent,
  RecallEvent, EditEvent, ReplyTo, ServerErrorEvent, TypingEvent
} from './types.ts'

export { SendError } from './sender.ts'

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
  /**
   * Where a device with no seq saved in `storage` (a new install, or any start with the default
   * in-memory storage) starts: 'beginning' (default) emits every event the server still holds,
   * 'now' passes over those already in the log at its first catch-up, just after connecting.
   */
  startFrom?: 'beginning' | 'now'
  /** How long after its PUBACK a send waits for its stamped copy before asking the server. */
  confirmWaitMs?: number
}

export interface ClientEvents {
  [event: string]: (...args: any[]) => void
  state: (state: ConnectionState) => void
  message: (message: MessageEvent) => void
  receipt: (receipt: ReceiptEvent) => void
  recall: (recall: RecallEvent) => void
  /** A message was edited (1:1 or group): show `body` in its place. */
  edit: (edit: EditEvent) => void
  typing: (typing: TypingEvent) => void
  presence: (user: string, state: PresenceState) => void
  /** Membership and group changes (group_created, member_added, member_removed, role_changed, group_updated). */
  groupEvent: (event: GroupEvent) => void
  error: (error: Error) => void
}

function defaultApiUrl (url: string): string {
  const parsed = new URL(url)
  if (parsed.protocol !== 'ws:' && parsed.protocol !== 'wss:') throw new Error('apiUrl is required when url is not ws:// or wss://')
  return `${parsed.protocol === 'wss:' ? 'https:' : 'http:'}//${parsed.host}`
}

export class ChatClient extends Emitter<ClientEvents> {
  readonly deviceId: string
  /** Groups over REST: create, membership, roles, history, read marks, receipts, recall, mute. */
  readonly groups: GroupsApi
  /** Blocking over REST: block, unblock, list. */
  readonly blocks: BlocksApi
  readonly #connection: Connection
  readonly #rest: RestClient
  readonly #encryption: Encryption
  readonly #sender: Sender
  readonly #receiver: Receiver
  readonly #presence: PresenceWatch
  readonly #attachments: AttachmentsApi
  #stopped = false

  constructor (options: ClientOptions) {
    super()
    this.deviceId = options.deviceId
    const storage = options.storage ?? new MemoryStorage()
    // A stopped client reports nothing more (e.g. a subscribe cut short by stop()).
    const onError = (error: Error): void => { if (!this.#stopped) this.emit('error', error) }
    this.#connection = new Connection({
      ...options,
      onState: (state) => {
        if (state !== 'online') this.#sender.hold()
        // A final state (revoked, loggedOut) stops everything, e.g. a catch-up retry that would ask for a token again.
        if (state === 'revoked' || state === 'loggedOut') this.#halt()
        this.emit('state', state)
      },
      onConnect: (client) => { void this.#onConnect(client) },
      onPacket: (topic, payload) => this.#onPacket(topic, payload),
      onError,
      isRevoked: (token) => this.#rest.isRevoked(token)
    })
    const mqtt = (): MqttClient | undefined => this.#connection.mqtt
    this.#rest = new RestClient(options.apiUrl ?? defaultApiUrl(options.url), (forceNew) => this.#connection.token(forceNew))
    this.#encryption = new Encryption(options.e2ee?.keyPair, this.#rest)
    this.#attachments = new AttachmentsApi(options.apiUrl ?? defaultApiUrl(options.url), (forceNew) => this.#connection.token(forceNew), (method, path) => this.#rest.request(method, path))
    this.groups = new GroupsApi(this.#rest)
    this.blocks = new BlocksApi(this.#rest)
    this.#receiver = new Receiver({ storage, rest: this.#rest, gapWaitMs: options.gapWaitMs, startFrom: options.startFrom, deliver: (event) => this.#deliver(event), onError })
    this.#sender = new Sender({
      outbox: new Outbox(storage),
      rest: this.#rest,
      mqtt,
      accept: (event) => this.#receiver.accept(event),
      decrypt: (message) => this.#encryption.open(message),
      onError,
      confirmWaitMs: options.confirmWaitMs
    })
    this.#presence = new PresenceWatch(mqtt)
  }

  get state (): ConnectionState { return this.#connection.state }
  get userId (): string { return this.#connection.userId }

  /** The highest seq processed: everything up to it was emitted exactly once. */
  get lastSeq (): number { return this.#receiver.lastSeq }

  async start (): Promise<void> {
    await this.#connection.token(false)
    await this.#receiver.load()
    await this.#sender.load()
    await this.#connection.start()
  }

  async stop (): Promise<void> {
    if (this.#stopped) return
    this.#halt()
    await this.#connection.stop()
  }

  /** Nothing more is received, sent or reported. */
  #halt (): void {
    this.#stopped = true
    this.#receiver.stop()
    this.#sender.stop()
  }

  /**
   * Logs out: the server refuses this token from now on (with `all`, every token
   * of yours issued until now, closing your other devices' connections too), and
   * this client stops in the state `loggedOut`. Unsent messages stay in storage.
   */
  async logout (options: { all?: boolean } = {}): Promise<void> {
    await this.#rest.request('POST', '/v1/sessions/logout', options.all === true ? { all: true } : {})
    this.#halt()
    await this.#connection.finish('loggedOut')
  }

  async #onConnect (client: MqttClient): Promise<void> {
    const user = this.userId
    try {
      await client.subscribeAsync([`user/${user}/inbox`, `user/${user}/device/${this.deviceId}/errors`], { qos: 1 })
      await this.#presence.resubscribe(client)
    } catch (error) {
      if (!this.#stopped) this.emit('error', error as Error)
    }
    this.#sender.flush()
    await this.#receiver.sync()
  }

  #onPacket (topic: string, payload: Buffer | Uint8Array): void {
    if (this.#stopped) return // mqtt.js may still hand over packets read before the socket closed
    let event: unknown
    try { event = JSON.parse(new TextDecoder().decode(payload)) } catch { return }
    if (topic.startsWith('presence/')) return this.emit('presence', topic.slice('presence/'.length), event as PresenceState)
    const typed = event as { type?: string, seq?: number }
    if (typed.type === 'error') return this.#sender.refused(event as ServerErrorEvent)
    if (typed.type === 'typing') return this.emit('typing', event as TypingEvent)
    if (typeof typed.seq === 'number') this.#receiver.accept(event as LogEvent)
  }

  #deliver (event: LogEvent): void {
    if (event.type === 'message') {
      const message = this.#encryption.open(event)
      if (message.from === this.userId) this.#sender.stored(message)
      this.emit('message', message)
    } else if (event.type === 'receipt') {
      this.emit('receipt', event)
    } else if (event.type === 'recall') {
      this.emit('recall', event)
    } else if (event.type === 'edit') {
      this.emit('edit', this.#encryption.open(event))
    } else {
      this.emit('groupEvent', event)
    }
  }

  /** Catches up from the last seq through /v1/sync. */
  sync (): Promise<void> { return this.#receiver.sync() }

  /**
   * Sends `body` to `to`, with files from `upload`; resolves with the stamped message once the server has stored it.
   * With end-to-end encryption, the files' keys travel inside the encrypted body (and only encrypted uploads are taken).
   * `replyTo`: the message this answers (`{id, from}`); a quote's text goes in your body.
   */
  async send (to: string, body: unknown, options: SendOptions = {}): Promise<MessageEvent> {
    const id = globalThis.crypto.randomUUID()
    const files = options.attachments
    if (!this.#encryption.enabled) return this.#sender.send({ id, to, body, ...replyOption(options), ...requests(files, true) })
    const clear = files?.find((file) => file.key === undefined)
    if (clear !== undefined) throw new Error(`attachment ${clear.id} was uploaded unencrypted; upload it again with end-to-end encryption on`)
    const sealed = await this.#encryption.seal(this.userId, to, id, files === undefined ? body : { body, files })
    return this.#sender.send({ id, to, body: sealed, ...replyOption(options), ...requests(files, false) })
  }

  /**
   * Uploads a file (resumable: after a dropped connection it goes on from what the server has);
   * resolves with the attachment to pass to `send`. Encrypted first when end-to-end encryption is configured.
   */
  async upload (data: Uint8Array | ArrayBuffer, options: UploadOptions = {}): Promise<Attachment> {
    return this.#attachments.upload(data instanceof Uint8Array ? data : new Uint8Array(data), { ...options, encrypt: options.encrypt ?? this.#encryption.enabled })
  }

  /** The bytes of a message's attachment (decrypted and checked when it was encrypted). */
  download (attachment: Attachment | string): Promise<Uint8Array> { return this.#attachments.download(attachment) }

  /**
   * Sends `body` to a group; resolves with the stamped message (with `group` and `gseq`).
   * End-to-end encryption covers 1:1 conversations only: with `e2ee` configured this
   * refuses rather than send a group message in the clear.
   */
  async sendToGroup (group: string, body: unknown, options: SendOptions = {}): Promise<MessageEvent> {
    if (this.#encryption.enabled) throw new Error('end-to-end encryption covers 1:1 conversations only; group messages would be sent in the clear')
    return this.#sender.send({ id: globalThis.crypto.randomUUID(), group, body, ...replyOption(options), ...requests(options.attachments, true) })
  }

  /** Tells the group's other members you are typing (or stopped). */
  typingInGroup (group: string, active = true): void { this.#presence.typingInGroup(group, active) }

  /** Tells `peer` you are typing (or stopped). Ephemeral: never stored or pushed. */
  typing (peer: string, active = true): void { this.#presence.typing(peer, active) }

  /** Messages with `peer`, oldest first (decrypted). */
  async history (peer: string, range: { before?: number, after?: number, limit?: number } = {}): Promise<{ messages: MessageEvent[], hasMore: boolean }> {
    const query = new URLSearchParams()
    for (const [key, value] of Object.entries(range)) if (value !== undefined) query.set(key, String(value))
    const page = await this.#rest.request<{ messages: MessageEvent[], hasMore: boolean }>('GET', `/v1/conversations/${peer}/messages?${query}`)
    return { messages: page.messages.map((message) => this.#encryption.open(message)), hasMore: page.hasMore }
  }

  /**
   * Searches your own messages on the server (1:1, and groups while you were a member),
   * newest first; `next` is the `before` of the next page. End-to-end encrypted messages
   * are never indexed by the server: search those in what your app keeps decrypted.
   */
  async search (q: string, options: { peer?: string, group?: string, before?: number, limit?: number, order?: 'newest' | 'relevance' } = {}): Promise<{ results: SearchResult[], next?: number }> {
    const query = new URLSearchParams({ q })
    for (const [key, value] of Object.entries(options)) if (value !== undefined) query.set(key, String(value))
    return this.#rest.request('GET', `/v1/search?${query}`)
  }

  async conversations (): Promise<ConversationSummary[]> {
    const page = await this.#rest.request<{ conversations: ConversationSummary[] }>('GET', '/v1/conversations?limit=100')
    return page.conversations.map((c) => ({ ...c, lastMessage: c.lastMessage === null ? null : this.#encryption.open(c.lastMessage) }))
  }

  /** Marks the conversation read up to a seq (yours) or a message id. */
  async markRead (peer: string, upTo: number | { id: string }): Promise<{ readUpTo: number, unread: number }> {
    return this.#rest.request('POST', `/v1/conversations/${peer}/read`, typeof upTo === 'number' ? { seq: upTo } : upTo)
  }

  async recall (id: string): Promise<MessageEvent> {
    return (await this.#rest.request<{ message: MessageEvent }>('POST', `/v1/messages/${id}/recall`)).message
  }

  /**
   * Replaces the body of one of your messages (within the server's edit window); returns the
   * edited message. Both sides get an `edit` event. With `e2ee`, pass the recipient (`to`) so
   * the new body is sealed for them.
   */
  async edit (id: string, body: unknown, options: { to?: string } = {}): Promise<MessageEvent> {
    let sealed = body
    if (this.#encryption.enabled) {
      if (options.to === undefined) throw new Error('with end-to-end encryption, edit needs the recipient: edit(id, body, { to })')
      sealed = await this.#encryption.seal(this.userId, options.to, id, body)
    }
    const { message } = await this.#rest.request<{ message: MessageEvent }>('POST', `/v1/messages/${id}/edit`, { body: sealed })
    return this.#encryption.open(message)
  }

  async presence (user: string): Promise<PresenceState & { user: string }> {
    return this.#rest.request('GET', `/v1/presence/${user}`)
  }

  /** Streams `user`'s presence as 'presence' events (the current state first); returns a function to stop. */
  watchPresence (user: string): () => void { return this.#presence.watch(user) }

  /** Publishes this client's public key, so others can encrypt to you. */
  publishKey (): Promise<void> { return this.#encryption.publishKey() }
}

/** A message's `attachments` field: ids, and thumbnails unless they travel encrypted. */
function requests (files: Attachment[] | undefined, withThumbnails: boolean): { attachments?: AttachmentRequest[] } {
  if (files === undefined || files.length === 0) return {}
  return { attachments: files.map((file) => withThumbnails && file.thumbnail !== undefined ? { id: file.id, thumbnail: file.thumbnail } : { id: file.id }) }
}

/** Options of `send` and `sendToGroup`. */
export interface SendOptions {
  /** The message this one answers: `{id, from}`, or in a group `{gseq}`. */
  replyTo?: ReplyTo
  /** Files from `upload`. */
  attachments?: Attachment[]
}

function replyOption ({ replyTo }: SendOptions): { replyTo?: ReplyTo } {
  return replyTo === undefined ? {} : { replyTo }
}

/** Creates and starts a client; see client-sdk/README.md. */
export async function createClient (options: ClientOptions): Promise<ChatClient> {
  const client = new ChatClient(options)
  await client.start()
  return client
}
