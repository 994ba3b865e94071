// Embedded mode keeps presence in memory, but the retained `presence/<user>`
// messages are on disk: after a crash they still say "online". At start,
// every retained state is loaded, and those claiming online are corrected.
// The broker reads the retained packets (broker/broker.ts); this decides.
import type { MemoryPresence } from './memory-presence.ts'
import { offline, type PresenceState } from './presence-registry.ts'
import { presenceUser } from '../protocol/topics.ts'

/** A retained `presence/<user>` packet, as the broker's persistence holds it. */
export interface RetainedPresence { topic: string, payload: Buffer }

export async function correctStalePresence (
  retained: AsyncIterable<RetainedPresence>,
  registry: MemoryPresence,
  publish: (user: string, state: PresenceState) => Promise<void>
): Promise<void> {
  const now = Date.now()
  for await (const packet of retained) {
    const user = presenceUser(packet.topic)
    if (user === undefined) continue
    let state: PresenceState
    try { state = JSON.parse(packet.payload.toString()) as PresenceState } catch { continue }
    if (state.status === 'online') {
      state = { ...offline(now), lastSeen: now }
      await publish(user, state)
    }
    registry.seed(user, state)
  }
}
