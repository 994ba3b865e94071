// The server's Prometheus metrics (prom-client's default registry, so that
// with WORKERS the supervisor can aggregate every worker's figures). The
// doors and the composition root record into these; domain folders do not
// import this module, they report through callbacks.
import { collectDefaultMetrics, Counter, Gauge, Histogram, register } from 'prom-client'

let started = false

export class Metrics {
  readonly connections = new Gauge({ name: 'inboxd_connections', help: 'Connected MQTT clients, by transport', labelNames: ['transport'] as const })
  readonly accepted = new Counter({ name: 'inboxd_messages_accepted_total', help: 'Messages accepted (stored, or forwarded at QoS 0), by kind', labelNames: ['kind'] as const })
  readonly rejected = new Counter({ name: 'inboxd_messages_rejected_total', help: 'Publishes and REST sends refused, by error code', labelNames: ['code'] as const })
  readonly delivered = new Counter({ name: 'inboxd_deliveries_total', help: 'Log events written to devices, live or from the backlog', labelNames: ['source'] as const })
  readonly publishToAck = new Histogram({
    name: 'inboxd_publish_to_puback_seconds',
    help: 'From an MQTT PUBLISH reaching the server to its PUBACK being due (validation, append, delivery hand-off)',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]
  })

  readonly logAppend = new Histogram({
    name: 'inboxd_log_append_seconds',
    help: 'Durable appends to the log (1:1 and group messages)',
    labelNames: ['kind'] as const,
    buckets: [0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5]
  })

  readonly pushes = new Counter({ name: 'inboxd_pushes_total', help: 'Push notifications, by provider and outcome', labelNames: ['provider', 'outcome'] as const })
  readonly ephemeralDropped = new Counter({ name: 'inboxd_ephemeral_dropped_total', help: 'QoS 0 packets (typing, presence, QoS 0 messages, error events) not sent to a device, by reason', labelNames: ['reason'] as const })
  /** Set by the broker: the sum of its connections' unsent bytes, read at each scrape. */
  unsentBytesSource: (() => number) | undefined
  readonly unsentBytes = new Gauge({
    name: 'inboxd_unsent_bytes',
    help: 'Bytes written to device connections that the kernel has not taken yet (devices that read slowly), summed',
    collect: () => { if (this.unsentBytesSource !== undefined) this.unsentBytes.set(this.unsentBytesSource()) }
  })

  readonly connectsRefused = new Counter({ name: 'inboxd_mqtt_connects_refused_total', help: 'MQTT CONNECTs refused, by reason (docs/protocol.md, CONNACK refusals)', labelNames: ['reason'] as const })
  readonly takeovers = new Counter({ name: 'inboxd_mqtt_takeovers_total', help: 'MQTT connections closed because a new connection with the same clientId took over (on this process or another)' })
  /** By route pattern (`unmatched` for none), method and status class: bounded label sets. Its _count is the request count. */
  readonly httpRequests = new Histogram({
    name: 'inboxd_http_request_duration_seconds',
    help: 'HTTP requests (REST, health, metrics), by route pattern, method and status class, from the request to the response sent',
    labelNames: ['route', 'method', 'status'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]
  })

  readonly sessionsEvicted = new Counter({ name: 'inboxd_sessions_evicted_total', help: 'Persistent sessions evicted by MAX_SESSIONS_PER_USER (the user\'s session furthest behind)' })
  readonly redisErrors = new Counter({ name: 'inboxd_redis_errors_total', help: 'Errors reported by Redis connections' })
  // With WORKERS, the cluster's figure is the worst worker's (summed, the workers would count the same wait twice).
  readonly archiveLag = new Gauge({ name: 'inboxd_archive_lag_seconds', help: 'How long the oldest event not yet archived has waited (0: the archive is caught up)', aggregator: 'max' })
  readonly archived = new Counter({ name: 'inboxd_archive_events_total', help: 'Log events written to the archive (user and group logs)' })
  readonly archiveBatches = new Counter({ name: 'inboxd_archive_batches_total', help: 'Batches written to the archive' })
  readonly archiveErrors = new Counter({ name: 'inboxd_archive_errors_total', help: 'Archive rounds, trims and attempts to open it that failed (retried with backoff)' })
  readonly archiveUp = new Gauge({ name: 'inboxd_archive_up', help: '1 when the archive was opened or the last archiver round succeeded, 0 after a failure (also before it is open, and with no archive)', aggregator: 'min' })
  readonly archiveTrimmed = new Counter({ name: 'inboxd_archive_trimmed_total', help: 'Archived events removed by retention (HISTORY_RETENTION_SECONDS)' })

  constructor () {
    // Event-loop lag, heap, GC and the rest of Node's process metrics.
    if (!started) collectDefaultMetrics()
    started = true
  }

  /** This process's metrics in the Prometheus text format. */
  async text (): Promise<string> {
    return register.metrics()
  }

  get contentType (): string {
    return register.contentType
  }
}

/** Times `fn(...)` into `histogram` (with `labels`), whether it resolves or throws. */
export function timed<A extends unknown[], R> (fn: (...args: A) => Promise<R>, histogram: Histogram<'kind'>, kind: string): (...args: A) => Promise<R> {
  return async (...args) => {
    const stop = histogram.startTimer({ kind })
    try { return await fn(...args) } finally { stop() }
  }
}
