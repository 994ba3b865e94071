// Durable inbox delivery without broker queues. The user's history log is the
// only durable copy of an event; a device's persistent session is a cursor
// into it (stored by the history store). This wires one DeviceStream per
// connected, subscribed device into Aedes:
//   SUBSCRIBE user/<me>/inbox (persistent) → the cursor is created at the log's
//     head before the SUBACK, so everything after the SUBACK is kept for it;
//   CONNECT with a stored session → stream from cursor + 1, then live;
//   PUBACK → broker/handlers/puback.ts asks `ack` here: ours move the cursor
//     (written in coalesced batches);
//   UNSUBSCRIBE, or CONNECT with clean: true → the cursor is dropped;
//   a new cursor beyond MAX_SESSIONS_PER_USER → the store evicts the user's
//     session furthest behind (of a device not connected), and its stored
//     subscriptions are removed here, so that device's next CONNECT finds no
//     session (session present 0): it subscribes again and catches up with
//     GET /v1/sync.
// Aedes still carries everything else (errors topic, presence, typing).
import type { Aedes, Client } from 'aedes'
import type { Logger } from 'pino'
import { parseClientId, type DeviceIdentity } from '../../protocol/identity.ts'
import type { CursorStore, DeviceCursor, LogStore } from '../../history/history-store.ts'
import type { LogFeed } from '../../storage/log-feed.ts'
import { inboxTopic } from '../../protocol/topics.ts'
import { DeviceStream, type InboxPacket } from './device-stream.ts'
import { ConnectionPort, type SharedPortParts } from './connection-port.ts'
import { closeWith } from '../close-reasons.ts'

export interface InboxDeliveryOptions {
  history: Pick<LogStore, 'readLog' | 'head'>
  cursors: CursorStore
  feed: LogFeed
  /** Events older than this are not streamed to a reconnecting device. */
  retentionMs: number
  log: Logger
  /** How often acknowledged positions are written. A crash redelivers at most this much. */
  cursorFlushMs?: number
  /** One event written to a device (metrics). */
  onSent?: (source: 'backlog' | 'live') => void
  /** Sessions evicted by the bound (metrics). */
  onEvicted?: (count: number) => void
}

interface SessionStore {
  cleanSubscriptions (client: { id: string }): Promise<unknown>
}

interface Attached { stream: DeviceStream, device: DeviceIdentity }

export class InboxDelivery {
  readonly #options: InboxDeliveryOptions
  readonly #byClient = new Map<Client, Attached>()
  readonly #byUser = new Map<string, Set<DeviceStream>>()
  /** Acknowledged positions not yet written, by clientId. */
  readonly #dirty = new Map<string, DeviceCursor>()
  /** A disconnected device's last cursor write, which its reconnect must wait for. */
  readonly #settling = new Map<string, Promise<void>>()
  readonly #flushTimer: NodeJS.Timeout
  readonly #persistence: SessionStore
  readonly #portParts: SharedPortParts

