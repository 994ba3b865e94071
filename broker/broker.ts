// Assembles the embedded Aedes broker: persistence and bus from storage/,
// the hooks in broker/hooks/, and the message service that every accepted
// publish goes through.
import { Aedes, type Client } from 'aedes'
import { parseClientId } from '../auth/identity.ts'
import type { Logger } from 'pino'
import type { BrokerStore } from '../storage/broker-store.ts'
import { MessageService, type Delivery, type StoredMessage } from '../messaging/message-service.ts'
import type { PresenceRegistry, PresenceState } from '../presence/presence-registry.ts'
import { MemoryPresence } from '../presence/memory-presence.ts'
import { correctStalePresence } from '../presence/stale-presence.ts'
import { PresenceTracker } from '../presence/presence-tracker.ts'
import { connectProblem, rememberKeepalive, type KeepaliveBounds } from './hooks/connect-rules.ts'
import { publishEphemeral } from './ephemeral.ts'
import { ReceiptService } from '../messaging/receipt-service.ts'
import type { HistoryStore } from '../history/history-store.ts'
import { messageHeader } from '../history/events.ts'
import { createAuthenticate, type VerifyToken } from './hooks/authenticate.ts'
import { authorizeSubscribe } from './hooks/authorize-subscribe.ts'
import { createAuthorizePublish } from './hooks/authorize-publish.ts'
import { authorizeForward, guardSubscriptionStore } from './guard-persistence.ts'
import { orderDeliveries } from './ordered-delivery.ts'
import { limitPacketSize, packetLimitFor } from './packet-size-guard.ts'
import { TokenExpiry } from './hooks/token-expiry.ts'
import { publishJson, publishText } from './publish-json.ts'
import { deviceErrorsTopic, inboxRecipient, inboxTopic, presenceTopic, SINK_TOPIC } from './topics.ts'

export interface BrokerOptions {
  store: BrokerStore
  history: HistoryStore
  recallWindowMs: number
  verifyToken: VerifyToken
  maxPayloadBytes: number
  nodeId: string
  presence: PresenceRegistry
  keepalive: KeepaliveBounds
  /** Told of every newly stored message (push). */
  onStored?: (message: StoredMessage) => void
  log: Logger
}

export interface MessagingBroker {
  broker: Aedes
  messages: MessageService
  receipts: ReceiptService
  presence: PresenceTracker
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
function recordDeliveries (broker: Aedes, receipts: ReceiptService): void {
  broker.on('ack', (packet, client) => {
    if (packet === undefined || packet === null || client === null || !('payload' in packet)) return
    const reader = parseClientId(client.id)?.userId
    if (reader === undefined || inboxRecipient(packet.topic) !== reader) return
    const header = messageHeader(packet.payload.toString())
    if (header !== undefined && header.to === reader && header.from !== reader) receipts.delivered(reader, header.from, header.seq)
  })
}

export async function createMessagingBroker (options: BrokerOptions): Promise<MessagingBroker> {
  const { store, history, recallWindowMs, verifyToken, maxPayloadBytes, nodeId, log } = options
  const expiry = new TokenExpiry()
  let broker: Aedes | undefined
  const publishPresence = (user: string, state: PresenceState): Promise<void> =>
    publishEphemeral(broker!, presenceTopic(user), JSON.stringify(state), true)
  const presence = new PresenceTracker({ registry: options.presence, log, publish: publishPresence })
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
      connectProblem: (client) => connectProblem(client, options.keepalive),
      onAuthenticated: async (client, claims) => {
        expiry.track(client, claims)
        await presence.connected(client, claims.sub)
      }
    }),
    authorizeSubscribe,
    authorizeForward: authorizeForward as never
  })

  const aedes: Aedes = broker
  limitPacketSize(aedes, packetLimitFor(maxPayloadBytes))

  const delivery: Delivery = {
    toUser: (user, json, durable) => durable
      ? publishText(aedes, inboxTopic(user), json, 1)
      : publishEphemeral(aedes, inboxTopic(user), json)
  }
  const messages = new MessageService({ history, delivery, recallWindowMs, onStored: options.onStored })
  const receipts = new ReceiptService({
    history,
    delivery,
    onError: (error) => log.error({ err: error }, 'could not record a delivery receipt')
  })
  recordDeliveries(aedes, receipts)

  aedes.authorizePublish = createAuthorizePublish({
    messages,
    maxPayloadBytes,
    log,
    reportError: (device, event) => publishJson(aedes, deviceErrorsTopic(device.userId, device.deviceId), event, 1)
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
    receipts,
    presence,
    async close () {
      await presence.leave().catch((error: unknown) => log.warn({ err: error }, 'could not publish presence at shutdown'))
      await new Promise<void>((resolve) => aedes.close(() => resolve()))
      await receipts.close()
    }
  }
}
