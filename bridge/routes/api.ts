// The authenticated REST API (/v1): one encapsulated scope in which every
// route requires a valid Bearer token.
import type { FastifyPluginAsync } from 'fastify'
import type { LogStore } from '../../history/history-store.ts'
import type { MessageService } from '../../messaging/message-service.ts'
import type { GroupService } from '../../messaging/group-service.ts'
import { groupRoutes } from './groups.ts'
import type { Metrics } from '../../observability/metrics.ts'
import type { Revocations } from '../../auth/revocations.ts'
import type { ClusterSignal } from '../../storage/cluster-signal.ts'
import { sessionRoutes } from './sessions.ts'
import type { ReceiptService } from '../../messaging/receipt-service.ts'
import { blockRoutes } from './blocks.ts'
import type { BlockService } from '../../messaging/block-service.ts'
import type { PresenceVisibility } from '../../presence/presence-visibility.ts'
import { requireUser } from '../require-user.ts'
import { documentErrors } from '../http-errors.ts'
import { messageRoutes } from './messages.ts'
import { conversationRoutes } from './conversations.ts'
import { syncRoutes } from './sync.ts'
import { presenceRoutes } from './presence.ts'
import { deviceRoutes } from './devices.ts'
import { keyRoutes } from './keys.ts'
import type { KeyDirectory } from '../../keys/key-directory.ts'
import { mlsKeyPackageRoutes } from './mls-key-packages.ts'
import type { MlsKeyPackageService } from '../../keys/mls-key-package-service.ts'
import type { PresenceRegistry } from '../../presence/presence-registry.ts'
import type { DeviceRegistry } from '../../push/device-registry.ts'
import type { SearchService } from '../../archive/search-service.ts'
import { searchRoutes } from './search.ts'

export interface ApiOptions {
  history: LogStore
  messages: MessageService
  groups: GroupService
  receipts: ReceiptService
  presence: PresenceRegistry
  devices: DeviceRegistry
  keys: KeyDirectory
  /** The MLS KeyPackage directory. */
  mlsKeyPackages: MlsKeyPackageService
  /** Its per-user upload budget: 0 when an upload is allowed, else ms until one is. */
  takeKeyPackageUpload?: (user: string) => number
  maxPayloadBytes: number
  /** Push registrations one user may hold (0: no limit). */
  maxPushDevices: number
  metrics?: Metrics
  revocations: Revocations
  signal: ClusterSignal
  blocks: BlockService
  visibility: PresenceVisibility
  /** The per-user publish budget MQTT publishes spend too: 0 when a send is allowed, else ms until one is. */
  takePublish?: (user: string) => number
  /** Undefined without a search index (Redis mode without DATABASE_URL): /v1/search answers 501 search_not_configured. */
  search?: SearchService
}

export const apiRoutes: FastifyPluginAsync<ApiOptions> = async (app, options) => {
  requireUser(app, options.revocations)
  documentErrors(app)
  await app.register(sessionRoutes, { revocations: options.revocations, signal: options.signal })
  await app.register(messageRoutes, { messages: options.messages, groups: options.groups, maxPayloadBytes: options.maxPayloadBytes, metrics: options.metrics, takePublish: options.takePublish })
  await app.register(groupRoutes, { groups: options.groups, maxPayloadBytes: options.maxPayloadBytes, takePublish: options.takePublish })
  await app.register(conversationRoutes, { history: options.history, receipts: options.receipts })
  await app.register(syncRoutes, { history: options.history })
  await app.register(presenceRoutes, { presence: options.presence, visibility: options.visibility })
  await app.register(blockRoutes, { blocks: options.blocks })
  await app.register(deviceRoutes, { devices: options.devices, maxDevices: options.maxPushDevices })
  await app.register(keyRoutes, { keys: options.keys })
  await app.register(mlsKeyPackageRoutes, { keyPackages: options.mlsKeyPackages, takeUpload: options.takeKeyPackageUpload })
  await app.register(searchRoutes, { search: options.search })
}
