// Aedes numbers each publish (brokerCounter) when it starts, but emits it to
// online clients only after persistence has queued it; and each client drops
// any packet whose counter is not above the last one it was sent (Aedes'
// `dedupe`). A store that completes writes out of order (LevelDB does) thus
// makes live deliveries vanish until the next reconnect. This holds for any
// store, so it is enforced here, on whatever persistence the broker gets:
// the writes still run concurrently, but they resolve in the order they
// were started, so emits keep counter order, and each client receives
// packets in the order they were emitted.

/** `work`, settled no earlier than `before`: results come out in start order. */
function afterPrevious<T> (work: Promise<T>, before: Promise<unknown>): Promise<T> {
  return work.then(
    (value) => before.then(() => value),
    (error: unknown) => before.then(() => { throw error })
  )
}

interface OrderedStore {
  outgoingEnqueueCombi (subs: unknown[], packet: unknown): Promise<unknown>
  outgoingUpdate (client: { id: string }, packet: unknown): Promise<unknown>
}

export function orderDeliveries (persistence: OrderedStore): void {
  // Enqueue: one order for the whole broker, the order of brokerCounter.
  const enqueue = persistence.outgoingEnqueueCombi.bind(persistence)
  let lastEnqueue: Promise<unknown> = Promise.resolve()
  persistence.outgoingEnqueueCombi = (subs, packet) => {
    const ordered = afterPrevious(enqueue(subs, packet), lastEnqueue)
    lastEnqueue = ordered.catch(() => {})
    return ordered
  }

  // The step just before each live write: one order per client.
  const update = persistence.outgoingUpdate.bind(persistence)
  const lastUpdate = new Map<string, Promise<unknown>>()
  persistence.outgoingUpdate = (client, packet) => {
    const ordered = afterPrevious(update(client, packet), lastUpdate.get(client.id) ?? Promise.resolve())
    const tail = ordered.catch(() => {})
    lastUpdate.set(client.id, tail)
    void tail.then(() => { if (lastUpdate.get(client.id) === tail) lastUpdate.delete(client.id) })
    return ordered
  }
}
