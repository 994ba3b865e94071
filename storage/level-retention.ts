// Backlog retention for embedded mode. Redis expires queued packets by TTL;
// LevelDB has no TTL, so a periodic sweep deletes queued packets whose
// server timestamp (`ts` in the stamped payload) is older than retention.
// Key schema: aedes-persistence-level's `outgoing:<clientId>:<broker>:<n>`.
import type { ClassicLevel } from 'classic-level'
import msgpack from 'msgpack-lite'
import type { Logger } from 'pino'

const RANGE = { gte: 'outgoing:', lt: 'outgoing;' }

function stampedAt (value: Buffer): number | undefined {
  try {
    const packet = msgpack.decode(value) as { payload?: Buffer | string }
    const payload = packet.payload === undefined ? '' : packet.payload.toString()
    const ts = (JSON.parse(payload) as { ts?: unknown }).ts
    return typeof ts === 'number' ? ts : undefined
  } catch {
    return undefined
  }
}

/** Deletes expired queued packets; returns how many. */
export async function sweepExpiredBacklog (db: ClassicLevel<string, Buffer>, retentionMs: number, now = Date.now()): Promise<number> {
  const expired: string[] = []
  for await (const [key, value] of db.iterator({ ...RANGE, valueEncoding: 'buffer' })) {
    const ts = stampedAt(value)
    if (ts !== undefined && ts < now - retentionMs) expired.push(key)
  }
  if (expired.length > 0) await db.batch(expired.map((key) => ({ type: 'del' as const, key })))
  return expired.length
}

export function startRetentionSweep (db: ClassicLevel<string, Buffer>, retentionSeconds: number, everySeconds: number, log: Logger): () => void {
  let running = false
  const timer = setInterval(() => {
    if (running) return
    running = true
    sweepExpiredBacklog(db, retentionSeconds * 1000)
      .then((count) => { if (count > 0) log.info({ count }, 'expired queued messages removed') })
      .catch((error: Error) => log.warn({ err: error }, 'backlog retention sweep failed'))
      .finally(() => { running = false })
  }, everySeconds * 1000)
  timer.unref()
  return () => clearInterval(timer)
}
