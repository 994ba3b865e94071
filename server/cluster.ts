// WORKERS > 1 in Redis mode: this process forks that many full server
// processes that share the MQTT and HTTP ports (node:cluster hands each new
// connection to a worker in turn). Each worker is an ordinary node of the
// cluster design (its own broker id, presence heartbeat, log feed), exactly
// as if started on another machine against the same Redis; so a message
// between clients on different workers takes the same path as one between
// machines. The primary only supervises: it reports ready once every worker
// is, restarts a worker that dies, and passes SIGTERM/SIGINT on.
import cluster, { type Worker } from 'node:cluster'
import type { Logger } from 'pino'
import { serveClusterMetrics } from '../observability/cluster-metrics.ts'

export interface WorkerReady { type: 'ready', mqttPort?: number, httpPort?: number, mqttsPort?: number, httpsPort?: number, cluster?: boolean, nodeId: string }

const RESTART_DELAY_MS = 1_000

export function runPrimary (workers: number, log: Logger, reloadsTls = false, addresses: (ports: Omit<WorkerReady, 'type' | 'nodeId'>) => string[] = () => []): void {
  serveClusterMetrics()
  let stopping = false
  let ready = 0
  const fork = (): Worker => {
    const worker = cluster.fork()
    worker.on('message', (message: WorkerReady) => {
      if (message?.type !== 'ready' || ++ready !== workers) return
      for (const line of addresses(message)) log.info(line)
      log.info({ mqttPort: message.mqttPort, httpPort: message.httpPort, mqttsPort: message.mqttsPort, httpsPort: message.httpsPort, mode: 'redis', cluster: message.cluster === true, workers }, 'server ready')
    })
    return worker
  }
  for (let i = 0; i < workers; i++) fork()

  cluster.on('exit', (worker, code, signal) => {
    if (stopping) {
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0)
      return
    }
    if (ready < workers) {
      log.fatal({ code, signal }, 'a worker failed to start')
      process.exit(1)
    }
    log.error({ pid: worker.process.pid, code, signal }, 'worker died; starting another')
    ready--
    setTimeout(fork, RESTART_DELAY_MS).unref()
  })

  // Certificate reloads: every worker reads its certificate again.
  if (reloadsTls) process.on('SIGHUP', () => { for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGHUP') })

  // `on`, and repeats ignored: Ctrl-C reaches this process twice under npm (see main.ts).
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      if (stopping) return
      stopping = true
      log.info({ signal }, 'shutting down workers')
      for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGTERM')
      setTimeout(() => process.exit(1), 15_000).unref()
    })
  }
}
