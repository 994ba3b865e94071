// aedes-persistence-level answers every SUBSCRIBE by scanning *all* retained
// messages. With one retained presence message per user, connecting N
// clients cost O(N²): 2,000 connections took 17 s. Topics without wildcards
// (all a client may subscribe to) are looked up directly by key instead,
// as aedes-persistence-redis does; wildcard patterns keep the scan.
import { Readable } from 'node:stream'
import type { ClassicLevel } from 'classic-level'
import msgpack from 'msgpack-lite'

interface RetainedStore {
  createRetainedStreamCombi (patterns: string[]): Readable
}

const RETAINED = 'retained:' // aedes-persistence-level's key prefix

export function lookUpRetainedByKey (persistence: RetainedStore, db: ClassicLevel<string, Buffer>): void {
  const scan = persistence.createRetainedStreamCombi.bind(persistence)
  persistence.createRetainedStreamCombi = (patterns) => {
    if (patterns.some((pattern) => pattern.includes('+') || pattern.includes('#'))) return scan(patterns)
    return Readable.from((async function * () {
      const values = await db.getMany(patterns.map((topic) => RETAINED + topic), { valueEncoding: 'buffer' })
      for (const value of values) if (value !== undefined) yield msgpack.decode(value)
    })())
  }
}
