// Moves a single Redis's data from the key names before #20 to the owner-
// tagged ones (storage/redis-keys.ts), so an upgrade keeps every user's
// history, cursors, groups, blocks, push registrations, keys and marks.
// Run with every server stopped (`npm run migrate:redis`; it refuses to
// start while a server's presence heartbeat is alive): nothing then writes
// beside it, and nothing is in flight under the old names (the old scripts
// wrote both logs at once, so outboxes start empty).
//
// Idempotent and resumable: every write is either a RENAMENX (atomic: a key
// is under one name or the other), a write whose repeat changes nothing
// (HSETNX, a max), or one script per owner; what must exist before an old
// key goes (a user's `rids`, built from the old `log`) is written first. A run
// killed anywhere and run again ends in the same state as one run.
//
// A new name that already holds data means the new version ran on this Redis
// before (or during) the migration. Then:
//   per-user log, groups: a user (group) whose `seq` exists under both names
//     has two seq spaces: it is refused whole; any other key whose new name
//     exists is refused alone. Refused keys stay under their old names, are
//     listed, and the run reports them (the CLI exits 2).
//   presence last state, push registrations, published keys: the new one is
//     newer and wins (the old one is dropped);
//   revocation marks: the later mark wins (it refuses more: what both did).
// Ids never contain `:`, `{` or `}` (protocol/identity.ts), so an old key
// splits at its first `:` after the family, and a key with `{` is new.
import type { Redis } from 'ioredis'
import type { RedisClient } from './redis-client.ts'
import { isCluster } from './redis-connection.ts'
import { groupTag, ownerKey, pushTokenKey, userTag } from './redis-keys.ts'
import { isValidId } from '../protocol/identity.ts'

export type Family = 'history' | 'groups' | 'presence' | 'devices' | 'revocations' | 'keys'
export const FAMILIES: Family[] = ['history', 'groups', 'presence', 'devices', 'revocations', 'keys']

export interface FamilyCounts {
  /** Old keys (or hash fields) now under their new name. */
  moved: number
  /** Old data merged into data already under the new name (the rule above). */
  merged: number
  /** Old keys removed without a copy (ephemeral, or superseded by newer data). */
  dropped: number
  /** Old keys left as they are on purpose (still read under the old name, or expiring). */
  kept: number
  /** Old keys refused (listed in `refused`). */
  refused: number
}

export interface MigrationResult {
  counts: Record<Family, FamilyCounts>
  /** Entries written to users' `rids` (a received 1:1 message's seq by `<from>|<id>`). */
  rids: number
  /** One line per refused key (or owner), saying why. */
  refused: string[]
  /** Write commands sent. */
  writes: number
}

export interface MigrationOptions {
  /** SCAN COUNT and pipeline size. */
  batch?: number
  /** Progress lines (a line per family and every 10,000 keys). */
  progress?: (line: string) => void
  /** Tests: stop (throw Interrupted) after this many write commands reached Redis, as a kill would. */
  writeBudget?: number
}

export class Interrupted extends Error {
  override name = 'Interrupted'
}

/** The per-user log's key names (history/redis-scripts.ts, redis-group-scripts.ts). */
const USER_NAMES = new Set(['seq', 'ev', 'log', 'convs', 'ids', 'read', 'dlv', 'readby', 'dlvby', 'blocks', 'cur', 'groups', 'gm', 'gres'])
const isUserName = (name: string): boolean => USER_NAMES.has(name) ||
  (/^(c|in):(g:)?[^:]+$/.test(name) && isValidId(name.slice(name.lastIndexOf(':') + 1)))
/** A group's key names (history/redis-group-scripts.ts). */
const GROUP_NAMES = new Set(['info', 'm', 'j', 'seq', 'ev', 'gids', 'low', 'read', 'dlv', 'mute', 'fanned', 'fm'])

