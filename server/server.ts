// The composition root: one process with the broker (MQTT over TCP and
// WebSocket) and the REST bridge. Tests and main.ts both start it here.
import { createServer as createTcpServer, type Server as TcpServer, type AddressInfo } from 'node:net'
import { pino, type Logger } from 'pino'
import type { Config } from './config.ts'
import { openBrokerStore } from '../storage/broker-store.ts'
import { createMessagingBroker } from '../broker/broker.ts'
import { createBridge, tokenVerifier } from '../bridge/bridge.ts'
import { healthRoutes } from '../bridge/routes/health.ts'
import { mqttWebSocketRoute } from '../bridge/routes/mqtt-websocket.ts'
import { apiRoutes } from '../bridge/routes/api.ts'
import { openHistory } from '../history/open-history.ts'
import { openPresence } from '../presence/open-presence.ts'
import { openDeviceRegistry, openPush } from '../push/open-push.ts'
import { openKeyDirectory } from '../keys/key-directory.ts'
import { randomUUID } from 'node:crypto'

export interface RunningServer {
  mqttPort: number
  httpPort: number
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
  const store = await openBrokerStore(config, log)
  const history = await openHistory(config, store)
  const nodeId = config.nodeId ?? randomUUID()
  const presence = await openPresence(store, nodeId)
  const devices = await openDeviceRegistry(config, store)
  const keys = await openKeyDirectory(config, store)
  const push = openPush(config, store, devices, {
    isConnected: (user, clientId) => presence.isConnected(user, clientId),
    unreadTotal: (user) => history.unreadTotal(user)
  }, log)
  const app = await createBridge(config, log)
  const messaging = await createMessagingBroker({
    store,
    history,
    recallWindowMs: config.recallWindowMs,
    verifyToken: tokenVerifier(app),
    maxPayloadBytes: config.maxPayloadBytes,
    nodeId,
    presence,
    keepalive: config.keepalive,
    onStored: push === undefined ? undefined : (message) => push.notify(message),
    log
  })

  await app.register(healthRoutes, { isReady: () => ready, mode: store.mode })
  await app.register(mqttWebSocketRoute, { broker: messaging.broker })
  await app.register(apiRoutes, {
    history,
    messages: messaging.messages,
    receipts: messaging.receipts,
    presence,
    devices,
    keys,
    maxPayloadBytes: config.maxPayloadBytes
  })

  const tcp = createTcpServer((socket) => messaging.broker.handle(socket))
  const mqttPort = await listenTcp(tcp, config.mqttPort, config.host)
  await app.listen({ port: config.httpPort, host: config.host })
  const httpPort = (app.server.address() as AddressInfo).port
  ready = true
  log.info({ mqttPort, httpPort, mode: store.mode, nodeId: messaging.broker.id }, 'server ready')

  let stopping: Promise<void> | undefined
  async function stop (): Promise<void> {
    ready = false
    const closeTcp = new Promise<void>((resolve) => tcp.close(() => resolve()))
    await messaging.close()
    await closeTcp
    await app.close()
    await push?.close()
    await devices.close()
    await keys.close()
    await history.close()
    await store.close()
    log.info('server stopped')
  }

  return {
    mqttPort,
    httpPort,
    log,
    stop: () => (stopping ??= stop())
  }
}
