// Assembles the embedded Aedes broker: persistence and bus from storage/,
// the hooks in broker/hooks/, inbox delivery from the log (broker/inbox/),
// what a PUBACK does (broker/handlers/puback.ts), and the thin adapters from
// Aedes to the services. It is handed the services (server/services.ts
// builds them, for REST too) and gives back the door they send through.
import { Aedes, type Client } from 'aedes'
import { parseClientId, type DeviceIdentity } from '../protocol/identity.ts'
import type { ErrorEvent } from '../protocol/errors.ts'
import type { Logger } from 'pino'
import type { BrokerStore } from '../storage/broker-store.ts'
import type { MessageService } from '../messaging/message-service.ts'
import type { GroupService } from '../messaging/group-service.ts'
import type { ReceiptService } from '../messaging/receipt-service.ts'
import type { PresenceRegistry, PresenceState } from '../presence/presence-registry.ts'
import { MemoryPresence } from '../presence/memory-presence.ts'
import { correctStalePresence, type RetainedPresence } from '../presence/stale-presence.ts'
import type { PresenceTracker } from '../presence/presence-tracker.ts'
import type { PresenceVisibility } from '../presence/presence-visibility.ts'
import type { CursorStore, LogStore } from '../history/history-store.ts'
import { connectProblem, rememberKeepalive, type KeepaliveBounds } from './hooks/connect-rules.ts'
import { publishEphemeral } from './ephemeral.ts'
import { createAuthenticate, type VerifyToken } from './hooks/authenticate.ts'
import { createAuthorizeSubscribe } from './hooks/authorize-subscribe.ts'
import { createAuthorizePublish } from './hooks/authorize-publish.ts'
import { handlePubacks } from './handlers/puback.ts'
import { createAuthorizeForward, guardSubscriptionStore } from './guard-persistence.ts'
import { unsentBytes } from './backpressure.ts'
import { orderDeliveries } from './ordered-delivery.ts'
import { limitPacketSize, packetLimitFor } from './packet-size-guard.ts'
import { TokenExpiry } from './hooks/token-expiry.ts'
import { deviceErrorsTopic, inboxTopic, presenceTopic, SINK_TOPIC } from '../protocol/topics.ts'
import { InboxDelivery } from './inbox/inbox-delivery.ts'
import type { LogFeed } from '../storage/log-feed.ts'
import type { Metrics } from '../observability/metrics.ts'
import type { Revocations } from '../auth/revocations.ts'
import { Kicker } from './kick.ts'
import { TokenBuckets } from './rate-limits.ts'
import type { Limits } from '../config/config.ts'
import { PresenceWatches } from './presence-watches.ts'
import { logConnections, transportOf } from './connection-log.ts'
import { noteCloseReason } from './close-reasons.ts'

/** The services the broker's hooks call (built by server/services.ts, shared with REST). */
export interface BrokerServices {
  messages: MessageService
  groups: GroupService
  receipts: ReceiptService
  presence: PresenceTracker
  visibility: PresenceVisibility
}

export interface BrokerOptions {
  store: BrokerStore
  history: Pick<LogStore, 'readLog' | 'head'>
  cursors: CursorStore
  /** Tells every process of new log events (durable delivery). */
  feed: LogFeed
  services: BrokerServices
  /** A reconnecting device is not sent events older than this (BACKLOG_RETENTION_SECONDS). */
  backlogRetentionMs: number
  verifyToken: VerifyToken
  maxPayloadBytes: number
  nodeId: string
  /** Who is connected where (the device bound; stale retained presence in embedded mode). */
  presenceRegistry: PresenceRegistry
  keepalive: KeepaliveBounds
  metrics?: Metrics
  revocations: Revocations
  limits: Limits
  /** The per-user publish budget (shared with REST): 0 when a publish is allowed, else ms until one is. */
  takePublish: (user: string) => number
  log: Logger
}

/** What the services send through the broker (server/transport.ts). */
export interface BrokerTransport {
  /** To the user's connected devices on the inbox topic, QoS 0, never stored. */
  ephemeral (user: string, json: string): Promise<void>
  /** On `presence/<user>`, QoS 0; `retain`: kept as the state later subscribers get. */
  presence (user: string, state: PresenceState, retain: boolean): Promise<void>
}

