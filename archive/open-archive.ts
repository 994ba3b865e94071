// Opens the long-term tier for the storage mode: PostgreSQL with DATABASE_URL
// (either mode), else in embedded mode a LevelDB of its own in DATA_DIR; Redis
// mode without DATABASE_URL has none (search answers 501 search_not_configured).
// Returns the store, the archiver that follows the hot tier into it, and search.
//
// PostgreSQL down or slow never holds up the server: it is opened in the
// background, retried with backoff (0.2 s doubling to 10 s), and the archiver
// starts once it is open; until then search answers search_unavailable and the
// hot tier keeps everything not archived. One outage is reported once (when
// lost, and when back), whether opening or the archiver's rounds failed.
import { join } from 'node:path'
import type { Config } from '../config/config.ts'
import type { ArchiveSource } from '../history/archive-source.ts'
import type { ArchiveStore } from './archive-store.ts'
import { Archiver, STALL_MS, waitingSeconds, watched, type ArchiveMetrics } from './archiver.ts'
import { PgArchive } from './pg-archive.ts'
import { LevelArchive } from './level-archive.ts'
import { SearchService } from './search-service.ts'

export interface OpenedArchive {
  /** Undefined until the store is open. */
  readonly store: ArchiveStore | undefined
  /** Undefined until the store is open. */
  readonly archiver: Archiver | undefined
  readonly search: SearchService
  /** Starts the archiver: now, or once the store is open. */
  start (): void
  close (): Promise<void>
}

export interface OpenArchiveOptions {
  /** This process's name in leases. */
  holder: string
  metrics?: ArchiveMetrics & {
    /** False on any failure (opening, a round, a trim); true on opening and on each round that succeeded. */
    up (up: boolean): void
  }
  /** The archive could not be reached (opened, written or trimmed): once per outage. */
  onOutage?: (error: unknown) => void
  /** It answered again, after `downMs`. */
  onRecovered?: (downMs: number) => void
}

/** Longest wait for the archiver and the store to close. */
const CLOSE_WAIT_MS = 5_000

/** Pause before the next attempt to open: 0.2 s doubling up to 10 s. */
const openBackoff = (failures: number): number => Math.min(10_000, 200 * 2 ** Math.min(failures - 1, 6))

/** Tells an outage once when it starts and once when it ends, and keeps the up gauge. */
function outageTracker (options: OpenArchiveOptions): { failed (error: unknown): void, succeeded (): void } {
  let since: number | undefined
  return {
    failed (error) {
      options.metrics?.up(false)
      if (since !== undefined) return
      since = Date.now()
      options.onOutage?.(error)
    },
    succeeded () {
      options.metrics?.up(true)
      if (since === undefined) return
      const downMs = Date.now() - since
      since = undefined
      options.onRecovered?.(downMs)
    }
  }
}

export async function openArchive (config: Config, source: ArchiveSource | undefined, options: OpenArchiveOptions): Promise<OpenedArchive | undefined> {
  if (source === undefined) return undefined
  const outage = outageTracker(options)
  let store: ArchiveStore | undefined
  let archiver: Archiver | undefined
  let started = false
  let closed = false
  let wake: (() => void) | undefined

  const opened = (open: ArchiveStore): void => {
    store = open
    archiver = new Archiver(source, open, {
      holder: options.holder,
      ...(options.metrics === undefined ? {} : { metrics: options.metrics }),
      retentionMs: config.historyRetentionMs,
      onError: (error) => outage.failed(error),
      onSuccess: () => outage.succeeded()
    })
    outage.succeeded()
    if (started) archiver.start()
  }

  const databaseUrl = config.databaseUrl
  // The embedded LevelDB is local: failing to open it is a fault of this process, so the start fails.
  // DURABILITY=disk: the embedded archive is fsynced too (past the hot window it holds the only copy).
  if (databaseUrl === undefined) opened(await LevelArchive.open(join(config.dataDir, 'archive'), { sync: config.durability === 'disk' }))
  else {
    void (async () => {
      const reportLag = async (): Promise<void> => {
        const metrics = options.metrics
        if (metrics !== undefined) await waitingSeconds(source).then((seconds) => metrics.lag(seconds), () => {})
      }
      for (let failures = 1; !closed; failures++) {
        let open: ArchiveStore
        try {
          // An attempt without an answer (PostgreSQL frozen) is an outage too, and is still waited for.
          open = await watched(PgArchive.open(databaseUrl), STALL_MS, async (times) => {
            if (times === 1) {
              options.metrics?.error()
              outage.failed(new Error(`PostgreSQL has not answered for ${STALL_MS / 1000} s`))
            }
            await reportLag()
          })
        } catch (error) {
          options.metrics?.error()
          outage.failed(error)
          await reportLag()
          await new Promise<void>((resolve) => {
            wake = resolve
            setTimeout(resolve, openBackoff(failures)).unref()
          })
          continue
        }
        // Closed while this attempt was under way: nobody will use it.
        if (closed) await open.close()
        else opened(open)
        return
      }
    })()
  }

  return {
    get store () { return store },
    get archiver () { return archiver },
    search: new SearchService(() => store, config.historyRetentionMs),
    start () {
      started = true
      archiver?.start()
    },
    async close () {
      // An attempt to open still under way is not waited for (PostgreSQL may not answer): it closes what it opens.
      closed = true
      wake?.()
      // Nor, past a few seconds, a round PostgreSQL does not answer: the rest of the server still closes cleanly.
      let timer: ReturnType<typeof setTimeout> | undefined
      await Promise.race([
        (async () => { await archiver?.stop(); await store?.close() })(),
        new Promise<void>((resolve) => { timer = setTimeout(resolve, CLOSE_WAIT_MS) })
      ])
      clearTimeout(timer)
    }
  }
}
