// The embedded hot tier as the archiver sees it (history/archive-source.ts).
// Every write of a log event marks its owner pending in the same batch
// (`ap!<owner>` → since when); `am!<owner>` is how far the archive holds it.
// One process: one partition, no lease.
import type { ClassicLevel } from 'classic-level'
import type { ArchiveSource, PendingOwner, RawGroupEntry, RawLogEntry } from './archive-source.ts'
import { parseMeta } from './history-store.ts'
import type { GroupCommit, Transaction } from './level-group-commit.ts'

const pad = (seq: number): string => String(seq).padStart(16, '0')

/** In the transaction that writes an event of `owner`'s log (`u:<user>` or `g:<group>`). */
export function markArchivePending (tx: Transaction, owner: string): void {
  if (tx.get(`ap!${owner}`) === undefined) tx.put(`ap!${owner}`, String(Date.now()))
}

const headKey = (owner: string): string => owner.startsWith('g:') ? `g!${owner.slice(2)}!seq` : `seq!${owner.slice(2)}`

export class LevelArchiveSource implements ArchiveSource {
  readonly partitions = 1
  readonly #db: ClassicLevel<string, string>
  readonly #commit: GroupCommit

  constructor (db: ClassicLevel<string, string>, commit: GroupCommit) {
    this.#db = db
    this.#commit = commit
  }

  async pending (_partition: number, limit: number): Promise<PendingOwner[]> {
    // Read in key order, a window at a time: at most `limit * 10` per call, longest waiting first within it.
    const entries = await this.#db.iterator({ gt: 'ap!', lt: 'ap!~', limit: limit * 10 }).all()
    return entries.map(([key, since]) => ({ owner: key.slice(3), since: Number(since) })).sort((a, b) => a.since - b.since).slice(0, limit)
  }

  async oldestPending (): Promise<number | undefined> {
    return undefined // the archiver reports the oldest of what `pending` gave it
  }

  async readUser (user: string, after: number, limit: number): Promise<RawLogEntry[]> {
    const values = await this.#db.values({ gt: `ev!${user}!${pad(after)}`, lt: `ev!${user}!~`, limit }).all()
    return values.map((stored) => {
      const newline = stored.indexOf('\n')
      return { meta: parseMeta(stored.slice(0, newline)), value: stored.slice(newline + 1) }
    })
  }

  async readGroup (group: string, after: number, limit: number): Promise<RawGroupEntry[]> {
    const prefix = `g!${group}!ev!`
    const entries = await this.#db.iterator({ gt: prefix + pad(after), lt: prefix + '~', limit }).all()
    return entries.map(([key, tail]) => ({ gseq: Number(key.slice(prefix.length)), tail }))
  }

  async userEvent (user: string, seq: number): Promise<string | undefined> {
    const stored = this.#commit.read(`ev!${user}!${pad(seq)}`)
    return stored === undefined ? undefined : stored.slice(stored.indexOf('\n') + 1)
  }

  async groupEvent (group: string, gseq: number): Promise<string | undefined> {
    return this.#commit.read(`g!${group}!ev!${pad(gseq)}`)
  }

  async position (owner: string): Promise<{ upTo: number, version: string }> {
    // One process, marks written with the writes: the head, read in the same transaction, is version enough.
    return { upTo: await this.archivedUpTo(owner), version: '' }
  }

  async archived (owner: string, upTo: number, _version: string, nextSince: number | undefined): Promise<void> {
    await this.#commit.run((tx) => {
      const mark = Math.max(Number(tx.get(`am!${owner}`) ?? 0), upTo)
      tx.put(`am!${owner}`, String(mark))
      if (mark >= Number(tx.get(headKey(owner)) ?? 0)) tx.del(`ap!${owner}`)
      else if (tx.get(`ap!${owner}`) !== undefined) tx.put(`ap!${owner}`, String(nextSince ?? Date.now()))
    })
  }

  async archivedUpTo (owner: string): Promise<number> {
    return Number(this.#commit.read(`am!${owner}`) ?? 0)
  }
}
