// One connected device's view of its user's log: the log is the queue, and
// this is the cursor moving along it. It writes QoS 1 PUBLISH packets on the
// inbox topic straight to the device's socket, in seq order, each seq once
// per connection:
//   - catching up: reads the log from the last seq sent, a page at a time,
//     and writes the whole page in one turn of the event loop;
//   - live: an offered event that is exactly the next seq is written at once;
//     anything else (a gap, a full window, a full socket) falls back to
//     catching up, so nothing is ever buffered here but the in-flight window.
// PUBACKs move the acknowledged position (the cursor) forward; it only ever
// covers a contiguous prefix, so a crash means redelivery, never loss.
import type { LogEntry } from '../../history/history-store.ts'

export interface InboxPacket {
  cmd: 'publish'
  topic: string
  payload: Buffer
  qos: 0 | 1
  messageId?: number
  dup: false
  retain: false
}

export interface StreamPort {
  readLog (after: number, limit: number): Promise<LogEntry[]>
  /** Writes one packet; false when the socket's buffer is full. */
  write (packet: InboxPacket): boolean
  /** Resolves when the socket can take more (or is gone). */
  drained (): Promise<void>
  /** True when the socket holds so much unsent that a catch-up page should stop here. */
  full (): boolean
  nextMessageId (): number
  /** The acknowledged position moved forward to `seq`. */
  advanced (seq: number): void
  onError (error: unknown): void
  /** One event written (metrics): from the backlog, or live. */
  sent? (source: 'backlog' | 'live'): void
}

export interface StreamOptions {
  topic: string
  /** Granted subscription QoS: at 0 nothing is acknowledged, a write counts as delivered. */
  qos: 0 | 1
  /** Events older than this are skipped (BACKLOG_RETENTION_SECONDS); /v1/sync still has them. */
  retentionMs: number
  port: StreamPort
}

interface Slot { seq: number, acked: boolean, packet?: InboxPacket }

/** Unacknowledged PUBLISHes per device: bounds memory and stays far below the 65,535 MQTT packet ids. */
export const WINDOW = 4096
const PAGE = 2000
const RETRY_MS = 1000

export class DeviceStream {
  readonly #options: StreamOptions
  readonly #inFlight = new Map<number, Slot>()
  /** Written or skipped seqs, in order, from the oldest not yet acknowledged. */
  #order: Slot[] = []
  #head = 0
  #cursor = 0
  /** Highest seq written (or skipped); undefined until started. */
  #sent: number | undefined
  #catchingUp = false
  #again = false
  #needsDrain = false
  #closed = false
  #windowOpened: (() => void) | undefined

  constructor (options: StreamOptions) {
    this.#options = options
  }

  get cursor (): number { return this.#cursor }

  /** Begins after `cursor`, the highest seq this device already has. */
  start (cursor: number): void {
    this.#cursor = cursor
    this.#sent = cursor
    this.catchUp()
  }

  /** A new event of the user's log (live). */
  offer (seq: number, event: string): void {
    if (this.#closed) return
    if (this.#sent === undefined || this.#catchingUp) { this.#again = true; return }
    if (seq <= this.#sent) return
    if (seq === this.#sent + 1 && this.#inFlight.size < WINDOW && !this.#needsDrain) {
      this.#send(seq, event)
      return
    }
    this.catchUp()
  }

  /** Re-reads the log from the last seq sent (after a gap, or when notifications may have been lost). */
  catchUp (): void {
    if (this.#closed || this.#sent === undefined) return
    if (this.#catchingUp) { this.#again = true; return }
    this.#catchingUp = true
    this.#runCatchUp().catch((error: unknown) => {
      this.#catchingUp = false
      this.#options.port.onError(error)
      setTimeout(() => this.catchUp(), RETRY_MS).unref()
    })
  }

  async #runCatchUp (): Promise<void> {
    const { port, retentionMs } = this.#options
    for (;;) {
      if (this.#closed) return
      if (this.#needsDrain) {
        await port.drained()
        this.#needsDrain = false
        continue
      }
      const room = WINDOW - this.#inFlight.size
      if (room < PAGE / 4) {
        await new Promise<void>((resolve) => { this.#windowOpened = resolve })
        continue
      }
      this.#again = false
      const limit = Math.min(PAGE, room)
      const entries = await port.readLog(this.#sent!, limit)
      if (this.#closed) return
      const cutoff = Date.now() - retentionMs
      let stoppedEarly = false
      for (const entry of entries) {
        if (entry.seq <= this.#sent!) continue
        // A device that reads slowly gets the rest of the page after a drain
        // (read again from the log), not all of it buffered in the server.
        if (this.#needsDrain && port.full()) { stoppedEarly = true; break }
        if (entry.event === undefined || entry.ts < cutoff) this.#skip(entry.seq)
        else this.#send(entry.seq, entry.event)
      }
      // Caught up with the log as of that read, and nothing was offered since:
      // from here the live path takes over (this runs in the same turn as the read).
      if (!stoppedEarly && entries.length < limit && !this.#again) {
        this.#catchingUp = false
        return
      }
    }
  }

  #send (seq: number, event: string): void {
    const { topic, qos, port } = this.#options
    const packet: InboxPacket = { cmd: 'publish', topic, payload: Buffer.from(event), qos, dup: false, retain: false }
    const slot: Slot = { seq, acked: qos === 0 }
    if (qos === 1) {
      packet.messageId = port.nextMessageId()
      slot.packet = packet
      this.#inFlight.set(packet.messageId, slot)
    }
    this.#order.push(slot)
    this.#sent = seq
    port.sent?.(this.#catchingUp ? 'backlog' : 'live')
    if (!port.write(packet)) this.#needsDrain = true
    if (qos === 0) this.#advance()
  }

  /** Past retention (or its group event is gone): not sent, but counted as done so the cursor can move past it. */
  #skip (seq: number): void {
    this.#order.push({ seq, acked: true })
    this.#sent = seq
    this.#advance()
  }

  /** A PUBACK: returns the acknowledged packet, or undefined if the id is not one of ours. */
  ack (messageId: number): InboxPacket | undefined {
    const slot = this.#inFlight.get(messageId)
    if (slot === undefined) return undefined
    this.#inFlight.delete(messageId)
    slot.acked = true
    this.#advance()
    if (this.#windowOpened !== undefined && this.#inFlight.size <= WINDOW / 2) {
      const resume = this.#windowOpened
      this.#windowOpened = undefined
      resume()
    }
    return slot.packet
  }

  #advance (): void {
    const before = this.#cursor
    while (this.#head < this.#order.length && this.#order[this.#head]!.acked) {
      this.#cursor = this.#order[this.#head]!.seq
      this.#head++
    }
    if (this.#head > 1024 && this.#head * 2 > this.#order.length) {
      this.#order = this.#order.slice(this.#head)
      this.#head = 0
    }
    if (this.#cursor > before) this.#options.port.advanced(this.#cursor)
  }

  /** Stops for good; returns the final acknowledged position. */
  close (): number {
    this.#closed = true
    this.#windowOpened?.()
    this.#windowOpened = undefined
    return this.#cursor
  }
}
