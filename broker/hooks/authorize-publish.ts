// PUBLISH: the message path. A client publish to `user/<peer>/inbox` is
// validated, stamped and re-published by the server; only when that is
// stored does Aedes send the PUBACK (Aedes acks QoS 1 *before* its own
// publish step, so durability has to be reached here, in the hook).
// The client's raw packet is then redirected to the sink topic.
// Anything unacceptable is acknowledged, not delivered, and explained with
// an error event on the sender's errors topic (see protocol/errors.ts).
import type { Client } from 'aedes'
import type { PublishPacket } from 'aedes'
import type { Logger } from 'pino'
import { isValidId, parseClientId, type DeviceIdentity } from '../../protocol/identity.ts'
import { errorEvent, PublishRejected } from '../../protocol/errors.ts'
import { parseInboxPayload, sniffId } from '../../protocol/message.ts'
import { groupOfTopic, inboxRecipient, presenceTopic, SINK_TOPIC } from '../../protocol/topics.ts'
import type { MessageService } from '../../messaging/message-service.ts'
import type { GroupService } from '../../messaging/group-service.ts'
import { isStorageOutage } from '../../storage/storage-errors.ts'

export interface AuthorizePublishOptions {
  messages: MessageService
  groups: GroupService
  reportError: (device: DeviceIdentity, event: ReturnType<typeof errorEvent>) => Promise<void>
  maxPayloadBytes: number
  log: Logger
  /** Told of each outcome (metrics). */
  observe?: PublishObserver
  /** Per-user publish rate: 0 when allowed, else ms until the next publish is. */
  takePublish?: (user: string) => number
}

export interface PublishObserver {
  accepted (kind: 'direct' | 'group' | 'typing', seconds: number): void
  rejected (code: string): void
}

const EMPTY = Buffer.alloc(0)
/** How long the refusal of a publish over the rate limit is held back (see below). */
export const RATE_LIMITED_HOLD_MS = 1_000
/** Refusals held at once per connection; beyond that they are answered at once, so holding costs bounded memory. */
export const MAX_HELD_REFUSALS = 100

/** After the last refusal of a window is answered, how long the connection's later publishes are still refused with it (see rateWait). */
export const REFUSAL_WINDOW_MS = 2 * RATE_LIMITED_HOLD_MS
/** The longest a refusal window lasts, from its first refusal: a client that never re-sends is not refused for good. */
export const MAX_REFUSAL_WINDOW_MS = 10 * RATE_LIMITED_HOLD_MS

interface RefusalWindow {
  /** Open until then once none of its refusals is held any more (extended as each is answered). */
  until: number
  /** Its refusals not answered yet (held back, or their error event being sent): while any is, the window stays open. */
  held: number
  /** Never open after this. */
  closesBy: number
  /** When the budget has a token again (as the refusal saw it). */
  readyAt: number
  /** The refused publish: when it comes again, the window ends. */
  topic: string
  id: string | undefined
}

/** A refusal for the rate, with the time it stops applying (retryAfterMs is counted when it is answered). */
class RateLimited extends PublishRejected {
  constructor (id: string | undefined, wait: number, readonly readyAt: number, readonly window: RefusalWindow) {
    super('rate_limited', `more than the allowed publishes per second; retry in ${wait} ms`, id, wait)
  }
}

function redirectToSink (packet: PublishPacket): void {
  packet.topic = SINK_TOPIC
  packet.payload = EMPTY
  packet.retain = false
}

