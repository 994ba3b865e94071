// Assembles the embedded Aedes broker: persistence and bus from storage/,
// the hooks in broker/hooks/, and the message service that every accepted
// publish goes through.
import { Aedes, type Client } from 'aedes'
import { parseClientId } from '../auth/identity.ts'
import type { Logger } from 'pino'
import type { BrokerStore } from '../storage/broker-store.ts'
import { MessageService, type Delivery } from '../messaging/message-service.ts'
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
import { deviceErrorsTopic, inboxRecipient, inboxTopic, SINK_TOPIC } from './topics.ts'

export interface BrokerOptions {
  store: BrokerStore
  history: HistoryStore
  recallWindowMs: number
  verifyToken: VerifyToken
  maxPayloadBytes: number
  nodeId: string | undefined
  log: Logger
}

export interface MessagingBroker {
  broker: Aedes
  messages: MessageService
  receipts: ReceiptService
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

export async function createMessagingBroker ({ store, history, recallWindowMs, verifyToken, maxPayloadBytes, nodeId, log }: BrokerOptions): Promise<MessagingBroker> {
  const expiry = new TokenExpiry()
  dropSinkTraffic(store.mq)
  guardSubscriptionStore(store.persistence as never)
  orderDeliveries(store.persistence as never)

  const broker = await Aedes.createBroker({
    ...(nodeId === undefined ? {} : { id: nodeId }),
    persistence: store.persistence as never,
    mq: store.mq as never,
    // `<userId>:<deviceId>` is longer than MQTT 3.1's 23-character suggestion.
    maxClientsIdLength: 257,
    authenticate: createAuthenticate({
      verifyToken,
      log,
      onAuthenticated: (client, claims) => expiry.track(client, claims)
    }),
    authorizeSubscribe,
    authorizeForward: authorizeForward as never
  })

  limitPacketSize(broker, packetLimitFor(maxPayloadBytes))

  const delivery: Delivery = {
    toUser: (user, json, durable) => publishText(broker, inboxTopic(user), json, durable ? 1 : 0)
  }
  const messages = new MessageService({ history, delivery, recallWindowMs })
  const receipts = new ReceiptService({
    history,
    delivery,
    onError: (error) => log.error({ err: error }, 'could not record a delivery receipt')
  })
  recordDeliveries(broker, receipts)

  broker.authorizePublish = createAuthorizePublish({
    messages,
    maxPayloadBytes,
    log,
    reportError: (device, event) => publishJson(broker, deviceErrorsTopic(device.userId, device.deviceId), event, 1)
  })

  // Aedes emits 'error' for store failures it cannot attribute to a client;
  // without a listener that would crash the process.
  ;(broker as unknown as NodeJS.EventEmitter).on('error', (error: Error) => log.error({ err: error }, 'broker error'))
  broker.on('clientDisconnect', (client: Client) => expiry.forget(client))
  broker.on('clientError', (client: Client, error: Error) => {
    log.debug({ clientId: client.id, err: error.message }, 'client error')
  })
  broker.on('connectionError', (client: Client, error: Error) => {
    log.debug({ clientId: client?.id, err: error.message }, 'connection error')
  })

  return {
    broker,
    messages,
    receipts,
    async close () {
      await new Promise<void>((resolve) => broker.close(() => resolve()))
      await receipts.close()
    }
  }
}
