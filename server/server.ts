// The composition root: one process with the broker (MQTT over TCP and
// WebSocket) and the REST bridge. Tests and main.ts both start it here.
import { createServer as createTcpServer, type Server as TcpServer, type AddressInfo } from 'node:net'
import { pino, type Logger } from 'pino'
import type { Config } from '../config/config.ts'
import { openBrokerStore } from '../storage/broker-store.ts'
import { createMessagingBroker } from '../broker/broker.ts'
import { createBridge, tokenVerifier } from '../bridge/bridge.ts'
import { healthRoutes } from '../bridge/routes/health.ts'
import { mqttWebSocketRoute } from '../bridge/routes/mqtt-websocket.ts'
import { apiRoutes } from '../bridge/routes/api.ts'
import { demoLoginRoutes } from '../bridge/routes/demo-login.ts'
import { webPageRoutes } from '../bridge/routes/web-page.ts'
import { openHistory } from '../history/open-history.ts'
import { openPresence } from '../presence/open-presence.ts'
import { openDeviceRegistry, openPush } from '../push/open-push.ts'
import { openKeyDirectory } from '../keys/key-directory.ts'
import { openMlsKeyPackages } from '../keys/mls-key-packages.ts'
import { KeyPackageChecker } from '../keys/mls-key-package-check.ts'
import { MlsKeyPackageService } from '../keys/mls-key-package-service.ts'
import { randomUUID } from 'node:crypto'
import { isMuted } from '../messaging/group-service.ts'
import cluster from 'node:cluster'
import { Metrics, timed } from '../observability/metrics.ts'
import { clusterMetrics, joinClusterMetrics } from '../observability/cluster-metrics.ts'
import { observabilityRoutes } from '../bridge/routes/observability.ts'
import { startTlsListeners } from './tls.ts'
import { join } from 'node:path'
import { LevelRevocations, RedisRevocations } from '../auth/revocations.ts'
import { adminRoutes } from '../bridge/routes/sessions.ts'
import { adminUserRoutes } from '../bridge/routes/admin-users.ts'
import { AccountDeletion, SETTLE_MS } from '../messaging/account-deletion.ts'
import { limitRest } from '../bridge/rate-limit.ts'
import { measureRequests } from '../bridge/request-metrics.ts'
import { PublishBudget, TokenBuckets } from '../broker/rate-limits.ts'
import { createServices } from './services.ts'
import { LateTransport } from './transport.ts'
import { openArchive } from '../archive/open-archive.ts'
import { ArchiveNotOpenError, tieredGroups, tieredLog } from '../archive/tiered-history.ts'
import type { ArchiveStore } from '../archive/archive-store.ts'
import { openAttachments } from '../attachments/open-attachments.ts'
import { attachmentRoutes } from '../bridge/routes/attachments.ts'

export interface RunningServer {
  /** Undefined with TLS_ONLY. */
  mqttPort: number | undefined
  httpPort: number | undefined
  /** With TLS_CERT and TLS_KEY. */
  mqttsPort: number | undefined
  httpsPort: number | undefined
  mode: 'redis' | 'embedded'
  /** Redis mode on a Redis Cluster. */
  cluster: boolean
  nodeId: string
  log: Logger
  stop (): Promise<void>
}

function listenTcp (server: TcpServer, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => resolve((server.address() as AddressInfo).port))
  })
}