export function createAuthorizePublish ({ messages, groups, reportError, maxPayloadBytes, log, observe, takePublish }: AuthorizePublishOptions) {
  const held = new WeakMap<Client, number>()
  // After a publish over the rate, the same connection's next publishes are
  // refused too, without spending the budget, until that one is published
  // again: they were sent before the client could know, and storing one of
  // them would put it before the refused one. So a client that re-sends its
  // refused publishes in order keeps its order. The window's time bound is
  // counted from its last refusal's answer, not from its first refusal:
  // Aedes reads a connection's next packets only once the ones read with
  // them are answered, so publishes sent before the client knew can arrive
  // a hold (1 s) after each other, several holds after the first refusal
  // on a loaded machine (a fixed 2 s let later ones be stored first). It
  // closes at the latest MAX_REFUSAL_WINDOW_MS after it opened, so a client
  // that never re-sends is not refused for good.
  const windows = new WeakMap<Client, RefusalWindow>()
  function rateWait (client: Client, user: string, packet: PublishPacket, now: number): { wait: number, readyAt: number, window?: RefusalWindow } {
    const window = windows.get(client)
    if (window !== undefined && (window.held > 0 || now < window.until) && now < window.closesBy) {
      const resent = window.id !== undefined && window.topic === packet.topic && window.id === sniffId(packet.payload)
      if (!resent) return { wait: Math.max(1, window.readyAt - now), readyAt: window.readyAt, window }
    }
    windows.delete(client)
    const wait = takePublish?.(user) ?? 0
    if (wait === 0) return { wait, readyAt: now }
    const opened: RefusalWindow = { until: now + REFUSAL_WINDOW_MS, held: 0, closesBy: now + MAX_REFUSAL_WINDOW_MS, readyAt: now + wait, topic: packet.topic, id: sniffId(packet.payload) }
    windows.set(client, opened)
    return { wait, readyAt: now + wait, window: opened }
  }
  async function accept (client: Client, sender: DeviceIdentity, packet: PublishPacket, isWill: boolean): Promise<'direct' | 'group' | 'typing' | undefined> {
    // The only will a client may set (see connect-rules.ts). The server
    // publishes presence from connection events, so the will is dropped.
    // A client's own PUBLISH to presence is refused like any other topic.
    if (isWill && packet.topic === presenceTopic(sender.userId)) return undefined
    const { wait, readyAt, window } = rateWait(client, sender.userId, packet, Date.now())
    if (wait > 0) throw new RateLimited(sniffId(packet.payload), wait, readyAt, window!)
    const group = groupOfTopic(packet.topic)
    if (group !== undefined) {
      // An unknown group and one you are not in look the same: not_a_member.
      if (!isValidId(group)) throw new PublishRejected('not_a_member', 'you are not a member of this group')
      const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload
      const parsed = parseInboxPayload(payload, maxPayloadBytes)
      if (parsed.type === 'typing') {
        await groups.typing(sender.userId, group, parsed.active)
        return 'typing'
      }
      await groups.send(sender.userId, group, parsed, packet.qos > 0)
      return 'group'
    }
    const recipient = inboxRecipient(packet.topic)
    if (recipient === undefined) {
      throw new PublishRejected('forbidden_topic', 'clients may publish only to user/<userId>/inbox or group/<groupId>')
    }
    if (!isValidId(recipient)) {
      throw new PublishRejected('unknown_recipient', 'recipient id is not a valid user id')
    }
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload
    const parsed = parseInboxPayload(payload, maxPayloadBytes)
    if (parsed.type === 'typing') {
      await messages.typing(sender.userId, recipient, parsed.active)
      return 'typing'
    }
    await messages.send(sender.userId, recipient, parsed, packet.qos > 0)
    return 'direct'
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
    // Aedes passes the client's stored will itself when it publishes it.
    const isWill = (client as unknown as { will?: unknown }).will === packet
    const started = performance.now()
    accept(client!, sender, packet, isWill).then((kind) => {
      if (kind !== undefined) observe?.accepted(kind, (performance.now() - started) / 1000)
      redirectToSink(packet)
      done(null)
    }, (failure: unknown) => {
      if (!(failure instanceof PublishRejected) && isStorageOutage(failure)) {
        // Storage unreachable: no PUBACK, the connection closes, and the
        // client resends the packet when it reconnects, so nothing is lost.
        log.warn({ err: failure, clientId: sender.clientId }, 'could not accept publish: storage unavailable')
        return done(failure as Error)
      }
      // Anything else would fail again on every resend (a poison message):
      // it is answered like a refusal, so the client moves on to what it sends next.
      if (!(failure instanceof PublishRejected)) log.error({ err: failure, clientId: sender.clientId, topic }, 'publish failed')
      const error = failure instanceof PublishRejected ? failure : new PublishRejected('internal_error', 'the server could not store this message', sniffId(packet.payload))
      observe?.rejected(error.code)
      log.debug({ clientId: sender.clientId, code: error.code, topic }, 'publish rejected')
      // A refusal for the rate keeps its window open until it is answered, and
      // REFUSAL_WINDOW_MS after (the client may learn of it only then).
      const window = error instanceof RateLimited ? error.window : undefined
      if (window !== undefined) window.held++
      const answer = (outcome: Error | null): void => {
        if (window !== undefined) {
          window.held--
          window.until = Math.max(window.until, Date.now() + REFUSAL_WINDOW_MS)
        }
        done(outcome)
      }
      const refuse = (): void => {
        const now = Date.now()
        // retryAfterMs counts from when the client reads it, after the hold.
        const refusal = error instanceof RateLimited ? new RateLimited(error.id, Math.max(1, error.readyAt - now), error.readyAt, error.window) : error
        reportError(sender, errorEvent(refusal, topic, now)).then(() => {
          redirectToSink(packet)
          answer(null)
        }, (reportFailure: Error) => answer(reportFailure))
      }
      // Over its rate, a client's refusal (its PUBACK and error event) is held
      // back: a client that waits for PUBACKs is slowed to about its in-flight
      // window per hold, and Aedes reads little more from it meanwhile,
      // instead of the server refusing everything it can send.
      const holding = held.get(client!) ?? 0
      if (error.code !== 'rate_limited' || holding >= MAX_HELD_REFUSALS) return refuse()
      held.set(client!, holding + 1)
      setTimeout(() => {
        held.set(client!, (held.get(client!) ?? 1) - 1)
        // Gone meanwhile: no event, or a reconnected device could take it for its resend of the same id.
        if (client!.closed) return answer(null)
        refuse()
      }, RATE_LIMITED_HOLD_MS).unref()
    })
  }
}
