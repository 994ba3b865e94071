// CONNECT parameters the product depends on, checked before the token:
//  - keepalive is the only heartbeat, so it must be within the configured
//    bounds (0, "no keepalive", would make a silent loss undetectable);
//  - a will may only target the client's own presence topic. The server
//    publishes presence itself from connection events, so the will's
//    payload is never used; it cannot forge anyone's presence.
// MQTT 3.1.1 has no return code for either; see docs/protocol.md.
import type { Client } from 'aedes'
import { parseClientId } from '../../protocol/identity.ts'
import { presenceTopic } from '../../protocol/topics.ts'

export interface KeepaliveBounds { min: number, max: number }

const keepalives = new WeakMap<Client, number>()

/** preConnect hook: remembers the CONNECT's keepalive for the checks below. */
export function rememberKeepalive (client: Client, packet: { keepalive?: number }, done: (error: Error | null, ok: boolean) => void): void {
  keepalives.set(client, packet.keepalive ?? 0)
  done(null, true)
}

/** Why a CONNECT is refused: its CONNACK return code, a short code from a fixed set (logs and metrics), and the reason in words. */
export interface ConnectRefusal { returnCode: number, code: RefusalCode, reason: string }

/** Every refusal code (`inboxd_mqtt_connects_refused_total{reason}`: a bounded label set). */
export const REFUSAL_CODES = ['client_id', 'wrong_user', 'keepalive', 'will', 'connect_rate', 'no_token', 'bad_token', 'revoked',
  'too_many_devices', 'auth_unavailable', 'storage_unavailable'] as const
export type RefusalCode = typeof REFUSAL_CODES[number]

/** The reason a CONNECT is unacceptable, with its CONNACK return code, or undefined. */
export function connectProblem (client: Client, bounds: KeepaliveBounds): ConnectRefusal | undefined {
  const keepalive = keepalives.get(client) ?? 0
  if (keepalive < bounds.min || keepalive > bounds.max) {
    return { returnCode: 2, code: 'keepalive', reason: `keepalive must be between ${bounds.min} and ${bounds.max} seconds, got ${keepalive}` }
  }
  const will = (client as unknown as { _will?: { topic: string } })._will
  const device = parseClientId(client.id)
  if (will !== undefined && will !== null && (device === undefined || will.topic !== presenceTopic(device.userId))) {
    return { returnCode: 5, code: 'will', reason: 'a will may only be set on your own presence/<userId> topic' }
  }
  return undefined
}
