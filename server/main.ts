// `npm start`: read config, start, stop cleanly on SIGTERM/SIGINT. In Redis
// mode with WORKERS > 1 this process becomes the supervisor of that many
// server processes (server/cluster.ts).
import cluster from 'node:cluster'
import { pino } from 'pino'
import { ConfigError, loadConfig, usesRedis, type Config } from '../config/config.ts'
import { startServer } from './server.ts'
import { runPrimary, type WorkerReady } from './cluster.ts'
import { describeDurability } from '../storage/durability.ts'
import { describeAddresses } from './addresses.ts'

let config: Config
try {
  config = loadConfig()
} catch (error) {
  if (error instanceof ConfigError) {
    process.stderr.write(error.message + '\n')
    process.exit(1)
  }
  throw error
}

const log = pino({ level: config.logLevel })
const clustered = usesRedis(config) && config.workers > 1

// What a PUBACK survives, in one line per start (the supervisor says it for its workers).
if (cluster.isPrimary) {
  try {
    const durability = await describeDurability(config)
    log.info(durability.fields, `durability ${config.durability}: ${durability.text}`)
  } catch (error) {
    process.stderr.write(`${error instanceof ConfigError ? '' : 'startup failed: '}${(error as Error).message}\n`)
    process.exit(1)
  }
}

if (clustered && cluster.isPrimary) {
  runPrimary(config.workers, log, config.tls !== undefined, (ports) => describeAddresses(config, ports))
} else {
  if (!usesRedis(config)) {
    log.info('embedded mode runs one server process (LevelDB allows one writer); WORKERS applies to Redis mode')
  }
  if (cluster.isWorker && config.nodeId !== undefined) config = { ...config, nodeId: `${config.nodeId}-${cluster.worker!.id}` }

  const server = await startServer(config, log).catch((error: Error) => {
    process.stderr.write(`startup failed: ${error.message}\n`)
    process.exit(1)
  })
  const ready = { mqttPort: server.mqttPort, httpPort: server.httpPort, mqttsPort: server.mqttsPort, httpsPort: server.httpsPort, mode: server.mode, cluster: server.cluster, nodeId: server.nodeId }
  if (cluster.isWorker) {
    log.info(ready, 'worker ready')
    process.send!({ type: 'ready', ...ready } satisfies WorkerReady)
    // A worker never outlives its supervisor (even one killed with -9).
    process.once('disconnect', () => process.exit(1))
  } else {
    for (const line of describeAddresses(config, ready)) log.info(line)
    log.info({ ...ready, workers: 1 }, 'server ready')
  }

  // `on`, not `once`, and later signals ignored: Ctrl-C in a terminal reaches this process twice
  // (from the terminal and forwarded by npm), and a second one must not kill it mid-drain.
  let stopping = false
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      if (stopping) return
      stopping = true
      server.log.info({ signal }, 'shutting down')
      const force = setTimeout(() => process.exit(1), 10_000)
      force.unref()
      server.stop().then(() => process.exit(0), (error: Error) => {
        server.log.error({ err: error }, 'unclean shutdown')
        process.exit(1)
      })
    })
  }
}
