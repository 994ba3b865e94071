// Every Redis key of the product, named in one place so that all of one
// owner's keys share a hash tag and therefore one Redis Cluster slot:
//   inboxd:<family>:{u:<user>}:<name>    a user's keys (log, cursors, blocks, presence, devices, keys…)
//   inboxd:<family>:{g:<group>}:<name>   a group's keys
//   inboxd:<family>:{n:<node>}:<name>    a server process's keys
//   inboxd:<family>:{a:<id>}:<name>      an attachment's keys (its record, grants, upload lock)
// A script may touch only keys of one owner (one tag), declared in KEYS: that
// is what lets it run on a cluster, where one slot lives on one primary.
// User, group and node ids never contain `{` or `}` (protocol/identity.ts).
import calculateSlot from 'cluster-key-slot'

export const SLOTS = 16_384

export const userTag = (user: string): string => `{u:${user}}`
export const groupTag = (group: string): string => `{g:${group}}`
export const nodeTag = (node: string): string => `{n:${node}}`
export const attachmentTag = (id: string): string => `{a:${id}}`
/** The one index of attachments by expiry (attachments/redis-attachment-meta.ts), a slot of its own. */
export const ATTACHMENT_INDEX = 'inboxd:att:{attachments}:x'

/** `inboxd:<family>:<tag>:<name>`, or `inboxd:<family>:<tag>` without a name. */
export function ownerKey (family: string, tag: string, name?: string): string {
  return name === undefined ? `inboxd:${family}:${tag}` : `inboxd:${family}:${tag}:${name}`
}

/** The cluster slot of a key (by its hash tag when it has one). */
export function slotOf (key: string): number {
  return calculateSlot(key)
}

let tags: string[] | undefined
/**
 * A hash tag for every slot (`tagOfSlot(s)` hashes to slot `s`): for keys that
 * must sit beside an owner's keys without naming the owner, e.g. a per-slot
 * index of owners with pending work.
 */
export function tagOfSlot (slot: number): string {
  if (tags === undefined) {
    const found: string[] = new Array(SLOTS)
    let missing = SLOTS
    for (let i = 0; missing > 0; i++) {
      const tag = `{s:${i.toString(36)}}`
      const s = calculateSlot(tag)
      if (found[s] === undefined) { found[s] = tag; missing-- }
    }
    tags = found
  }
  return tags[slot]!
}

/** Items grouped by the slot of their key, in first-seen order: one script call per group on a cluster. */
export function bySlot<T> (items: Iterable<T>, keyOf: (item: T) => string): T[][] {
  const groups = new Map<number, T[]>()
  for (const item of items) {
    const slot = slotOf(keyOf(item))
    const group = groups.get(slot)
    if (group === undefined) groups.set(slot, [item])
    else group.push(item)
  }
  return [...groups.values()]
}

/** A user's live connections (clientId → `<node>|<token>`), kept by presence/redis-presence.ts and read by the log feed and the cursor script. */
export const presenceConnectionsKey = (user: string): string => ownerKey('presence', userTag(user), 'p')

/**
 * Which user's device holds a push token (`<user>:<deviceId>`): looked up by
 * the token alone, so the token is its own owner (`{t:<token>}`; tokens are
 * hex or `[A-Za-z0-9_.:-]`, never a brace). Read and written one key at a time.
 */
export const pushTokenKey = (token: string): string => ownerKey('devices', `{t:${token}}`)
