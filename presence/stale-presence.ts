// Embedded mode keeps presence in memory, but the retained `presence/<user>`
// messages are on disk: after a crash they still say "online". At start,
// every retained state is loaded, and those claiming online are corrected.
import type { Aedes } from 'aedes'
import type { MemoryPresence } from './memory-presence.ts'
import { offline, type PresenceState } from './presence-registry.ts'
import { presenceUser } from '../protocol/topics.ts'

interface RetainedSource {
  createRetainedStreamCombi (patterns: string[]): AsyncIterable<{ topic: string, payload: Buffer }>
}

export async function correctStalePresence (
  broker: Aedes,
  registry: MemoryPresence,
  publish: (user: string, state: PresenceState) => Promise<void>
): Promise<void> {
  const persistence = (broker as unknown as { persistence: RetainedSource }).persistence
  const now = Date.now()
  for await (const packet of persistence.createRetainedStreamCombi(['presence/+'])) {
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