/** Revocation mark: the later one, with the old key's expiry if it had one. KEYS: old, new. */
const MOVE_MAX = `
local old = redis.call('GET', KEYS[1])
if not old then return 0 end
local current = redis.call('GET', KEYS[2])
local merged = 0
if current then merged = 1 end
if not current or tonumber(old) > tonumber(current) then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then redis.call('SET', KEYS[2], old, 'PX', ttl) else redis.call('SET', KEYS[2], old) end
end
redis.call('DEL', KEYS[1])
return 1 + merged
`

/**
 * One user's push registrations, in one step. KEYS: old hash, new devices, new tokens, then a
 * token key per device. ARGV: user, then per device: deviceId, token, JSON (as stored).
 * A device already registered under the new names, or whose token another device holds now,
 * is newer: the old one is dropped. Returns {moved, dropped}.
 */
const MOVE_DEVICES = `
local moved, dropped = 0, 0
for i = 2, #ARGV, 3 do
  local device, token, json = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local tokenKey = KEYS[3 + (i + 1) / 3]
  local holder = ARGV[1] .. ':' .. device
  local current = redis.call('GET', tokenKey)
  if redis.call('HEXISTS', KEYS[2], device) == 1 or (current and current ~= holder) then
    dropped = dropped + 1
  else
    redis.call('SET', tokenKey, holder)
    redis.call('HSET', KEYS[3], token, device)
    redis.call('HSET', KEYS[2], device, json)
    moved = moved + 1
  end
end
redis.call('DEL', KEYS[1])
return {moved, dropped}
`

/** A published key: the new one, if any, is newer. KEYS: old hash, new key. ARGV: user, JSON. */
const MOVE_PUBLISHED_KEY = `
local set = redis.call('SET', KEYS[2], ARGV[2], 'NX')
redis.call('HDEL', KEYS[1], ARGV[1])
if set then return 1 end
return 0
`

type Command = [name: string, args: Array<string | number>]

/** Writes go out in pipelines; with a budget, only that many reach Redis (then Interrupted). */
class Writes {
  readonly #redis: Redis
  #budget: number
  sent = 0
  constructor (redis: Redis, budget: number) {
    this.#redis = redis
    this.#budget = budget
  }