  constructor (aedes: Aedes, options: InboxDeliveryOptions) {
    this.#options = options
    this.#persistence = (aedes as unknown as { persistence: SessionStore }).persistence
    this.#portParts = {
      history: options.history,
      log: options.log,
      advanced: (clientId, device, seq) => { this.#dirty.set(clientId, { user: device.userId, device: device.deviceId, seq }) },
      ...(options.onSent === undefined ? {} : { sent: options.onSent })
    }
    options.feed.listen((user, seq, event) => {
      const streams = this.#byUser.get(user)
      if (streams !== undefined) for (const stream of streams) stream.offer(seq, event)
    }, (user) => this.#byUser.has(user))
    options.feed.onResync(() => { for (const { stream } of this.#byClient.values()) stream.catchUp() })
    aedes.on('clientReady', (client) => this.#resume(client))
    aedes.on('subscribe', (subscriptions, client) => {
      const inbox = subscriptions.find((sub) => sub.topic === this.#inboxOf(client) && (sub.qos as number) !== 128)
      if (inbox !== undefined) this.#attach(client, inbox.qos === 0 ? 0 : 1, false)
    })
    aedes.on('unsubscribe', (topics, client) => {
      if (topics.includes(this.#inboxOf(client) ?? '')) this.#detach(client, true)
    })
    aedes.on('clientDisconnect', (client) => this.#detach(client, false))
    this.#flushTimer = setInterval(() => { void this.flush() }, options.cursorFlushMs ?? 200)
    this.#flushTimer.unref()
  }

  /** Before the SUBACK of a persistent session's inbox subscription: from now on, events are kept for it. */
  async prepareSubscription (client: Client): Promise<void> {
    const device = parseClientId(client.id)
    if (device === undefined || client.clean) return
    const opened = await this.#options.cursors.openCursor(device.userId, device.deviceId)
    this.#endEvicted(device.userId, opened.evicted)
  }

  /**
   * The store dropped these devices' cursors to keep the session bound: remove what Aedes
   * stored for their sessions too (subscriptions; in Redis also their queue), on every process.
   * Not awaited: the SUBACK need not wait for it. If this fails or the process dies first, the
   * session comes back without a cursor and is handled as one (see #attach).
   */
  #endEvicted (user: string, devices: string[]): void {
    if (devices.length === 0) return
    const clientIds = devices.map((device) => `${user}:${device}`)
    this.#options.log.info({ clientIds }, 'persistent sessions evicted (MAX_SESSIONS_PER_USER): they were the furthest behind')
    this.#options.onEvicted?.(devices.length)
    for (const id of clientIds) {
      this.#persistence.cleanSubscriptions({ id }).catch((error: unknown) => this.#options.log.warn({ err: error, clientId: id }, 'could not remove an evicted session\'s subscriptions'))
    }
  }

  /** Before the CONNACK: a clean session discards the device's cursor. */
  async sessionStarting (client: Client): Promise<void> {
    const device = parseClientId(client.id)
    if (device !== undefined && client.clean) await this.#options.cursors.dropCursor(device.userId, device.deviceId)
  }

  #inboxOf (client: Client): string | undefined {
    const device = parseClientId(client.id)
    return device === undefined ? undefined : inboxTopic(device.userId)
  }

  /** A PUBACK (broker/handlers/puback.ts): the acknowledged packet if the id is one of this client's stream, else undefined. */
  ack (client: Client, messageId: number): InboxPacket | undefined {
    return this.#byClient.get(client)?.stream.ack(messageId)
  }

  /** A reconnect with a stored session that holds the inbox subscription resumes at its cursor. */
  #resume (client: Client): void {
    const topic = this.#inboxOf(client)
    // Aedes has restored the session's subscriptions by now.
    const subscriptions = (client as unknown as { subscriptions: Record<string, { qos: number } | undefined> }).subscriptions
    const subscription = topic === undefined ? undefined : subscriptions[topic]
    if (client.clean || subscription === undefined) return
    this.#attach(client, subscription.qos === 0 ? 0 : 1, true)
  }

  /** `restored`: the subscription came back with a stored session (not from a SUBSCRIBE just now). */
  #attach (client: Client, qos: 0 | 1, restored: boolean): void {
    const device = parseClientId(client.id)
    if (device === undefined || this.#byClient.has(client) || client.closed) return
    const { history, retentionMs, log } = this.#options
    const stream = new DeviceStream({ topic: inboxTopic(device.userId), qos, retentionMs, port: new ConnectionPort(client, device, this.#portParts) })
    // Listen first, then read where to start: nothing appended in between is missed.
    this.#byClient.set(client, { stream, device })
    let streams = this.#byUser.get(device.userId)
    if (streams === undefined) this.#byUser.set(device.userId, streams = new Set())
    streams.add(stream)
    const position = client.clean
      ? history.head(device.userId)
      : (this.#settling.get(client.id) ?? Promise.resolve()).then(() => this.#options.cursors.openCursor(device.userId, device.deviceId)).then((opened) => {
          this.#endEvicted(device.userId, opened.evicted)
          // A restored session whose cursor is gone (evicted while its subscriptions were being
          // removed, or before a crash let that happen): it is a new session from the log's head,
          // counted in the bound like any other. Its first event is then not the next one, so the
          // device fetches what it missed with GET /v1/sync (docs/protocol.md, seq).
          if (opened.created && restored) log.info({ clientId: client.id, cursor: opened.seq }, 'a restored session had no cursor (evicted): it starts at the head')
          return opened.seq
        })
    position.then((cursor) => stream.start(cursor), (error: unknown) => {
      log.error({ err: error, clientId: client.id }, 'could not read the inbox cursor; closing the connection')
      closeWith(client, 'could not read the inbox cursor')
    })
  }

  #detach (client: Client, dropCursor: boolean): void {
    const attached = this.#byClient.get(client)
    if (attached === undefined) return
    const { stream, device } = attached
    this.#byClient.delete(client)
    const streams = this.#byUser.get(device.userId)
    streams?.delete(stream)
    if (streams?.size === 0) this.#byUser.delete(device.userId)
    const cursor = stream.close()
    if (client.clean) return
    this.#dirty.delete(client.id)
    const { cursors, log } = this.#options
    const write = dropCursor
      ? cursors.dropCursor(device.userId, device.deviceId)
      : cursors.saveCursors([{ user: device.userId, device: device.deviceId, seq: cursor }])
    const settled = write.catch((error: unknown) => log.warn({ err: error, clientId: client.id }, 'could not save the inbox cursor'))
    this.#settling.set(client.id, settled)
    void settled.then(() => { if (this.#settling.get(client.id) === settled) this.#settling.delete(client.id) })
  }

  /** Writes every acknowledged position not yet written, in one store call. */
  async flush (): Promise<void> {
    if (this.#dirty.size === 0) return
    const cursors = [...this.#dirty.values()]
    this.#dirty.clear()
    await this.#options.cursors.saveCursors(cursors).catch((error: unknown) => {
      // Lost positions only mean redelivery; keep the newest for the next flush.
      for (const cursor of cursors) {
        const key = `${cursor.user}:${cursor.device}`
        if (!this.#dirty.has(key)) this.#dirty.set(key, cursor)
      }
      this.#options.log.warn({ err: error }, 'could not save inbox cursors')
    })
  }

  async close (): Promise<void> {
    clearInterval(this.#flushTimer)
    for (const client of [...this.#byClient.keys()]) this.#detach(client, false)
    await Promise.all(this.#settling.values())
    await this.flush()
  }
}
