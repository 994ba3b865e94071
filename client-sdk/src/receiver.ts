// Receiving: every event, live from the broker or paged from /v1/sync, goes
// through the InboxSequencer, so the app sees each seq once and in order;
// the last seq processed is kept in storage for the next start. Sync runs
// one at a time; a request during a run runs again after it.
import { InboxSequencer } from './inbox-sequencer.ts'
import type { RestClient } from './rest.ts'
import type { ClientStorage } from './storage.ts'
import type { LogEvent } from './types.ts'

const LAST_SEQ_KEY = 'inboxd.lastSeq'

export interface ReceiverOptions {
  storage: ClientStorage
  rest: RestClient
  gapWaitMs?: number
  /** With no seq saved in storage: 'beginning' emits every event the server holds, 'now' passes over those already there at the first catch-up. */
  startFrom?: 'beginning' | 'now'
  /** Each event in seq order, exactly once. */
  deliver: (event: LogEvent) => void
  onError: (error: Error) => void
}

export class Receiver {
  readonly #options: ReceiverOptions
  #sequencer: InboxSequencer | undefined
  #syncing: Promise<void> | undefined
  #syncAgain = false
  /** A failed catch-up is tried again (1 s, doubling to 30 s) rather than waiting for the next reconnect. */
  #retryTimer: ReturnType<typeof setTimeout> | undefined
  #retryDelayMs = 1_000
  #stopped = false
  /** Until the first catch-up completes, for a new device starting from now. */
  #passingOver = false

  constructor (options: ReceiverOptions) {
    this.#options = options
  }

  async load (): Promise<void> {
    const saved = await this.#options.storage.get(LAST_SEQ_KEY)
    const lastSeq = Number(saved ?? 0)
    this.#passingOver = saved === undefined && this.#options.startFrom === 'now'
    this.#sequencer = new InboxSequencer({
      lastSeq,
      gapWaitMs: this.#options.gapWaitMs ?? 300,
      deliver: (event) => {
        // A stopped client processes nothing more: a packet still in flight when
        // stop() was called, or a sync page, must not move the saved seq under
        // the next client that starts with the same storage.
        if (this.#stopped) return
        void this.#options.storage.set(LAST_SEQ_KEY, String(event.seq))
        this.#options.deliver(event)
      },
      onGap: () => { void this.sync() }
    })
  }

  get #seq (): InboxSequencer {
    if (this.#sequencer === undefined) throw new Error('not started')
    return this.#sequencer
  }

  get lastSeq (): number { return this.#seq.lastSeq }

  accept (event: LogEvent): void {
    if (!this.#stopped) this.#seq.accept(event)
  }

  sync (): Promise<void> {
    if (this.#syncing !== undefined) {
      this.#syncAgain = true
      return this.#syncing
    }
    this.#syncing = (async () => {
      try {
        do {
          this.#syncAgain = false
          let since = this.#seq.lastSeq
          for (;;) {
            const page = await this.#options.rest.request<{ events: LogEvent[], next: number, hasMore: boolean }>('GET', `/v1/sync?since=${since}&limit=500`)
            if (this.#stopped) return
            if (this.#passingOver) {
              this.#seq.passOver(page.next)
            } else {
              for (const event of page.events) this.#seq.accept(event)
              // The page covered every seq up to `next`: one it did not return is past the server's retention.
              this.#seq.skipMissing(page.next)
            }
            since = page.next
            if (!page.hasMore) break
          }
          if (this.#passingOver) {
            this.#passingOver = false
            // Nothing was delivered, so nothing saved the seq: save it, or the next start would pass over again from 0.
            await this.#options.storage.set(LAST_SEQ_KEY, String(this.#seq.lastSeq))
          }
        } while (this.#syncAgain)
        this.#retryDelayMs = 1_000
      } catch (error) {
        if (this.#stopped) return
        this.#options.onError(error as Error)
        clearTimeout(this.#retryTimer)
        this.#retryTimer = setTimeout(() => { void this.sync() }, this.#retryDelayMs)
        this.#retryDelayMs = Math.min(this.#retryDelayMs * 2, 30_000)
      } finally {
        this.#syncing = undefined
      }
    })()
    return this.#syncing
  }

  stop (): void {
    this.#stopped = true
    clearTimeout(this.#retryTimer)
    this.#sequencer?.stop()
  }
}
