// Delivery and read receipts. A read mark comes from the app (REST); a
// delivery mark comes from the broker when one of the recipient's devices
// PUBACKs a message. Delivery marks are coalesced per conversation for a
// short window, so a burst of 1,000 messages costs one receipt, not 1,000.
import type { LogStore, ReceiptKind, ReceiptResult } from '../history/history-store.ts'
import type { LogSink } from '../history/log-sink.ts'

export interface ReceiptServiceOptions {
  history: Pick<LogStore, 'receipt'>
  log: LogSink
  coalesceMs?: number
  onError: (error: unknown) => void
  now?: () => number
}

export class ReceiptService {
  readonly #history: Pick<LogStore, 'receipt'>
  readonly #log: LogSink
  readonly #coalesceMs: number
  readonly #onError: (error: unknown) => void
  readonly #now: () => number
  /** `reader \n peer` → highest delivered seq not yet recorded. */
  readonly #pendingDelivered = new Map<string, number>()
  #flushTimer: NodeJS.Timeout | undefined

  constructor ({ history, log, coalesceMs = 250, onError, now = Date.now }: ReceiptServiceOptions) {
    this.#history = history
    this.#log = log
    this.#coalesceMs = coalesceMs
    this.#onError = onError
    this.#now = now
  }

  async mark (kind: ReceiptKind, reader: string, peer: string, upTo: number): Promise<ReceiptResult> {
    // The peer's receipt event reaches their log through the store's relay, reported to the sink.
    const result = await this.#history.receipt(kind, reader, peer, upTo, this.#now(), this.#log)
    if (result.readerEvent !== undefined) this.#log.appended(reader, result.readerEvent)
    return result
  }

  /** A device of `reader` acknowledged a message from `peer` with the reader's seq `seq`. */
  delivered (reader: string, peer: string, seq: number): void {
    const key = `${reader}\n${peer}`
    if ((this.#pendingDelivered.get(key) ?? 0) < seq) this.#pendingDelivered.set(key, seq)
    this.#flushTimer ??= setTimeout(() => { this.flush().catch(this.#onError) }, this.#coalesceMs)
  }

  async flush (): Promise<void> {
    this.#flushTimer = undefined
    const pending = [...this.#pendingDelivered]
    this.#pendingDelivered.clear()
    await Promise.all(pending.map(async ([key, seq]) => {
      const [reader, peer] = key.split('\n') as [string, string]
      await this.mark('delivered', reader, peer, seq).catch(this.#onError)
    }))
  }

  async close (): Promise<void> {
    clearTimeout(this.#flushTimer)
    await this.flush()
  }
}
