// Group commit for a LevelDB owned by this process. A transaction is a
// synchronous function: it reads through an overlay of writes that are not
// on disk yet (then LevelDB's getSync), so transactions never interleave and
// need no locks. Every transaction of one event-loop turn goes into one
// batch; batches are written in order, and each caller resolves when its
// batch is written. One write per turn instead of one per message is what
// lets the embedded store keep up with the broker. "Written" means in the
// OS (it survives kill -9 of this process); with `sync` (DURABILITY=disk)
// it means fsynced (it survives a power cut), at one fsync per batch.
import type { ClassicLevel } from 'classic-level'

type Op = { type: 'put', key: string, value: string } | { type: 'del', key: string }

export interface Transaction {
  get (key: string): string | undefined
  put (key: string, value: string): void
  del (key: string): void
}

interface Pending { value: string | undefined, batch: number }

interface Batch {
  number: number
  ops: Op[]
  written: Promise<void>
  resolve: () => void
  reject: (error: unknown) => void
}

function newBatch (number: number): Batch {
  let resolve!: () => void
  let reject!: (error: unknown) => void
  const written = new Promise<void>((res, rej) => { resolve = res; reject = rej })
  written.catch(() => {}) // a caller that wrote nothing may not be listening
  return { number, ops: [], written, resolve, reject }
}

export class GroupCommit {
  readonly #db: ClassicLevel<string, string>
  /** Written by a transaction but not yet on disk. */
  readonly #overlay = new Map<string, Pending>()
  #open: Batch = newBatch(0)
  #scheduled = false
  #writing: Promise<void> = Promise.resolve()
  readonly #sync: boolean

  constructor (db: ClassicLevel<string, string>, options: { sync?: boolean } = {}) {
    this.#db = db
    this.#sync = options.sync ?? false
  }

  /** The current value of a key, including writes not yet on disk. */
  read (key: string): string | undefined {
    const pending = this.#overlay.get(key)
    if (pending !== undefined) return pending.value
    return this.#db.getSync(key) ?? undefined
  }

  /** Runs `work` now, atomically; resolves with its result once its writes (and all earlier ones) are on disk. */
  run<T> (work: (tx: Transaction) => T): Promise<T> {
    const ops: Op[] = []
    const local = new Map<string, string | undefined>()
    const tx: Transaction = {
      get: (key) => local.has(key) ? local.get(key) : this.read(key),
      put: (key, value) => { ops.push({ type: 'put', key, value }); local.set(key, value) },
      del: (key) => { ops.push({ type: 'del', key }); local.set(key, undefined) }
    }
    let result: T
    try {
      result = work(tx)
    } catch (error) {
      return Promise.reject(error)
    }
    const batch = this.#open
    for (const op of ops) {
      batch.ops.push(op)
      this.#overlay.set(op.key, { value: op.type === 'put' ? op.value : undefined, batch: batch.number })
    }
    if (!this.#scheduled) {
      this.#scheduled = true
      setImmediate(() => this.#flush())
    }
    // Even a read-only transaction waits: what it read may still be in the overlay.
    return batch.written.then(() => result)
  }

  #flush (): void {
    const batch = this.#open
    this.#open = newBatch(batch.number + 1)
    this.#scheduled = false
    this.#writing = this.#writing.then(async () => {
      try {
        if (batch.ops.length > 0) await this.#db.batch(batch.ops, { sync: this.#sync })
        batch.resolve()
      } catch (error) {
        batch.reject(error)
      } finally {
        for (const op of batch.ops) {
          if (this.#overlay.get(op.key)?.batch === batch.number) this.#overlay.delete(op.key)
        }
      }
    })
  }

  /** Resolves once everything written so far is on disk. */
  async drain (): Promise<void> {
    if (this.#scheduled) this.#flush()
    await this.#writing
  }
}

/**
 * A count kept in `counterKey` by every change, for data written before that
 * counter existed: the keys under `prefix` on disk, counted before the
 * transaction (which cannot iterate); undefined once the counter exists.
 * Exact when the transaction still finds no counter: every change writes one,
 * so unwritten batches hold no key under `prefix` without it.
 */
export async function countBeforeCounter (db: ClassicLevel<string, string>, commit: GroupCommit, counterKey: string, prefix: string): Promise<number | undefined> {
  if (commit.read(counterKey) !== undefined) return undefined
  return (await db.keys({ gt: prefix, lt: `${prefix}~` }).all()).length
}
