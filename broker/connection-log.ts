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

type Wire = Client & { req?: unknown, _disconnected?: boolean, clean?: boolean }

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
  // On another process: Aedes announces every new client on $SYS, and its own listener, which runs
  // just before this one, closes the local client with that id: still listed here if its close waits
  // for the store, already gone (disconnected in that same call) if not. So the id is also kept
  // until the next turn of the event loop, when disconnections are logged.
  const takenElsewhere = new Set<string>()
  inside.mq.on('$SYS/+/new/clients', (packet, callback) => {
    if (packet.topic.split('/')[1] !== aedes.id) {
      const clientId = packet.payload.toString()
      const old = clients()[clientId]
      if (old !== undefined) noteCloseReason(old, TAKEN_OVER)
      takenElsewhere.add(clientId)
      setImmediate(() => takenElsewhere.delete(clientId))
    }
    callback()
  })

  aedes.on('keepaliveTimeout', (client: Client) => noteCloseReason(client, 'keepalive timeout: no packet for 1.5 × keepalive'))
  aedes.on('clientError', (client: Client, error: Error) => noteCloseReason(client, `connection error: ${error.message}`))

  aedes.on('clientReady', (client: Client) => log.info({ ...who(client), clean: (client as Wire).clean }, 'device connected'))
  aedes.on('clientDisconnect', (client: Client) => setImmediate(() => {
    const reason = closeReason(client) ?? (takenElsewhere.has(client.id) ? TAKEN_OVER : (client as Wire)._disconnected === true ? 'the client sent DISCONNECT' : 'closed by the client or the network')
    log.info({ ...who(client), reason }, 'device disconnected')
    if (reason !== TAKEN_OVER) return
    onTakeover?.()
    const warning = watch.takenOver(client.id)
    if (warning !== undefined) {
      const device = parseClientId(client.id)
      log.warn({ clientId: client.id, user: device?.userId, device: device?.deviceId, takeovers: warning.takeovers, seconds: warning.seconds },
        `device ${client.id} was taken over ${warning.takeovers} times in ${warning.seconds} s: two clients are probably using the same clientId and keep replacing each other (next warning for it in ${WINDOW_MS / 1000} s at the earliest)`)
    }
  }))
}
