// Aedes numbers each publish (brokerCounter) when it starts, but emits it to
// online clients only after persistence has queued it; and each client drops
// any packet whose counter is not above the last one it was sent (Aedes'
// `dedupe`). A store that completes writes out of order (LevelDB does) thus
// makes live deliveries vanish until the next reconnect. Here the writes
// still run concurrently, but they resolve in the order they were started,
// so emits keep counter order, and messages keep the order they were sent in.

interface EnqueueStore {
  outgoingEnqueueCombi (subs: unknown[], packet: unknown): Promise<unknown>
}

export function orderEnqueueCompletions (persistence: EnqueueStore): void {
  const enqueue = persistence.outgoingEnqueueCombi.bind(persistence)
  let previous: Promise<unknown> = Promise.resolve()
  persistence.outgoingEnqueueCombi = (subs, packet) => {
    const before = previous
    const ordered = enqueue(subs, packet).then(
      (value) => before.then(() => value),
      (error: unknown) => before.then(() => { throw error })
    )
    previous = ordered.catch(() => {})
    return ordered
  }
}

interface UpdateStore {
  outgoingUpdate (client: { id: string }, packet: unknown): Promise<unknown>
}

/**
 * The same for the step just before each live write to a client: its
 * updates resolve in the order they started, so a client receives packets
 * in the order they were emitted.
 */
export function orderOutgoingUpdates (persistence: UpdateStore): void {
  const update = persistence.outgoingUpdate.bind(persistence)
  const tails = new Map<string, Promise<unknown>>()
  persistence.outgoingUpdate = (client, packet) => {
    const before = tails.get(client.id) ?? Promise.resolve()
    const ordered = update(client, packet).then(
      (value) => before.then(() => value),
      (error: unknown) => before.then(() => { throw error })
    )
    const tail = ordered.catch(() => {})
    tails.set(client.id, tail)
    void tail.then(() => { if (tails.get(client.id) === tail) tails.delete(client.id) })
    return ordered
  }
}
