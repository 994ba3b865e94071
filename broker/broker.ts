// Assembles the embedded Aedes broker: persistence and bus from storage/,
// the hooks in broker/hooks/, and the message service that every accepted
// publish goes through.
import { Aedes, type Client } from 'aedes'
import { parseClientId, type DeviceIdentity } from '../protocol/identity.ts'
import type { ErrorEvent } from '../protocol/errors.ts'
import type { Logger } from 'pino'
import type { BrokerStore } from '../storage/broker-store.ts'
import { MessageService, type SendEphemeral } from '../messaging/message-service.ts'
import { LogDelivery, type StoredMessage } from '../messaging/log-delivery.ts'
import type { PresenceRegistry, PresenceState } from '../presence/presence-registry.ts'
import { MemoryPresence } from '../presence/memory-presence.ts'
import { correctStalePresence } from '../presence/stale-presence.ts'
import { PresenceTracker } from '../presence/presence-tracker.ts'
import { connectProblem, rememberKeepalive, type KeepaliveBounds } from './hooks/connect-rules.ts'
import { publishEphemeral } from './ephemeral.ts'
import { ReceiptService } from '../messaging/receipt-service.ts'
import type { HistoryStore } from '../history/history-store.ts'
import { groupMessageHeader, messageHeader } from '../history/events.ts'
import { createAuthenticate, type VerifyToken } from './hooks/authenticate.ts'
import { createAuthorizeSubscribe } from './hooks/authorize-subscribe.ts'
import { createAuthorizePublish } from './hooks/authorize-publish.ts'
import { createAuthorizeForward, guardSubscriptionStore } from './guard-persistence.ts'
import { unsentBytes } from './backpressure.ts'
import { orderDeliveries } from './ordered-delivery.ts'
import { limitPacketSize, packetLimitFor } from './packet-size-guard.ts'
import { TokenExpiry } from './hooks/token-expiry.ts'
import { deviceErrorsTopic, inboxRecipient, inboxTopic, presenceTopic, SINK_TOPIC } from '../protocol/topics.ts'
import { InboxDelivery } from './inbox/inbox-delivery.ts'
import type { LogFeed } from '../storage/log-feed.ts'
import type { Metrics } from '../observability/metrics.ts'
import type { Revocations } from '../auth/revocations.ts'
import { Kicker } from './kick.ts'
import { TokenBuckets } from './rate-limits.ts'
import type { Limits } from '../config/config.ts'
import type { GroupStore } from '../history/group-store.ts'
import { GroupService } from '../messaging/group-service.ts'
import { BlockService } from '../messaging/block-service.ts'
import { PresenceVisibility, type PresenceVisibilityMode } from '../presence/presence-visibility.ts'
import { PresenceWatches } from './presence-watches.ts'

export interface BrokerOptions {
  store: BrokerStore
  history: HistoryStore
  /** Tells every process of new log events (durable delivery). */
  feed: LogFeed
  groups: GroupStore
  maxGroupMembers: number
  /** A reconnecting device is not sent events older than this (BACKLOG_RETENTION_SECONDS). */
  backlogRetentionMs: number
  recallWindowMs: number
  verifyToken: VerifyToken
  maxPayloadBytes: number
  nodeId: string
  presence: PresenceRegistry
  keepalive: KeepaliveBounds
  /** Told of every newly stored message (push). */
  onStored?: (message: StoredMessage) => void
  metrics?: Metrics
  revocations: Revocations
  limits: Limits
  /** The per-user publish budget (shared with REST): 0 when a publish is allowed, else ms until one is. */
  takePublish: (user: string) => number
  /** PRESENCE_VISIBILITY. */
  presenceVisibility: PresenceVisibilityMode
  log: Logger
}

export interface MessagingBroker {
  broker: Aedes
  messages: MessageService
  groups: GroupService
  receipts: ReceiptService
  blocks: BlockService
  presence: PresenceTracker
  /** Who may see whose presence (also for REST). */
  visibility: PresenceVisibility
  close (): Promise<void>
}

/** Redirected client packets stop here instead of crossing the bus (and Redis). */
function dropSinkTraffic (mq: BrokerStore['mq']): void {
  const emit = mq.emit.bind(mq)
  mq.emit = (packet, callback) => {
    if (packet.topic === SINK_TOPIC) return callback?.()
    emit(packet, callback)
  }
}

/** A recipient's device PUBACKed a message: that is a delivery receipt (coalesced). */
function recordDeliveries (broker: Aedes, receipts: ReceiptService, groups: GroupService): void {
  broker.on('ack', (packet, client) => {
    if (packet === undefined || packet === null || client === null || !('payload' in packet)) return
    const reader = parseClientId(client.id)?.userId
    if (reader === undefined || inboxRecipient(packet.topic) !== reader) return
    // The header is in the first bytes; the body is never decoded.
    const start = packet.payload.toString('utf8', 0, 512)
    const header = messageHeader(start)
    if (header !== undefined && header.to === reader && header.from !== reader) return receipts.delivered(reader, header.from, header.seq)
    const group = groupMessageHeader(start)
    if (group !== undefined && group.from !== reader) groups.delivered(reader, group.group, group.gseq)
  })
}

