// Key names of the Redis group store, in one place so the scheme can be
// switched whole. A group's keys share `{g:<group>}` (one slot: every group
// script declares only those); a member's keys are the per-user log's
// (history/redis-history.ts reads them), all under `{u:<user>}` in the
// scheme of issue #20.
//   CLUSTER_KEYS  the #20 names (docs/names): inboxd:g:{g:<group>}:<name>, inboxd:h:{u:<user>}:<name>
//   LEGACY_KEYS   the names redis-history.ts on this branch still reads
//                 (inboxd:g:<group>:<name>, inboxd:h:<user>:<name>): single Redis only.
// Once the per-user log moves to the #20 names, CLUSTER_KEYS is the only scheme.
import { groupTag, ownerKey, slotOf, tagOfSlot, userTag } from '../storage/redis-keys.ts'

export interface GroupKeys {
  group (group: string, name: string): string
  member (user: string, name: string): string
  /** The index of groups with a fan-out pending: in the group's slot (per slot), or one key on a single Redis. */
  pending (group: string): string
  /** Every pending index (for the sweeper): one, or one per slot. */
  pendingKeys (): string[]
}

/** One index per slot (cluster) or one for all (single Redis). */
function pendingIndex (groupKeyOf: (group: string) => string, perSlot: boolean): Pick<GroupKeys, 'pending' | 'pendingKeys'> {
  if (!perSlot) return { pending: () => 'inboxd:gf:pending', pendingKeys: () => ['inboxd:gf:pending'] }
  let all: string[] | undefined
  return {
    pending: (group) => ownerKey('gf', tagOfSlot(slotOf(groupKeyOf(group))), 'pending'),
    pendingKeys: () => (all ??= Array.from({ length: 16_384 }, (_, slot) => ownerKey('gf', tagOfSlot(slot), 'pending')))
  }
}

export function clusterKeys (perSlot: boolean): GroupKeys {
  const group = (id: string, name: string): string => ownerKey('g', groupTag(id), name)
  return { group, member: (user, name) => ownerKey('h', userTag(user), name), ...pendingIndex((id) => group(id, 'seq'), perSlot) }
}

/** The one function the member-log writes go through on this branch (until redis-history.ts moves to `{u:<user>}`). */
export const legacyMemberKey = (user: string, name: string): string => `inboxd:h:${user}:${name}`

export const LEGACY_KEYS: GroupKeys = {
  group: (id, name) => `inboxd:g:${id}:${name}`,
  member: legacyMemberKey,
  ...pendingIndex(() => '', false)
}
