// On every PUBACK, aedes-persistence-redis removes the packet from the
// device's queue with `LREM outgoing:<client> 0 <packet>`: count 0 scans the
// whole list for every occurrence. Draining a backlog acknowledges from the
// head, so each ack cost O(backlog) and a drain O(backlog²): 10k took 3.5 s,
// and 100k did not finish in 120 s. A packet is queued at most once per
// device (one subscription per inbox), so removing the first occurrence
// (count 1, found at the head) is equivalent, and O(1) in a drain.
import type { Redis } from 'ioredis'

const QUEUE_PREFIX = 'outgoing:'

export function removeAckedFromHead (redis: Redis): void {
  const lrem = redis.lrem.bind(redis) as (key: string, count: number, element: string) => Promise<number>
  ;(redis as unknown as { lrem: typeof lrem }).lrem = (key, count, element) =>
    lrem(key, count === 0 && key.startsWith(QUEUE_PREFIX) ? 1 : count, element)
}