export async function createMessagingBroker (options: BrokerOptions): Promise<MessagingBroker> {
  const { store, history, feed, recallWindowMs, verifyToken, maxPayloadBytes, nodeId, log } = options
  const expiry = new TokenExpiry()
  let broker: Aedes | undefined
  let inbox: InboxDelivery | undefined
  let kicker: Kicker | undefined
  const connectBuckets = new TokenBuckets(options.limits.connect)
  const publishPresence = (user: string, state: PresenceState): Promise<void> =>
    publishEphemeral(broker!, presenceTopic(user), JSON.stringify(state), true)
  const presence = new PresenceTracker({ registry: options.presence, log, publish: publishPresence })
  const visibility = new PresenceVisibility({
    mode: options.presenceVisibility,
    facts: {
      isBlocked: (blocker, user) => history.isBlocked(blocker, user),
      async shareConversation (a, b) {
        // Both logs: a message withheld by a block puts the conversation in the sender's log only.
        if (await history.hasConversation(a, b) && await history.hasConversation(b, a)) return true
        const [mine, theirs] = await Promise.all([options.groups.groupsOf(a), options.groups.groupsOf(b)])
        const shared = new Set(mine)
        return theirs.some((group) => shared.has(group))
      }
    },
    // The viewer missed the subject's current state while hidden: send it again (idempotent for the others).
    becameVisible: (_viewer, subject) => {
      options.presence.states([subject])
        .then(([state]) => state === undefined ? undefined : publishEphemeral(broker!, presenceTopic(subject), JSON.stringify(state)))
        .catch((error: unknown) => log.warn({ err: error }, 'could not send presence again'))
    }
  })
  // Blocks and first conversations change who sees whom, on every process.
  const reconsider = (a: string, b: string): Promise<void> => store.signal.send({ type: 'visibility', a, b })
  store.signal.listen((message) => {
    if (message.type !== 'visibility' || typeof message.a !== 'string' || typeof message.b !== 'string') return
    visibility.reconsider(message.a, message.b).catch((error: unknown) => log.warn({ err: error }, 'could not decide presence visibility'))
  })
  // An error event goes straight to the connected device (QoS 0, no store): it only matters
  // to the device concerned, and a refusal must cost far less than a message (one client may flood).
  const sendErrorEvent = (device: DeviceIdentity, event: ErrorEvent, awaitDelivery = false): Promise<void> =>
    publishEphemeral(broker!, deviceErrorsTopic(device.userId, device.deviceId), JSON.stringify(event), false, awaitDelivery)
  const watches = new PresenceWatches({
    max: options.limits.presenceWatches,
    watchers: visibility,
    report: (client, event) => {
      sendErrorEvent(parseClientId(client.id)!, event).catch((error: unknown) => log.warn({ err: error }, 'could not send an error event'))
    }
  })
  dropSinkTraffic(store.mq)
  guardSubscriptionStore(store.persistence as never)
  orderDeliveries(store.persistence as never)

  broker = await Aedes.createBroker({
    id: nodeId,
    persistence: store.persistence as never,
    mq: store.mq as never,
    // `<userId>:<deviceId>` is longer than MQTT 3.1's 23-character suggestion.
    maxClientsIdLength: 257,
    preConnect: rememberKeepalive as never,
    authenticate: createAuthenticate({
      verifyToken,
      log,
      connectProblem: (client) => {
        // Over WebSocket the address is the HTTP request's socket's.
        const wire = client as unknown as { conn?: { remoteAddress?: string }, req?: { socket?: { remoteAddress?: string } } }
        const address = wire.req?.socket?.remoteAddress ?? wire.conn?.remoteAddress ?? 'unknown'
        const wait = connectBuckets.take(address)
        if (wait > 0) return { returnCode: 3, reason: `too many connections from ${address}; retry in ${wait} ms` }
        return connectProblem(client, options.keepalive)
      },
      deviceProblem: async (client, user) => {
        const max = options.limits.devicesPerUser
        if (max === 0) return undefined
        const connected = await options.presence.connectedDevices(user)
        // Reconnecting (a takeover of the same clientId) is always allowed.
        if (connected.includes(client.id) || connected.length < max) return undefined
        return { returnCode: 5, reason: `at most ${max} devices of one user may be connected at once` }
      },
      isRevoked: (token, claims, deviceId) => options.revocations.isRevoked({ token, ...claims }, deviceId),
      onAuthenticated: async (client, claims, token) => {
        kicker!.authenticated(client, token)
        await inbox!.sessionStarting(client)
        expiry.track(client, claims)
        await presence.connected(client, claims.sub)
      }
    }),
    authorizeSubscribe: createAuthorizeSubscribe(
      (client) => inbox!.prepareSubscription(client),
      (viewer, subject) => visibility.check(viewer, subject),
      (client, topic) => watches.take(client, topic)
    ),
    authorizeForward: createAuthorizeForward((viewer, subject) => visibility.visible(viewer, subject), () => options.metrics?.ephemeralDropped.inc({ reason: 'slow_consumer' })) as never
  })

  const aedes: Aedes = broker
  watches.listen(aedes)
  limitPacketSize(aedes, packetLimitFor(maxPayloadBytes))
  kicker = new Kicker(aedes, store.signal)
  const metrics = options.metrics
  inbox = new InboxDelivery(aedes, {
    history,
    feed,
    retentionMs: options.backlogRetentionMs,
    log,
    ...(metrics === undefined ? {} : { onSent: (source) => metrics.delivered.inc({ source }), onEvicted: (count) => metrics.sessionsEvicted.inc(count) })
  })
  if (metrics !== undefined) {
    const transport = (client: Client): string => (client as unknown as { req?: unknown }).req === undefined ? 'tcp' : 'websocket'
    aedes.on('client', (client) => metrics.connections.inc({ transport: transport(client) }))
    aedes.on('clientDisconnect', (client) => metrics.connections.dec({ transport: transport(client) }))
    metrics.unsentBytesSource = () => {
      let total = 0
      for (const client of Object.values((aedes as unknown as { clients: Record<string, Client> }).clients)) total += unsentBytes(client)
      return total
    }
  }

  const ephemeral: SendEphemeral = (user, json) => publishEphemeral(aedes, inboxTopic(user), json)
  const logSink = new LogDelivery({
    feed,
    onStored: options.onStored,
    groupName: async (group) => (await options.groups.getGroup(group))?.name,
    onNewConversation: (from, to) => { reconsider(from, to).catch((error: unknown) => log.warn({ err: error }, 'could not signal a new conversation')) },
    onError: (error) => log.error({ err: error }, 'push lookup failed')
  })
  const groups = new GroupService({
    groups: options.groups,
    history,
    log: logSink,
    ephemeral,
    maxMembers: options.maxGroupMembers,
    maxGroupsPerUser: options.limits.groupsPerUser,
    recallWindowMs,
    onError: (error) => log.error({ err: error }, 'group delivery marks failed')
  })
  const messages = new MessageService({ history, log: logSink, ephemeral, recallWindowMs })
  const blocks = new BlockService({ history, maxBlocks: options.limits.blocksPerUser, onChange: reconsider })
  const receipts = new ReceiptService({
    history,
    log: logSink,
    onError: (error) => log.error({ err: error }, 'could not record a delivery receipt')
  })
  recordDeliveries(aedes, receipts, groups)

  aedes.authorizePublish = createAuthorizePublish({
    messages,
    groups,
    maxPayloadBytes,
    log,
    // Its PUBACK waits until the bus has taken the event (embedded: written to the device's
    // socket, so a flood is paced by the flooder; Redis: published, and it may arrive after the PUBACK).
    reportError: (device, event) => sendErrorEvent(device, event, true),
    takePublish: options.takePublish,
    ...(metrics === undefined
      ? {}
      : {
          observe: {
            accepted: (kind, seconds) => {
              metrics.accepted.inc({ kind })
              if (kind !== 'typing') metrics.publishToAck.observe(seconds)
            },
            rejected: (code) => metrics.rejected.inc({ code })
          }
        })
  })

  // Aedes emits 'error' for store failures it cannot attribute to a client;
  // without a listener that would crash the process.
  ;(aedes as unknown as NodeJS.EventEmitter).on('error', (error: Error) => log.error({ err: error }, 'broker error'))
  aedes.on('clientDisconnect', (client: Client) => {
    expiry.forget(client)
    presence.disconnected(client)
  })
  if (options.presence instanceof MemoryPresence) {
    await correctStalePresence(aedes, options.presence, publishPresence)
  }
  presence.start()
  aedes.on('clientError', (client: Client, error: Error) => {
    log.debug({ clientId: client.id, err: error.message }, 'client error')
  })
  aedes.on('connectionError', (client: Client, error: Error) => {
    log.debug({ clientId: client?.id, err: error.message }, 'connection error')
  })

  return {
    broker: aedes,
    messages,
    groups,
    receipts,
    blocks,
    presence,
    visibility,
    async close () {
      visibility.close()
      await presence.leave().catch((error: unknown) => log.warn({ err: error }, 'could not publish presence at shutdown'))
      await new Promise<void>((resolve) => aedes.close(() => resolve()))
      await inbox!.close()
      await receipts.close()
      await groups.close()
    }
  }
}
