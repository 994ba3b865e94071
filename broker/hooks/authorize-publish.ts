// PUBLISH: the message path. A client publish to `user/<peer>/inbox` is
// validated, stamped and re-published by the server; only when that is
// stored does Aedes send the PUBACK (Aedes acks QoS 1 *before* its own
// publish step, so durability has to be reached here, in the hook).
// The client's raw packet is then redirected to the sink topic.
// Anything unacceptable is acknowledged, not delivered, and explained with
// an error event on the sender's errors topic (see broker/errors.ts).
import type { Client } from 'aedes'
import type { PublishPacket } from 'aedes'
import type { Logger } from 'pino'
import { isValidId, parseClientId, type DeviceIdentity } from '../../auth/identity.ts'
import { errorEvent, PublishRejected } from '../errors.ts'
import { parseInboxPayload } from '../message.ts'
import { inboxRecipient, presenceTopic, SINK_TOPIC } from '../topics.ts'
import type { MessageService } from '../../messaging/message-service.ts'

export interface AuthorizePublishOptions {
  messages: MessageService
  reportError: (device: DeviceIdentity, event: ReturnType<typeof errorEvent>) => Promise<void>
  maxPayloadBytes: number
  log: Logger
}

const EMPTY = Buffer.alloc(0)

function redirectToSink (packet: PublishPacket): void {
  packet.topic = SINK_TOPIC
  packet.payload = EMPTY
  packet.retain = false
}

export function createAuthorizePublish ({ messages, reportError, maxPayloadBytes, log }: AuthorizePublishOptions) {
  async function accept (sender: DeviceIdentity, packet: PublishPacket): Promise<void> {
    // The only will a client may set (see connect-rules.ts). The server
    // publishes presence from connection events, so the will is dropped.
    if (packet.topic === presenceTopic(sender.userId)) return
    const recipient = inboxRecipient(packet.topic)
    if (recipient === undefined) {
      throw new PublishRejected('forbidden_topic', 'clients may publish only to user/<userId>/inbox')
    }
    if (!isValidId(recipient)) {
      throw new PublishRejected('unknown_recipient', 'recipient id is not a valid user id')
    }
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload
    const parsed = parseInboxPayload(payload, maxPayloadBytes)
    if (parsed.type === 'typing') return messages.typing(sender.userId, recipient, parsed.active)
    await messages.send(sender.userId, recipient, parsed, packet.qos > 0)
  }

  return function authorizePublish (
    client: Client | null,
    packet: PublishPacket,
    done: (error?: Error | null) => void
  ): void {
    // Server-originated publishes do not come through here; be safe anyway.
    const sender = client === null ? undefined : parseClientId(client.id)
    if (sender === undefined) return done(new Error('unauthenticated publish'))
    const topic = packet.topic
    accept(sender, packet).then(() => {
      redirectToSink(packet)
      done(null)
    }, (error: unknown) => {
      if (!(error instanceof PublishRejected)) {
        // Storage failure: no PUBACK, the connection closes, and the client
        // resends the packet when it reconnects, so nothing is lost.
        log.error({ err: error, clientId: sender.clientId }, 'could not accept publish')
        return done(error instanceof Error ? error : new Error(String(error)))
      }
      log.debug({ clientId: sender.clientId, code: error.code, topic }, 'publish rejected')
      reportError(sender, errorEvent(error, topic, Date.now())).then(() => {
        redirectToSink(packet)
        done(null)
      }, (reportFailure: Error) => done(reportFailure))
    })
  }
}
