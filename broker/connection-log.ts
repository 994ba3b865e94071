// One info line for each MQTT connection and each disconnection: the device,
// its user, the transport and, for a disconnection, why. A takeover (a new
// connection with the same clientId, on this process or another, closes the
// old one) is one of those reasons; it is counted, and a device taken over
// again and again gets a rate-limited warning (broker/takeover-watch.ts).
import type { Aedes, Client } from 'aedes'
import type { Logger } from 'pino'
import { parseClientId } from '../protocol/identity.ts'
import { closeReason, noteCloseReason } from './close-reasons.ts'
import { TakeoverWatch, WINDOW_MS } from './takeover-watch.ts'

export const TAKEN_OVER = 'taken over: a new connection with the same clientId'

export interface ConnectionLogOptions {
  log: Logger
  /** Each takeover (metrics). */
  onTakeover?: () => void
  watch?: TakeoverWatch
}

type Wire = Client & { req?: unknown, _disconnected?: boolean, clean?: boolean, _keepaliveInterval?: number }

export function transportOf (client: Client): 'tcp' | 'websocket' {
  return (client as Wire).req === undefined ? 'tcp' : 'websocket'
}

function who (client: Client): Record<string, unknown> {
  const device = parseClientId(client.id)
  return { clientId: client.id, user: device?.userId, device: device?.deviceId, transport: transportOf(client) }
}

export function logConnections (aedes: Aedes, { log, onTakeover, watch = new TakeoverWatch() }: ConnectionLogOptions): void {
  // Aedes internals its types do not declare.
  const inside = aedes as unknown as {
    clients: Record<string, Client | undefined>
    registerClient (client: Client): void
    mq: { on (topic: string, listener: (packet: { topic: string, payload: Buffer | string }, callback: () => void) => void): void }
  }
  const clients = (): Record<string, Client | undefined> => inside.clients

  // A takeover on this process: Aedes closes the old connection when it registers the new one.
  const register = inside.registerClient.bind(aedes)
  inside.registerClient = (client: Client) => {
    const old = clients()[client.id]
    if (old !== undefined && old !== client) noteCloseReason(old, TAKEN_OVER)
    register(client)
  }
  // On another process: Aedes announces every new client on $SYS and closes its own with that id
  // (synchronously marked closed, removed later), so the old one is still listed here.
  inside.mq.on('$SYS/+/new/clients', (packet, callback) => {
    const old = clients()[packet.payload.toString()]
    if (old !== undefined && packet.topic.split('/')[1] !== aedes.id) noteCloseReason(old, TAKEN_OVER)
    callback()
  })

  aedes.on('keepaliveTimeout', (client: Client) => noteCloseReason(client, 'keepalive timeout: no packet for 1.5 × keepalive'))
  aedes.on('clientError', (client: Client, error: Error) => noteCloseReason(client, `connection error: ${error.message}`))

  aedes.on('clientReady', (client: Client) => {
    const wire = client as Wire
    log.info({ ...who(client), clean: wire.clean, keepalive: (wire._keepaliveInterval ?? 0) > 0 ? Math.round(wire._keepaliveInterval! / 1500) : 0 }, 'device connected')
  })
  aedes.on('clientDisconnect', (client: Client) => {
    const reason = closeReason(client) ?? ((client as Wire)._disconnected === true ? 'the client sent DISCONNECT' : 'closed by the client or the network')
    log.info({ ...who(client), reason }, 'device disconnected')
    if (reason !== TAKEN_OVER) return
    onTakeover?.()
    const warning = watch.takenOver(client.id)
    if (warning !== undefined) {
      const device = parseClientId(client.id)
      log.warn({ clientId: client.id, user: device?.userId, device: device?.deviceId, takeovers: warning.takeovers, seconds: warning.seconds },
        `device ${client.id} was taken over ${warning.takeovers} times in ${warning.seconds} s: two clients are probably using the same clientId and keep replacing each other (next warning for it in ${WINDOW_MS / 1000} s at the earliest)`)
    }
  })
}
