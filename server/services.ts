// Builds every service once, from the opened stores, for both doors: the
// broker (broker/broker.ts) and the REST bridge (bridge/routes/api.ts) get
// these same instances. What a service sends to connected devices goes
// through `transport`, which the broker binds once it is up.
import type { Logger } from 'pino'
import type { Config } from '../config/config.ts'
import type { BlockStore, LogStore } from '../history/history-store.ts'
import type { GroupStore } from '../history/group-store.ts'
import type { LogFeed } from '../storage/log-feed.ts'
import type { ClusterSignal } from '../storage/cluster-signal.ts'
import { LogDelivery, type StoredMessage } from '../messaging/log-delivery.ts'
import { MessageService } from '../messaging/message-service.ts'
import { GroupService } from '../messaging/group-service.ts'
import { ReceiptService } from '../messaging/receipt-service.ts'
import { BlockService } from '../messaging/block-service.ts'
import type { PresenceRegistry } from '../presence/presence-registry.ts'
import { PresenceTracker } from '../presence/presence-tracker.ts'
import { PresenceVisibility } from '../presence/presence-visibility.ts'
import type { Transport } from './transport.ts'
import type { AttachmentService } from '../attachments/attachment-service.ts'

export interface ServicesOptions {
  config: Pick<Config, 'limits' | 'recallWindowMs' | 'editWindowMs' | 'maxGroupMembers' | 'presenceVisibility'>
  history: LogStore
  blocks: BlockStore
  groups: GroupStore
  presence: PresenceRegistry
  /** Tells every process of new log events (durable delivery). */
  feed: LogFeed
  /** Control messages to every process (who may see whose presence changed). */
  signal: ClusterSignal
  transport: Transport
  /** Undefined without attachment storage (Redis mode without S3). */
  attachments?: AttachmentService
  /** Told of every newly stored message (push). */
  onStored?: (message: StoredMessage) => void
  log: Logger
}

export interface Services {
  messages: MessageService
  groups: GroupService
  receipts: ReceiptService
  blocks: BlockService
  /** Connections become presence. */
  presence: PresenceTracker
  /** Who may see whose presence (MQTT forwarding and REST). */
  visibility: PresenceVisibility
  /** Once the transport is bound: starts the presence sweep. */
  start (): void
  /** Before the broker closes: this process's devices go offline while the broker can still say so. */
  leave (): Promise<void>
  /** After the broker closed (no more PUBACKs): writes pending receipts and group read marks. */
  close (): Promise<void>
}

export function createServices (options: ServicesOptions): Services {
  const { config, history, feed, transport, log } = options
  const presence = new PresenceTracker({ registry: options.presence, log, publish: (user, state) => transport.presence(user, state, true) })
  const visibility = new PresenceVisibility({
    mode: config.presenceVisibility,
    facts: {
      isBlocked: (blocker, user) => options.blocks.isBlocked(blocker, user),
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
        .then(([state]) => state === undefined ? undefined : transport.presence(subject, state, false))
        .catch((error: unknown) => log.warn({ err: error }, 'could not send presence again'))
    }
  })
  // Blocks and first conversations change who sees whom, on every process.
  const reconsider = (a: string, b: string): Promise<void> => options.signal.send({ type: 'visibility', a, b })
  options.signal.listen((message) => {
    if (message.type !== 'visibility' || typeof message.a !== 'string' || typeof message.b !== 'string') return
    visibility.reconsider(message.a, message.b).catch((error: unknown) => log.warn({ err: error }, 'could not decide presence visibility'))
  })

  const ephemeral = (user: string, json: string): Promise<void> => transport.ephemeral(user, json)
  const attachments = options.attachments === undefined ? undefined : options.attachments.reference.bind(options.attachments)
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
    maxMembers: config.maxGroupMembers,
    maxGroupsPerUser: config.limits.groupsPerUser,
    recallWindowMs: config.recallWindowMs,
    attachments,
    editWindowMs: config.editWindowMs,
    onError: (error) => log.error({ err: error }, 'group delivery marks failed')
  })
  const messages = new MessageService({
    history,
    blocks: options.blocks,
    log: logSink,
    ephemeral,
    recallWindowMs: config.recallWindowMs,
    attachments,
    editWindowMs: config.editWindowMs,
    onError: (error) => log.error({ err: error }, 'relay sweep failed')
  })
  const blocks = new BlockService({ blocks: options.blocks, maxBlocks: config.limits.blocksPerUser, onChange: reconsider })
  const receipts = new ReceiptService({
    history,
    log: logSink,
    onError: (error) => log.error({ err: error }, 'could not record a delivery receipt')
  })

  return {
    messages,
    groups,
    receipts,
    blocks,
    presence,
    visibility,
    start: () => presence.start(),
    async leave () {
      visibility.close()
      await presence.leave().catch((error: unknown) => log.warn({ err: error }, 'could not publish presence at shutdown'))
    },
    async close () {
      await receipts.close()
      await groups.close()
      await messages.close()
    }
  }
}