export interface MessagingBroker {
  broker: Aedes
  transport: BrokerTransport
  /** Stops taking packets and writes the inbox cursors; the services are closed by their owner. */
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

export async function createMessagingBroker (options: BrokerOptions): Promise<MessagingBroker> {
  const { store, history, feed, verifyToken, maxPayloadBytes, nodeId, log } = options
  const { messages, groups, receipts, presence, visibility } = options.services
  const expiry = new TokenExpiry()
  let broker: Aedes | undefined
  let inbox: InboxDelivery | undefined
  let kicker: Kicker | undefined
  const connectBuckets = new TokenBuckets(options.limits.connect)
  const transport: BrokerTransport = {
    ephemeral: (user, json) => publishEphemeral(broker!, inboxTopic(user), json),
    presence: (user, state, retain) => publishEphemeral(broker!, presenceTopic(user), JSON.stringify(state), retain)
  }
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
        if (wait > 0) return { returnCode: 3, code: 'connect_rate', reason: `too many connections from ${address}; retry in ${wait} ms` }
        return connectProblem(client, options.keepalive)
      },
      deviceProblem: async (client, user) => {
        const max = options.limits.devicesPerUser
        if (max === 0) return undefined
        const connected = await options.presenceRegistry.connectedDevices(user)
        // Reconnecting (a takeover of the same clientId) is always allowed.
        if (connected.includes(client.id) || connected.length < max) return undefined
        return { returnCode: 5, code: 'too_many_devices', reason: `at most ${max} devices of one user may be connected at once` }
      },
      isRevoked: (token, claims, deviceId) => options.revocations.isRevoked({ token, ...claims }, deviceId),
      onRefused: (refusal) => options.metrics?.connectsRefused.inc({ reason: refusal.code }),
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
  logConnections(aedes, { log, onTakeover: () => metrics?.takeovers.inc() })
  inbox = new InboxDelivery(aedes, {
    history,
    cursors: options.cursors,
    feed,
    retentionMs: options.backlogRetentionMs,
    log,
    ...(metrics === undefined ? {} : { onSent: (source) => metrics.delivered.inc({ source }), onEvicted: (count) => metrics.sessionsEvicted.inc(count) })
  })
  if (metrics !== undefined) {
    aedes.on('client', (client) => metrics.connections.inc({ transport: transportOf(client) }))
    aedes.on('clientDisconnect', (client) => metrics.connections.dec({ transport: transportOf(client) }))
    metrics.unsentBytesSource = () => {
      let total = 0
      for (const client of Object.values((aedes as unknown as { clients: Record<string, Client> }).clients)) total += unsentBytes(client)
      return total
    }
  }

  handlePubacks((aedes as unknown as { persistence: Parameters<typeof handlePubacks>[0] }).persistence, {
    inboxAck: (client, messageId) => inbox!.ack(client, messageId),
    receipts,
    groups
  })

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
  if (options.presenceRegistry instanceof MemoryPresence) {
    const retained = (aedes as unknown as { persistence: { createRetainedStreamCombi (patterns: string[]): AsyncIterable<RetainedPresence> } }).persistence
    await correctStalePresence(retained.createRetainedStreamCombi(['presence/+']), options.presenceRegistry, (user, state) => transport.presence(user, state, true))
  }
  aedes.on('clientError', (client: Client, error: Error) => {
    log.debug({ clientId: client.id, err: error.message }, 'client error')
  })
  aedes.on('connectionError', (client: Client, error: Error) => {
    log.debug({ clientId: client?.id, err: error.message }, 'connection error')
  })

  return {
    broker: aedes,
    transport,
    async close () {
      for (const client of Object.values((aedes as unknown as { clients: Record<string, Client> }).clients)) noteCloseReason(client, 'the server is stopping')
      await new Promise<void>((resolve) => aedes.close(() => resolve()))
      await inbox!.close()
    }
  }
}
