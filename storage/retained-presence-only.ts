// Only presence is ever retained: the server publishes `presence/<user>`
// with retain, and every client publish is redirected with retain cleared
// (broker/hooks/authorize-publish.ts). So a SUBSCRIBE to an inbox, errors
// or group topic needs no retained lookup at all; before this, each one
// cost a storage read (a LevelDB getMany or a Redis round trip), two per
// reconnecting device.
import { Readable } from 'node:stream'
import { mayMatchPresence } from '../protocol/topics.ts'

interface RetainedStore {
  createRetainedStreamCombi (patterns: string[]): Readable
}

export function lookUpOnlyPresence (persistence: RetainedStore): void {
  const lookUp = persistence.createRetainedStreamCombi.bind(persistence)
  persistence.createRetainedStreamCombi = (patterns) => {
    const wanted = patterns.filter(mayMatchPresence)
    return wanted.length === 0 ? Readable.from([]) : lookUp(wanted)
  }
}
