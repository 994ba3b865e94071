// The hot tier as the archiver sees it, on one Redis or a cluster
// (history/archive-source.ts). Owners with events not archived sit in a
// pending index in their own slot (`inboxd:ar:pending`, or one per slot on a
// cluster: `inboxd:ar:{s:<slot>}:pending`), scored by when they began to wait;
// each owner's archive mark is `am` among its own keys, and `av` counts the
// marks of its writes (the archiver lets it go only if none came since it read). Partitions: one on a
// single Redis, 16 ranges of 1,024 slots on a cluster; the lease of a
// partition (`inboxd:ar:lease:<p>`) names the one process archiving it.
import { defineVariadicScript, type RedisClient } from '../storage/redis-client.ts'
import { groupTag, ownerKey, slotOf, SLOTS, tagOfSlot, userTag } from '../storage/redis-keys.ts'
import type { ArchiveSource, PendingOwner, RawGroupEntry, RawLogEntry } from './archive-source.ts'
import { parseMeta } from './history-store.ts'

/**
 * KEYS: a pending index, then each owner's `av` (the mark version; one slot). ARGV: now, then the owners.
 * Marks them pending unless they already are (the older wait stays), and bumps each one's version.
 */
const MARK_PENDING = `
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'NX', ARGV[1], ARGV[i])
  redis.call('INCR', KEYS[i])
end
return 1
`

/**
 * KEYS: am, seq (the owner's counter), the pending index, av. ARGV: owner, upTo, nextSince ('' if unknown), now, version.
 * Moves the mark forward; the owner leaves the index once the mark reaches its head and no write was
 * marked since the archiver read (else it stays, waiting since nextSince).
 */
const ARCHIVED = `
local mark = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), tonumber(ARGV[2]))
redis.call('SET', KEYS[1], mark)
if mark >= tonumber(redis.call('GET', KEYS[2]) or '0') and (redis.call('GET', KEYS[4]) or '') == ARGV[5] then
  redis.call('ZREM', KEYS[3], ARGV[1])
else
  local since = ARGV[3]
  if since == '' then since = ARGV[4] end
  redis.call('ZADD', KEYS[3], 'XX', since, ARGV[1])
end
return mark
`

/** KEYS: the lease. ARGV: holder, ttl ms. Takes a free lease or renews one's own; returns 1 if held. */
const CLAIM = `
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`

const PARTITIONS_ON_CLUSTER = 16
const SLOTS_PER_PARTITION = SLOTS / PARTITIONS_ON_CLUSTER
/**
 * Indexes of a cluster partition read per `pending` call in turn, besides the slots its dirty set
 * names: the sweep that finds what a lost hint left (a full pass over 1,024 takes 64 calls).
 */
const INDEXES_PER_CALL = 16

/**
 * On a cluster, the slots of a partition where logs were marked lately (`inboxd:ar:{d:<p>}:slots`):
 * a hint, sent with each mark but not ordered with it, so the archiver reads those slots' indexes
 * first instead of all 1,024 in turn. A hint lost (a process dying between the two) costs only time.
 */
const dirtySlotsKey = (partition: number): string => `inboxd:ar:{d:${partition}}:slots`

interface Scripted {
  archiveMarkPending (...args: Array<string | number>): Promise<number>
  archiveArchived (...args: Array<string | number>): Promise<number>
  archiveClaim (key: string, holder: string, ttlMs: number): Promise<number>
}

/** The key of an owner's `name` (`u:<user>` → `inboxd:h:{u:<user>}:<name>`, `g:<group>` → `inboxd:g:{g:<group>}:<name>`). */
export function archiveOwnerKey (owner: string, name: string): string {
  const id = owner.slice(2)
  return owner.startsWith('g:') ? ownerKey('g', groupTag(id), name) : ownerKey('h', userTag(id), name)
}

/** Marks owners pending ahead of their writes: what every Redis store that writes a log calls, just before the write's script. */
export class RedisArchiveMarks {
  readonly #redis: RedisClient & Scripted
  readonly #perSlot: boolean
  readonly #onError: (error: unknown) => void

  constructor (redis: RedisClient, onError: (error: unknown) => void = () => {}) {
    // Never auto-pipelined: sent at once, so it reaches Redis before the write that follows it on the same connection.
    defineVariadicScript(redis, 'archiveMarkPending', MARK_PENDING)
    this.#redis = redis as RedisClient & Scripted
    this.#perSlot = redis.isCluster
    this.#onError = onError
  }

  pendingKey (owner: string): string {
    return pendingIndex(owner, this.#perSlot)
  }

  /** Call right before the write's own command, in the same synchronous step. */
  mark (owners: string[]): void {
    const now = Date.now()
    const byIndex = new Map<string, string[]>()
    for (const owner of owners) {
      const key = this.pendingKey(owner)
      const list = byIndex.get(key)
      if (list === undefined) byIndex.set(key, [owner])
      else list.push(owner)
    }
    for (const [key, list] of byIndex) {
      this.#redis.archiveMarkPending(1 + list.length, key, ...list.map((owner) => archiveOwnerKey(owner, 'av')), now, ...list).catch(this.#onError)
    }
    if (this.#perSlot) {
      const slots = new Set(owners.map((owner) => slotOf(archiveOwnerKey(owner, 'seq'))))
      for (const slot of slots) this.#redis.sadd(dirtySlotsKey(Math.floor(slot / SLOTS_PER_PARTITION)), slot).catch(this.#onError)
    }
  }
}

function pendingIndex (owner: string, perSlot: boolean): string {
  return perSlot ? ownerKey('ar', tagOfSlot(slotOf(archiveOwnerKey(owner, 'seq'))), 'pending') : 'inboxd:ar:pending'
}

function ownersOf (found: string[][], limit: number): PendingOwner[] {
  const owners: PendingOwner[] = []
  for (const flat of found) for (let i = 0; i < flat.length; i += 2) owners.push({ owner: flat[i]!, since: Number(flat[i + 1]) })
  return owners.sort((a, b) => a.since - b.since).slice(0, limit)
}

export class RedisArchiveSource implements ArchiveSource {
  readonly #redis: RedisClient & Scripted
  readonly #perSlot: boolean
  readonly partitions: number
  readonly #next: number[]