  /** Sends the commands in order; returns each reply (an Error for a failed one). */
  async send (commands: Command[]): Promise<unknown[]> {
    if (commands.length === 0) return []
    const allowed = commands.slice(0, Math.max(0, this.#budget))
    this.#budget -= allowed.length
    this.sent += allowed.length
    const pipeline = this.#redis.pipeline()
    for (const [name, args] of allowed) pipeline.call(name, ...args)
    const replies = allowed.length === 0 ? [] : (await pipeline.exec())!.map(([error, reply]) => error ?? reply)
    if (allowed.length < commands.length) throw new Interrupted(`interrupted after ${allowed.length} of ${commands.length} writes of a batch`)
    return replies
  }
}

async function * scan (redis: Redis, pattern: string, count: number): AsyncGenerator<string[]> {
  let cursor = '0'
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', count)
    cursor = next
    if (keys.length > 0) yield keys
  } while (cursor !== '0')
}

const zero = (): FamilyCounts => ({ moved: 0, merged: 0, dropped: 0, kept: 0, refused: 0 })

/** `<prefix><owner>:<name>` → owner and name (owners never contain `:`). */
function split (key: string, prefix: string): { owner: string, name: string } | undefined {
  const rest = key.slice(prefix.length)
  const colon = rest.indexOf(':')
  if (colon <= 0) return undefined
  return { owner: rest.slice(0, colon), name: rest.slice(colon + 1) }
}

const isNoSuchKey = (reply: unknown): boolean => reply instanceof Error && /no such key/i.test(reply.message)

/**
 * Moves every pre-#20 key of a single Redis to its #20 name. Refuses a
 * cluster (it never held the old names). Returns counts per family.
 */
export async function migrateRedisKeys (client: RedisClient, options: MigrationOptions = {}): Promise<MigrationResult> {
  if (isCluster(client)) throw new Error('a Redis Cluster never held the old key names: nothing to migrate (this is for one Redis, REDIS_URL)')
  const redis = client as Redis
  await refuseWhileServersRun(redis)
  const batch = options.batch ?? 500
  const progress = options.progress ?? (() => {})
  const writes = new Writes(redis, options.writeBudget ?? Infinity)
  const counts = Object.fromEntries(FAMILIES.map((family) => [family, zero()])) as Record<Family, FamilyCounts>
  const refused: string[] = []
  const result: MigrationResult = { counts, rids: 0, refused, writes: 0 }

  function refuse (family: Family, line: string, keys = 1): void {
    counts[family].refused += keys
    refused.push(line)
    progress(`refused: ${line}`)
  }

  const seen = new Map<Family, number>()
  function tick (family: Family, n: number): void {
    const before = seen.get(family) ?? 0
    seen.set(family, before + n)
    if (Math.floor((before + n) / 10_000) > Math.floor(before / 10_000)) progress(`${family}: ${before + n} keys looked at`)
  }

  /** RENAMENX each (old, new); a new name already taken is refused (the old key stays). */
  async function renames (family: Family, pairs: Array<[string, string]>): Promise<void> {
    const replies = await writes.send(pairs.map(([from, to]) => ['RENAMENX', [from, to]]))
    replies.forEach((reply, i) => {
      const [from, to] = pairs[i]!
      if (reply === 1) counts[family].moved++
      else if (reply === 0) refuse(family, `${from}: ${to} already exists (written by the new version?); left under the old name`)
      else if (!isNoSuchKey(reply)) throw reply // a key SCAN returned twice is already moved
    })
  }

  /**
   * Owners (users, groups) whose keys are under `prefix`: an owner whose `seq` exists under
   * both names has two seq spaces and is refused whole; the others' keys are renamed.
   */
  async function moveOwned (family: 'history' | 'groups', prefix: string, newKey: (owner: string, name: string) => string,
    isName: (name: string) => boolean, beforeRename: (owners: Map<string, string[]>) => Promise<void>): Promise<void> {
    for await (const keys of scan(redis, `${prefix}[^{]*`, batch)) {
      tick(family, keys.length)
      const owners = new Map<string, string[]>()
      for (const key of keys) {
        const parts = split(key, prefix)
        if (parts === undefined || !isValidId(parts.owner) || !isName(parts.name)) {
          counts[family].kept++
          progress(`${family}: ${key} is not a key this migration knows; left as is`)
          continue
        }
        const names = owners.get(parts.owner)
        if (names === undefined) owners.set(parts.owner, [parts.name])
        else names.push(parts.name)
      }
      const list = [...owners.keys()]
      const pipeline = redis.pipeline()
      for (const owner of list) pipeline.exists(`${prefix}${owner}:seq`).exists(newKey(owner, 'seq'))
      const exists = (await pipeline.exec())!.map(([, reply]) => reply)
      list.forEach((owner, i) => {
        if (exists[2 * i] === 1 && exists[2 * i + 1] === 1) {
          const names = owners.get(owner)!
          owners.delete(owner)
          refuse(family, `${family === 'history' ? 'user' : 'group'} ${owner}: ${newKey(owner, 'seq')} exists beside ${prefix}${owner}:seq ` +
            `(the new version wrote for them before the migration: two seq spaces); its ${names.length} old keys in this batch left as they are`, names.length)
        }
      })
      await beforeRename(owners)
      await renames(family, [...owners].flatMap(([owner, names]) => names.map((name): [string, string] => [`${prefix}${owner}:${name}`, newKey(owner, name)])))
    }
  }

  // Per-user log: `rids` (new in #20) from each old log's incoming 1:1 messages, before that log moves.
  progress('history: per-user logs, cursors, blocks, group memberships')
  const userKey = (user: string, name: string): string => ownerKey('h', userTag(user), name)
  await moveOwned('history', 'inboxd:h:', userKey, isUserName, async (owners) => {
    for (const [user, names] of owners) {
      if (!names.includes('log')) continue
      for (let start = 0; ; start += batch) {
        const metas = await redis.zrange(`inboxd:h:${user}:log`, start, start + batch - 1)
        const commands: Command[] = []
        for (const meta of metas) {
          // seq|ts|peer|kind|dir|id|peerSeq
          const [seq, , peer, kind, dir, id] = meta.split('|')
          if (kind === 'm' && dir === 'in' && peer !== undefined && !peer.startsWith('g:')) commands.push(['HSETNX', [userKey(user, 'rids'), `${peer}|${id}`, seq!]])
        }
        result.rids += (await writes.send(commands)).filter((reply) => reply === 1).length
        if (metas.length < batch) break
      }
    }
  })
  progress(`history: ${line(counts.history)}; rids entries written: ${result.rids}`)

  progress('groups: group logs, members, marks')
  await moveOwned('groups', 'inboxd:g:', (group, name) => ownerKey('g', groupTag(group), name), (name) => GROUP_NAMES.has(name), async () => {})
  progress(`groups: ${line(counts.groups)}`)

  // Presence: connections and heartbeats are of processes now stopped; the last state (lastSeen) moves.
  progress('presence: last states (connections and heartbeats of stopped processes are dropped)')
  for await (const keys of scan(redis, 'inboxd:presence:[^{]*', batch)) {
    tick('presence', keys.length)
    const pairs: Array<[string, string]> = []
    const drops: string[] = []
    for (const key of keys) {
      const parts = split(key, 'inboxd:presence:')
      if (key === 'inboxd:presence:nodes') continue // the same name in both: a stopped node in it is swept at start
      if (parts?.owner === 'ps' && isValidId(parts.name)) pairs.push([key, ownerKey('presence', userTag(parts.name), 'ps')])
      else if (parts !== undefined && ['p', 'node', 'conns'].includes(parts.owner)) drops.push(key)
      else { counts.presence.kept++; progress(`presence: ${key} is not a key this migration knows; left as is`) }
    }
    const replies = await writes.send(pairs.map(([from, to]) => ['RENAMENX', [from, to]]))
    // A state already under the new name is newer (the user connected since): the old one goes.
    replies.forEach((reply, i) => {
      if (reply === 1) counts.presence.moved++
      else if (reply === 0) drops.push(pairs[i]![0])
      else if (!isNoSuchKey(reply)) throw reply
    })
    counts.presence.dropped += (await writes.send(drops.map((key) => ['DEL', [key]]))).filter((reply) => reply === 1).length
  }
  progress(`presence: ${line(counts.presence)}`)

  // Push registrations: each user's hash in one script; then the old token index, now unread.
  progress('devices: push registrations')
  for await (const keys of scan(redis, 'inboxd:devices:[^{]*', batch)) {
    tick('devices', keys.length)
    const users: Array<{ key: string, user: string }> = []
    for (const key of keys) {
      const rest = key.slice('inboxd:devices:'.length)
      if (rest.startsWith('token:')) continue // below, once every registration has moved
      if (isValidId(rest)) users.push({ key, user: rest })
      else { counts.devices.kept++; progress(`devices: ${key} is not a key this migration knows; left as is`) }
    }
    const read = redis.pipeline()
    for (const { key } of users) read.hgetall(key)
    const hashes = users.length === 0 ? [] : (await read.exec())!.map(([, reply]) => reply as Record<string, string>)
    const commands: Command[] = []
    users.forEach(({ key, user }, i) => {
      const devices: Array<{ deviceId: string, token: string, json: string }> = []
      for (const [deviceId, json] of Object.entries(hashes[i]!)) {
        const token = (JSON.parse(json) as { token?: unknown }).token
        if (typeof token === 'string') devices.push({ deviceId, token, json })
      }
      if (devices.length < Object.keys(hashes[i]!).length) {
        refuse('devices', `${key}: a registration without a token; left under the old name`)
        return
      }
      const names = [key, ownerKey('devices', userTag(user), 'd'), ownerKey('devices', userTag(user), 't'), ...devices.map(({ token }) => pushTokenKey(token))]
      commands.push(['EVAL', [MOVE_DEVICES, names.length, ...names, user, ...devices.flatMap(({ deviceId, token, json }) => [deviceId, token, json])]])
    })
    for (const reply of await writes.send(commands)) {
      if (reply instanceof Error) throw reply
      const [moved, dropped] = reply as [number, number]
      counts.devices.moved += moved
      counts.devices.dropped += dropped
    }
  }
  // Only now: every registration the old index named has been moved (or dropped as superseded).
  let tokenIndex = 0
  for await (const keys of scan(redis, 'inboxd:devices:token:*', batch)) {
    tokenIndex += (await writes.send(keys.map((key) => ['DEL', [key]]))).filter((reply) => reply === 1).length
  }
  progress(`devices: ${line(counts.devices)} (registrations; and ${tokenIndex} entries of the old token index dropped)`)

  // Revocations: a user's and a device's marks move; a logged-out token's mark names no user
  // (its key is the token's hash): it stays, still read under its old name until it expires.
  progress('revocations: user and device marks')
  for await (const keys of scan(redis, 'inboxd:rv:[^{]*', batch)) {
    tick('revocations', keys.length)
    const moves: Array<[string, string]> = []
    for (const key of keys) {
      const parts = split(key, 'inboxd:rv:')
      const device = parts?.owner === 'd' ? split(parts.name, '') : undefined
      if (parts?.owner === 't') counts.revocations.kept++
      else if (parts?.owner === 'u' && isValidId(parts.name)) moves.push([key, ownerKey('rv', userTag(parts.name), 'u')])
      else if (device !== undefined && isValidId(device.owner) && isValidId(device.name)) moves.push([key, ownerKey('rv', userTag(device.owner), `d:${device.name}`)])
      else { counts.revocations.kept++; progress(`revocations: ${key} is not a key this migration knows; left as is`) }
    }
    const replies = await writes.send(moves.map(([from, to]) => ['EVAL', [MOVE_MAX, 2, from, to]]))
    for (const reply of replies) {
      if (reply instanceof Error) throw reply
      if (reply === 1) counts.revocations.moved++
      else if (reply === 2) counts.revocations.merged++
    }
  }
  progress(`revocations: ${line(counts.revocations)} (kept: logged-out tokens' marks, read under the old name until they expire)`)

  // Published keys: one old hash, a key per user now.
  progress('keys: published public keys')
  let cursor = '0'
  do {
    const [next, flat] = await redis.hscan('inboxd:keys', cursor, 'COUNT', batch)
    cursor = next
    const commands: Command[] = []
    for (let i = 0; i < flat.length; i += 2) {
      const user = flat[i]!
      if (!isValidId(user)) { counts.keys.kept++; continue }
      commands.push(['EVAL', [MOVE_PUBLISHED_KEY, 2, 'inboxd:keys', ownerKey('keys', userTag(user)), user, flat[i + 1]!]])
    }
    tick('keys', commands.length)
    for (const reply of await writes.send(commands)) {
      if (reply instanceof Error) throw reply
      if (reply === 1) counts.keys.moved++
      else counts.keys.dropped++
    }
  } while (cursor !== '0')
  progress(`keys: ${line(counts.keys)}`)
  result.writes = writes.sent
  return result
}

/**
 * A server writing beside the migration would see keys half moved and write
 * under names the migration has passed: refused while any process's presence
 * heartbeat (old or new name) is alive. A heartbeat lapses 6 s after a crash;
 * a process that stops cleanly removes its own.
 */
async function refuseWhileServersRun (redis: Redis): Promise<void> {
  for (const pattern of ['inboxd:presence:node:*', 'inboxd:presence:{n:*}:alive']) {
    for await (const keys of scan(redis, pattern, 1_000)) {
      throw new Error(`a server process is running on this Redis (its heartbeat ${keys[0]} is alive): stop every server first, old and new version (a crashed one's heartbeat lapses within 6 s)`)
    }
  }
}

function line (counts: FamilyCounts): string {
  return `moved ${counts.moved}, merged ${counts.merged}, dropped ${counts.dropped}, kept ${counts.kept}, refused ${counts.refused}`
}

/** The counts as one line per family (what the CLI prints at the end). */
export function summary (result: MigrationResult): string[] {
  return [...FAMILIES.map((family) => `${family.padEnd(12)} ${line(result.counts[family])}`), `rids entries written: ${result.rids}`]
}
