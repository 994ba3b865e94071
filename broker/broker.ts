// Assembles the embedded Aedes broker: persistence and bus from storage/,
// the hooks in broker/hooks/, and the message service that every accepted
// publish goes through.
import { Aedes, type Client } from 'aedes'
import type { Logger } from 'pino'
import type { BrokerStore } from '../storage/broker-store.ts'
import { MessageService } from '../messaging/message-service.ts'
import { createAuthenticate, type VerifyToken } from './hooks/authenticate.ts'
import { authorizeSubscribe } from './hooks/authorize-subscribe.ts'
import { createAuthorizePublish } from './hooks/authorize-publish.ts'
import { authorizeForward, guardSubscriptionStore } from './guard-persistence.ts'
import { orderDeliveries } from './ordered-delivery.ts'
import { limitPacketSize, packetLimitFor } from './packet-size-guard.ts'
import { TokenExpiry } from './hooks/token-expiry.ts'
import { publishJson } from './publish-json.ts'
import { deviceErrorsTopic, inboxTopic, SINK_TOPIC } from './topics.ts'

export interface BrokerOptions {
  store: BrokerStore
  verifyToken: VerifyToken
  maxPayloadBytes: number
  nodeId: string | undefined
  log: Logger
}

export interface MessagingBroker {
  broker: Aedes
  messages: MessageService
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

export async function createMessagingBroker ({ store, verifyToken, maxPayloadBytes, nodeId, log }: BrokerOptions): Promise<MessagingBroker> {
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

  const messages = new MessageService({
    delivery: {
      toUser: (recipient, envelope, durable) => publishJson(broker, inboxTopic(recipient), envelope, durable ? 1 : 0)
    }
  })

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
    close: () => new Promise<void>((resolve) => broker.close(() => resolve()))
  }
}