  constructor (redis: RedisClient) {
    redis.defineCommand('archiveArchived', { numberOfKeys: 4, lua: ARCHIVED })
    redis.defineCommand('archiveClaim', { numberOfKeys: 1, lua: CLAIM })
    this.#redis = redis as RedisClient & Scripted
    this.#perSlot = redis.isCluster
    this.partitions = this.#perSlot ? PARTITIONS_ON_CLUSTER : 1
    this.#next = new Array(this.partitions).fill(0)
  }

  /** Takes or renews the lease of a partition for `holder`; false while another holds it. */
  async claim (partition: number, holder: string, ttlMs: number): Promise<boolean> {
    return await this.#redis.archiveClaim(`inboxd:ar:lease:${partition}`, holder, ttlMs) === 1
  }

  /** The slots whose indexes a call reads: the dirty ones (taken), then the next few in turn. */
  async #slots (partition: number): Promise<number[]> {
    const start = partition * SLOTS_PER_PARTITION
    const sweep = Array.from({ length: INDEXES_PER_CALL }, (_, i) => start + (this.#next[partition]! + i) % SLOTS_PER_PARTITION)
    this.#next[partition] = (this.#next[partition]! + INDEXES_PER_CALL) % SLOTS_PER_PARTITION
    const dirty = (await this.#redis.spop(dirtySlotsKey(partition), SLOTS_PER_PARTITION)).map(Number)
    return [...new Set([...dirty, ...sweep])]
  }

  async pending (partition: number, limit: number): Promise<PendingOwner[]> {
    if (!this.#perSlot) return ownersOf([await this.#redis.zrange('inboxd:ar:pending', 0, limit - 1, 'WITHSCORES')], limit)
    const slots = await this.#slots(partition)
    const found = await Promise.all(slots.map((slot) => this.#redis.zrange(ownerKey('ar', tagOfSlot(slot), 'pending'), 0, limit - 1, 'WITHSCORES')))
    // A slot with owners left stays dirty: the next call reads it again (it may hold more than this call takes).
    const busy = slots.filter((_, i) => found[i]!.length > 0)
    if (busy.length > 0) await this.#redis.sadd(dirtySlotsKey(partition), ...busy)
    return ownersOf(found, limit)
  }

  async oldestPending (): Promise<number | undefined> {
    if (this.#perSlot) return undefined // 16,384 indexes: the archiver reports the oldest it saw instead
    const [, score] = await this.#redis.zrange('inboxd:ar:pending', 0, 0, 'WITHSCORES')
    return score === undefined ? undefined : Number(score)
  }

  async readUser (user: string, after: number, limit: number): Promise<RawLogEntry[]> {
    const metas = await this.#redis.zrangebyscore(archiveOwnerKey(`u:${user}`, 'log'), `(${after}`, '+inf', 'LIMIT', 0, limit)
    if (metas.length === 0) return []
    const parsed = metas.map(parseMeta)
    const values = await this.#redis.hmget(archiveOwnerKey(`u:${user}`, 'ev'), ...parsed.map(({ seq }) => String(seq)))
    const entries: RawLogEntry[] = []
    parsed.forEach((meta, i) => { const value = values[i]; if (typeof value === 'string') entries.push({ meta, value }) })
    return entries
  }

  async readGroup (group: string, after: number, limit: number): Promise<RawGroupEntry[]> {
    const owner = `g:${group}`
    const head = Number(await this.#redis.get(archiveOwnerKey(owner, 'seq')) ?? 0)
    const last = Math.min(head, after + limit)
    if (last <= after) return []
    const gseqs = Array.from({ length: last - after }, (_, i) => String(after + 1 + i))
    const tails = await this.#redis.hmget(archiveOwnerKey(owner, 'ev'), ...gseqs)
    const entries: RawGroupEntry[] = []
    tails.forEach((tail, i) => { if (typeof tail === 'string') entries.push({ gseq: after + 1 + i, tail }) })
    return entries
  }

  async userEvent (user: string, seq: number): Promise<string | undefined> {
    return (await this.#redis.hget(archiveOwnerKey(`u:${user}`, 'ev'), String(seq))) ?? undefined
  }

  async groupEvent (group: string, gseq: number): Promise<string | undefined> {
    return (await this.#redis.hget(archiveOwnerKey(`g:${group}`, 'ev'), String(gseq))) ?? undefined
  }

  async archived (owner: string, upTo: number, version: string, nextSince: number | undefined): Promise<void> {
    await this.#redis.archiveArchived(archiveOwnerKey(owner, 'am'), archiveOwnerKey(owner, 'seq'), pendingIndex(owner, this.#perSlot), archiveOwnerKey(owner, 'av'),
      owner, upTo, nextSince ?? '', Date.now(), version)
  }

  async position (owner: string): Promise<{ upTo: number, version: string }> {
    const [upTo, version] = await this.#redis.mget(archiveOwnerKey(owner, 'am'), archiveOwnerKey(owner, 'av'))
    return { upTo: Number(upTo ?? 0), version: version ?? '' }
  }

  async archivedUpTo (owner: string): Promise<number> {
    return Number(await this.#redis.get(archiveOwnerKey(owner, 'am')) ?? 0)
  }
}
