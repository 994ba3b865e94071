// Turns what arrives (live from the broker, and pages from /v1/sync, in any
// mix and order, duplicates included) into one stream in seq order with
// every event exactly once. An event is held back while an earlier seq is
// missing; if the gap does not close by itself soon (live events from
// different senders can cross), `onGap` asks for a sync.
import type { LogEvent } from './types.ts'

export interface SequencerOptions {
  lastSeq: number
  deliver: (event: LogEvent) => void
  onGap: () => void
  gapWaitMs: number
}

export class InboxSequencer {
  #lastSeq: number
  readonly #held = new Map<number, LogEvent>()
  readonly #options: SequencerOptions
  #gapTimer: ReturnType<typeof setTimeout> | undefined

  constructor (options: SequencerOptions) {
    this.#options = options
    this.#lastSeq = options.lastSeq
  }

  /** The highest seq delivered: everything up to it has been seen exactly once. */
  get lastSeq (): number { return this.#lastSeq }

  accept (event: LogEvent): void {
    if (event.seq <= this.#lastSeq || this.#held.has(event.seq)) return
    this.#held.set(event.seq, event)
    this.#drain()
  }

  /**
   * Seqs up to `upTo` that have not arrived no longer exist on the server
   * (past its retention): deliver what is held up to there, in order, and
   * stop waiting for the rest.
   */
  skipMissing (upTo: number): void {
    if (upTo <= this.#lastSeq) return
    const held = [...this.#held.keys()].filter((seq) => seq <= upTo).sort((a, b) => a - b)
    for (const seq of held) {
      const event = this.#held.get(seq)!
      this.#held.delete(seq)
      this.#lastSeq = seq
      this.#options.deliver(event)
    }
    this.#lastSeq = upTo
    this.#drain()
  }

  /** Seqs up to `upTo` are passed over, not delivered, held ones included (a new device starting from now). */
  passOver (upTo: number): void {
    if (upTo <= this.#lastSeq) return
    for (const seq of [...this.#held.keys()]) if (seq <= upTo) this.#held.delete(seq)
    this.#lastSeq = upTo
    this.#drain()
  }

  #drain (): void {
    let next: LogEvent | undefined
    while ((next = this.#held.get(this.#lastSeq + 1)) !== undefined) {
      this.#held.delete(next.seq)
      this.#lastSeq = next.seq
      this.#options.deliver(next)
    }
    if (this.#held.size === 0) {
      clearTimeout(this.#gapTimer)
      this.#gapTimer = undefined
    } else {
      this.#gapTimer ??= setTimeout(() => {
        this.#gapTimer = undefined
        if (this.#held.size > 0) this.#options.onGap()
      }, this.#options.gapWaitMs)
    }
  }

  stop (): void {
    clearTimeout(this.#gapTimer)
  }
}
