// Key names of the Redis history and group stores, in one place. A group's
// keys share `{g:<group>}` (one slot: every group script declares only
// those); a user's log keys share `{u:<user>}` (history/redis-log.ts, redis-cursors.ts, redis-blocks.ts);
// the indexes of pending work (group fan-outs, 1:1 relays) sit in the slot of
// the owner they list: one index per slot on a cluster, one key on a single Redis.
//   inboxd:g:{g:<group>}:<name>   inboxd:h:{u:<user>}:<name>
//   inboxd:gf:pending | inboxd:gf:{s:<slot>}:pending   groups with a fan-out pending
//   inboxd:rf:pending | inboxd:rf:{s:<slot>}:pending   users with relay items pending
import { groupTag, ownerKey, slotOf, tagOfSlot, userTag } from '../storage/redis-keys.ts'

export interface GroupKeys {
  group (group: string, name: string): string
  member (user: string, name: string): string
  /** The index of groups with a fan-out pending: in the group's slot (per slot), or one key on a single Redis. */
  pending (group: string): string
  /** Every pending index (for the sweeper): one, or one per slot. */
  pendingKeys (): string[]
  /** The index of users whose outbox has items for the relay, in the user's slot. */
  relayPending (user: string): string
  relayPendingKeys (): string[]
}

/** One index per slot (cluster) or one for all (single Redis). */
function pendingIndex (family: string, ownerKeyOf: (owner: string) => string, perSlot: boolean): { pending: (owner: string) => string, pendingKeys: () => string[] } {
  if (!perSlot) return { pending: () => `inboxd:${family}:pending`, pendingKeys: () => [`inboxd:${family}:pending`] }
  let all: string[] | undefined
  return {
    pending: (owner) => ownerKey(family, tagOfSlot(slotOf(ownerKeyOf(owner))), 'pending'),
    pendingKeys: () => (all ??= Array.from({ length: 16_384 }, (_, slot) => ownerKey(family, tagOfSlot(slot), 'pending')))
  }
}

/** `perSlot`: on a cluster (an index per slot); false on a single Redis. */
export function redisKeys (perSlot: boolean): GroupKeys {
  const group = (id: string, name: string): string => ownerKey('g', groupTag(id), name)
  const member = (user: string, name: string): string => ownerKey('h', userTag(user), name)
  const groups = pendingIndex('gf', (id) => group(id, 'seq'), perSlot)
  const relays = pendingIndex('rf', (user) => member(user, 'seq'), perSlot)
  return { group, member, ...groups, relayPending: relays.pending, relayPendingKeys: relays.pendingKeys }
}
