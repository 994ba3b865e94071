// How load generators talk to each system under test. Ours needs a JWT as
// password, a `<user>:<device>` clientId and `{id, body}` payloads, and
// delivers a stamped envelope; Mosquitto, bare Aedes, NATS and RabbitMQ take
// and deliver the payload as is. The topic layout (user/<id>/inbox) is the same everywhere.
import { createSigner } from 'fast-jwt'
import { SECRET } from '../test/helpers/tokens.ts'

export type TargetKind = 'inboxd-redis' | 'inboxd-redis-pg' | 'inboxd-cluster' | 'inboxd-embedded' | 'inboxd-embedded-base' | 'aedes-memory' | 'mosquitto' | 'mosquitto-unlimited'
  // The peers that also keep a QoS 1 message for an offline persistent session (issue #23).
  | 'nats-jetstream' | 'rabbitmq'
  // Not servers: the archive stores themselves, filled and searched by bench/load/archive-search.ts.
  | 'archive-pg' | 'archive-level'

export interface Profile {
  credentials (user: string, device: string): { clientId: string, username?: string, password?: string }
  inbox (user: string): string
  encode (id: string, body: string): string
  /** The body that was sent, from a delivered payload. */
  decode (payload: Buffer): string
}

const sign = createSigner({ key: SECRET, algorithm: 'HS256' })

export function profileFor (kind: TargetKind): Profile {
  const ours = kind.startsWith('inboxd-')
  return {
    credentials: (user, device) => ours
      ? { clientId: `${user}:${device}`, username: user, password: sign({ sub: user }) }
      : { clientId: `${user}:${device}` },
    inbox: (user) => `user/${user}/inbox`,
    encode: (id, body) => ours ? JSON.stringify({ id, body }) : body,
    decode: (payload) => ours ? (JSON.parse(payload.toString()) as { body: string }).body : payload.toString()
  }
}

/** A body of `size` bytes that carries its send time (performance.now(), same process) and an index. */
export function timedBody (index: number, size = 200): string {
  const head = `${performance.now().toFixed(3)};${index};`
  return head + 'x'.repeat(Math.max(0, size - head.length))
}

export function readTimedBody (body: string): { sentAt: number, index: number } {
  const [sentAt, index] = body.split(';')
  return { sentAt: Number(sentAt), index: Number(index) }
}

/** Arguments a load process gets (JSON in argv[2]). */
export interface LoadArgs {
  kind: TargetKind
  port: number
  run: string
  [key: string]: unknown
}

export function loadArgs (): LoadArgs {
  return JSON.parse(process.argv[2] ?? '{}') as LoadArgs
}

/** A load process reports one JSON object as its last stdout line. */
export function report (result: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(result) + '\n')
  process.exit(0)
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

export function percentile (sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!
}
