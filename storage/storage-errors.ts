// Which failures mean "storage is unreachable right now, try again", as
// opposed to a failure that would happen again for the same input. The
// doors treat them differently: an outage sends no PUBACK (MQTT: the client
// resends after reconnecting) or a 503; anything else is answered at once
// (an `internal_error` event with its PUBACK, or a 500), because a client
// that resends a message the server fails on every time would be stuck
// behind it forever.

/** Redis replies that say "not now" (loading, failover, memory, a busy script), not "never". */
const TRANSIENT_REPLY = /^(LOADING|READONLY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|BUSY|OOM|NOREPLICAS|MOVED|ASK) /

/**
 * ioredis and socket errors while the connection is down or reconnecting, a
 * Redis Cluster that is failing over or re-reading its slots, a LevelDB
 * not (or no longer) open, and PostgreSQL (the archive) unreachable.
 */
const TRANSIENT_MESSAGE = /Connection is closed|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|Stream isn't writeable|Redis did not answer|Command timed out|Too many Cluster redirections|Cluster isn't ready|None of startup nodes is available|Failed to refresh slots cache|Cluster is ended|Connection terminated|timeout exceeded when trying to connect|the database system is (?:starting up|shutting down)/

const TRANSIENT_CODES = new Set(['LEVEL_DATABASE_NOT_OPEN', 'LEVEL_DATABASE_NOT_CLOSED', 'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE'])

export function isStorageOutage (error: unknown): boolean {
  if (!(error instanceof Error)) return false
  const code = (error as { code?: unknown }).code
  // ReplicaTimeoutError: REDIS_WAIT_REPLICAS replicas did not acknowledge in time (storage/replication.ts).
  // ArchiveNotOpenError: a read that needs the archive before PostgreSQL could be opened (archive/tiered-history.ts).
  return error.name === 'MaxRetriesPerRequestError' || error.name === 'ReplicaTimeoutError' || error.name === 'ArchiveNotOpenError' ||
    (typeof code === 'string' && TRANSIENT_CODES.has(code)) ||
    TRANSIENT_REPLY.test(error.message) ||
    TRANSIENT_MESSAGE.test(error.message)
}
