// How one device's DeviceStream reaches its MQTT connection: the log it reads,
// the socket it writes to, and where its acknowledged positions go. One object
// per connection with its methods on the prototype: the seven closures this
// used to be cost each idle connection about 2.4 KB (bench/OPTIMISATIONS.md,
// round 8), since tsx's keepNames makes every function expression a
// dictionary-mode object.
import type { Client } from 'aedes'
import mqttPacket from 'mqtt-packet'
import type { Logger } from 'pino'
import type { LogEntry, LogStore } from '../../history/history-store.ts'
import type { DeviceIdentity } from '../../protocol/identity.ts'
import type { InboxPacket, StreamPort } from './device-stream.ts'
import { STREAM_BUFFER_BYTES } from '../backpressure.ts'

/** What every connection's port shares (one per InboxDelivery). */
export interface SharedPortParts {
  history: Pick<LogStore, 'readLog'>
  log: Logger
  /** A persistent session's acknowledged position moved to `seq` (written in coalesced batches). */
  advanced (clientId: string, device: DeviceIdentity, seq: number): void
  sent?: (source: 'backlog' | 'live') => void
}

export class ConnectionPort implements StreamPort {
  readonly #client: Client
  readonly #device: DeviceIdentity
  readonly #shared: SharedPortParts
  readonly sent?: (source: 'backlog' | 'live') => void

  constructor (client: Client, device: DeviceIdentity, shared: SharedPortParts) {
    this.#client = client
    this.#device = device
    this.#shared = shared
    if (shared.sent !== undefined) this.sent = shared.sent
  }

  readLog (after: number, limit: number): Promise<LogEntry[]> {
    return this.#shared.history.readLog(this.#device.userId, after, limit)
  }

  /** A packet for a closing socket is dropped: unacknowledged, it is resent on the next connection. */
  write (packet: InboxPacket): boolean {
    const conn = this.#client.conn
    return conn.destroyed || mqttPacket.writeToStream(packet, conn)
  }

  drained (): Promise<void> {
    const conn = this.#client.conn
    return new Promise((resolve) => {
      if (conn.destroyed || !conn.writableNeedDrain) return resolve()
      const done = (): void => { conn.off('drain', done); conn.off('close', done); resolve() }
      conn.once('drain', done)
      conn.once('close', done)
    })
  }

  full (): boolean {
    return this.#client.conn.writableLength > STREAM_BUFFER_BYTES
  }

  /** The next MQTT packet id of Aedes' client (shared with what Aedes itself sends on this connection). */
  nextMessageId (): number {
    const internals = this.#client as unknown as { _nextId: number }
    const id = internals._nextId
    internals._nextId = id >= 65535 ? 1 : id + 1
    return id
  }

  advanced (seq: number): void {
    if (!this.#client.clean) this.#shared.advanced(this.#client.id, this.#device, seq)
  }

  onError (error: unknown): void {
    this.#shared.log.warn({ err: error, clientId: this.#client.id }, 'inbox stream could not read the log; retrying')
  }
}