export async function startServer (config: Config, log: Logger = pino({ level: config.logLevel })): Promise<RunningServer> {
  let ready = false
  const nodeId = config.nodeId ?? randomUUID()
  const metrics = new Metrics()
  if (cluster.isWorker) joinClusterMetrics()
  const store = await openBrokerStore(config, nodeId, log)
  store.redis?.on('error', () => metrics.redisErrors.inc())
  // Before history: the history store never evicts the session of a device presence says is connected.
  const presence = await openPresence(store, nodeId)
  const { log: hotLog, cursors, blocks, groups: hotGroups, archiveSource } = await openHistory(config, store, presence)
  // The long-term tier and search (issue #21): the archiver follows the logs off the PUBACK path.
  const archive = await openArchive(config, archiveSource, {
    holder: nodeId,
    metrics: {
      archived: (rows) => metrics.archived.inc(rows),
      batch: () => metrics.archiveBatches.inc(),
      error: () => metrics.archiveErrors.inc(),
      lag: (seconds) => metrics.archiveLag.set(seconds),
      trimmed: (rows) => metrics.archiveTrimmed.inc(rows),
      up: (up) => metrics.archiveUp.set(up ? 1 : 0)
    },
    // Not opened yet or failing: sending and delivery go on, the hot log keeps what is not archived.
    onOutage: (error) => log.warn({ err: error }, 'archive unreachable or not answering; retrying with backoff (search unavailable, the hot log keeps everything not archived)'),
    onRecovered: (downMs) => log.info({ downMs }, 'archive reachable again; catching up')
  })
  // Two tiers, one history: reads below the hot log's floor come from the archive.
  const history = archive === undefined ? hotLog : tieredLog(hotLog, () => archive.store, config.historyRetentionMs)
  const groups = archive === undefined ? hotGroups : tieredGroups(hotGroups, () => archive.store, config.historyRetentionMs)
  archive?.search.checkAgainst(hotLog, groups)
  const openedArchive = (): ArchiveStore => {
    if (archive?.store === undefined) throw new ArchiveNotOpenError()
    return archive.store
  }
  const revocations = store.redis !== undefined ? new RedisRevocations(store.redis) : await LevelRevocations.open(join(config.dataDir, 'revocations'), { sync: config.durability === 'disk' })
  // Append latency, measured at the one place every durable message passes.
  history.appendMessage = timed(history.appendMessage.bind(history), metrics.logAppend, 'direct')
  groups.appendGroupMessage = timed(groups.appendGroupMessage.bind(groups), metrics.logAppend, 'group')
  const devices = await openDeviceRegistry(config, store)
  const keys = await openKeyDirectory(config, store)
  const mlsKeyPackageStore = await openMlsKeyPackages(config, store)
  const push = openPush(config, store, devices, {
    isConnected: (user, clientId) => presence.isConnected(user, clientId),
    unreadTotal: (user) => history.unreadTotal(user),
    isMuted: (user, group) => isMuted(groups, user, group),
    onOutcome: (provider, outcome) => metrics.pushes.inc({ provider, outcome })
  }, log)
  // Attachments (issue #24): bytes on disk or S3, records where the mode keeps its data.
  const attachments = await openAttachments(config, store, async (user, group) => (await groups.getGroup(group))?.members.has(user) === true,
    (error) => log.error({ err: error }, 'attachment collection failed'))
  const app = await createBridge(config, log)
  measureRequests(app, metrics.httpRequests)
  await limitRest(app, config.limits.restPerMinute, store.redis)
  // One budget per user for both doors: MQTT publishes and REST sends.
  const publishBudget = new PublishBudget(config.limits.publish, config.limits.publishExempt)
  const takePublish = (user: string): number => publishBudget.take(user)
  // Checking an upload's signatures costs CPU: uploads get a budget of their own.
  const keyPackageUploads = new TokenBuckets(config.limits.keyPackageUploads)
  // The services first (both doors use the same ones), then the broker that calls them and that they send through.
  const transport = new LateTransport()
  const services = createServices({
    config,
    history,
    blocks,
    groups,
    presence,
    feed: store.feed,
    signal: store.signal,
    transport,
    attachments,
    onStored: push === undefined ? undefined : (message) => push.notify(message),
    log
  })
  const messaging = await createMessagingBroker({
    store,
    history,
    cursors,
    feed: store.feed,
    services,
    backlogRetentionMs: config.backlogRetentionSeconds * 1000,
    verifyToken: tokenVerifier(app),
    maxPayloadBytes: config.maxPayloadBytes,
    nodeId,
    presenceRegistry: presence,
    keepalive: config.keepalive,
    metrics,
    revocations,
    limits: config.limits,
    takePublish,
    log
  })
  transport.bind(messaging.transport)
  services.start()
  archive?.start()
  attachments?.start()

  await app.register(healthRoutes, { isReady: () => ready, mode: store.mode, cluster: store.cluster })
  await app.register(observabilityRoutes, {
    metrics,
    collect: () => cluster.isWorker ? clusterMetrics() : metrics.text(),
    token: config.metricsToken,
    isReady: () => ready,
    checkStorage: async () => {
      if (store.redis === undefined) return
      const answer = await Promise.race([store.redis.ping(), new Promise<never>((_, reject) => setTimeout(() => reject(new Error('Redis did not answer within 1 s')), 1_000).unref())])
      if (answer !== 'PONG') throw new Error(`Redis answered ${answer}`)
    }
  })
  await app.register(mqttWebSocketRoute, { broker: messaging.broker })
  await app.register(adminRoutes, { revocations, signal: store.signal, adminToken: config.adminToken })
  // Account deletion: each tier reached itself, with this process's archiver stopped meanwhile (messaging/account-deletion.ts).
  await app.register(adminUserRoutes, {
    adminToken: config.adminToken,
    accounts: new AccountDeletion({
      hot: hotLog,
      // Reached when a deletion runs: the archive may open after this (PostgreSQL down at start); until then a deletion is a storage outage (503).
      archive: archive === undefined ? undefined : { deleteUser: async (user) => await openedArchive().deleteUser(user), archivedSeq: async (user) => await openedArchive().archivedSeq(user) },
      archiveMarks: archiveSource,
      archiver: archive === undefined ? undefined : { pause: async () => { await archive.archiver?.pause() }, resume: () => { archive.archiver?.resume() } },
      settleMs: store.mode === 'redis' ? SETTLE_MS : 0,
      groups, groupService: services.groups, revocations, kick: (user) => store.signal.send({ type: 'kick', user }), devices, keys, mlsKeyPackages: mlsKeyPackageStore, attachments,
      onSettled: (user, outcome) => { if (outcome === 'deleted_again') log.warn({ user }, 'a stale archive batch landed after an account deletion: deleted again') },
      onError: (error) => log.error({ err: error }, 'account deletion check failed')
    })
  })
  await app.register(apiRoutes, {
    history,
    messages: services.messages,
    groups: services.groups,
    receipts: services.receipts,
    presence,
    devices,
    keys,
    mlsKeyPackages: new MlsKeyPackageService({ store: mlsKeyPackageStore, checker: await KeyPackageChecker.create(), isBlocked: (blocker, user) => services.blocks.isBlocked(blocker, user) }),
    takeKeyPackageUpload: (user) => keyPackageUploads.take(user),
    metrics,
    revocations,
    signal: store.signal,
    blocks: services.blocks,
    visibility: services.visibility,
    maxPayloadBytes: config.maxPayloadBytes,
    maxPushDevices: config.limits.pushDevicesPerUser,
    takePublish,
    search: archive?.search
  })
  await app.register(attachmentRoutes, { attachments, revocations, corsOrigins: config.corsOrigins })
  if (config.demoLogin) await app.register(demoLoginRoutes)
  await app.register(webPageRoutes, { demoLogin: config.demoLogin, maxPayloadBytes: config.maxPayloadBytes })

  // Plain listeners, unless TLS_ONLY; the TLS ones serve the same broker and routes.
  // noDelay: an error event and its PUBACK (or a delivery and the next) are separate small writes;
  // with Nagle the second waited for the client's delayed ACK, about 40 ms on Linux.
  const tcp = createTcpServer({ noDelay: true }, (socket) => messaging.broker.handle(socket))
  let mqttPort: number | undefined
  let httpPort: number | undefined
  if (config.tlsOnly) {
    await app.ready()
  } else {
    mqttPort = await listenTcp(tcp, config.mqttPort, config.host)
    await app.listen({ port: config.httpPort, host: config.host })
    httpPort = (app.server.address() as AddressInfo).port
  }
  const tls = config.tls === undefined ? undefined : await startTlsListeners(config.tls, config.host, (socket) => messaging.broker.handle(socket), app, log)
  ready = true

  let stopping: Promise<void> | undefined
  async function stop (): Promise<void> {
    ready = false
    const closeTcp = mqttPort === undefined ? Promise.resolve() : new Promise<void>((resolve) => tcp.close(() => resolve()))
    const closeTls = tls?.close()
    await services.leave()
    await messaging.close()
    await services.close()
    await closeTcp
    await closeTls
    await app.close()
    await push?.close()
    await devices.close()
    await keys.close()
    await mlsKeyPackageStore.close()
    await attachments?.close()
    await revocations.close()
    await archive?.close()
    await history.close()
    await store.close()
    log.info('server stopped')
  }

  return {
    mqttPort,
    httpPort,
    mqttsPort: tls?.mqttsPort,
    httpsPort: tls?.httpsPort,
    mode: store.mode,
    cluster: store.cluster,
    nodeId,
    log,
    stop: () => (stopping ??= stop())
  }
}
