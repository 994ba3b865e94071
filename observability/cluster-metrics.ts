// With WORKERS, each worker counts only its own connections and messages,
// and a scrape reaches one worker. The worker that is scraped asks the
// supervisor, which collects every worker's metrics through prom-client's
// AggregatorRegistry (over the cluster IPC channel) and answers.
import cluster from 'node:cluster'
import { AggregatorRegistry } from 'prom-client'

interface Ask { type: 'inboxd:metrics', id: number }
interface Answer { type: 'inboxd:metrics-answer', id: number, text?: string, error?: string }

/** In the supervisor: answer workers' requests for the cluster's metrics. */
export function serveClusterMetrics (): void {
  const aggregator = new AggregatorRegistry()
  cluster.on('message', (worker, message: Ask) => {
    if (message?.type !== 'inboxd:metrics') return
    aggregator.clusterMetrics().then(
      (text) => worker.send({ type: 'inboxd:metrics-answer', id: message.id, text } satisfies Answer),
      (error: Error) => worker.send({ type: 'inboxd:metrics-answer', id: message.id, error: error.message } satisfies Answer))
  })
}

/** In a worker: answer the supervisor's collection requests (prom-client adds its listener when an AggregatorRegistry is made). */
export function joinClusterMetrics (): void {
  void new AggregatorRegistry()
}

let nextId = 0
const waiting = new Map<number, (answer: Answer) => void>()

/** In a worker: the whole cluster's metrics, from the supervisor. */
export function clusterMetrics (timeoutMs = 5_000): Promise<string> {
  if (waiting.size === 0 && nextId === 0) {
    process.on('message', (message: Answer) => {
      if (message?.type === 'inboxd:metrics-answer') waiting.get(message.id)?.(message)
    })
  }
  const id = ++nextId
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { waiting.delete(id); reject(new Error('the supervisor did not answer')) }, timeoutMs)
    waiting.set(id, (answer) => {
      clearTimeout(timer)
      waiting.delete(id)
      if (answer.text !== undefined) resolve(answer.text)
      else reject(new Error(answer.error ?? 'no metrics'))
    })
    process.send!({ type: 'inboxd:metrics', id } satisfies Ask)
  })
}
