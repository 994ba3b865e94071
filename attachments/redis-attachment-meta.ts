// Redis mode's attachment records. Each script touches one owner's keys, so
// it runs on a cluster: the record `inboxd:att:{a:<id>}` (a hash) and its
// grants `inboxd:att:{a:<id>}:g` (a set of `u:<user>` / `g:<group>`); the
// owner's quota `inboxd:attq:{u:<owner>}` (upload id → bytes, `=` → total);
// and one collection index `inboxd:att:{attachments}:x` (a sorted set of
// `<owner>/<id>` by expiry). A create writes the index first and the record
// last, so a process that dies between the steps leaves an entry the sweep
// collects; every step is safe to repeat.
import type { RedisClient } from '../storage/redis-client.ts'
import { ATTACHMENT_INDEX, attachmentTag, ownerKey, userTag } from '../storage/redis-keys.ts'
import type { AttachmentMetaStore, AttachmentRecord, CreateOutcome, Expiring, Grant, GrantOutcome, NewAttachment } from './attachment-meta.ts'

const recordKey = (id: string): string => ownerKey('att', attachmentTag(id))
const grantsKey = (id: string): string => ownerKey('att', attachmentTag(id), 'g')
const quotaKey = (owner: string): string => ownerKey('attq', userTag(owner))
const INDEX = ATTACHMENT_INDEX
const member = (owner: string, id: string): string => `${owner}/${id}`

const RESERVE = `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 1 end
local total = tonumber(redis.call('HGET', KEYS[1], '=') or '0')
local quota = tonumber(ARGV[3])
if quota > 0 and total + tonumber(ARGV[2]) > quota then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[1], '=', ARGV[2])
return 1`

const RELEASE = `
local size = redis.call('HGET', KEYS[1], ARGV[1])
if not size then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HINCRBY', KEYS[1], '=', -tonumber(size))
return 1`

const CREATE = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'size', ARGV[2], 'type', ARGV[3], 'createdAt', ARGV[4], 'expiresAt', ARGV[5], 'complete', '0')
return 1`

const COMPLETE = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'complete', '1')
return 1`

const GRANT = `
if redis.call('EXISTS', KEYS[1]) == 0 then return {'not_found', '0'} end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 0 then
  if redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[3]) then return {'too_many_grants', '0'} end
  redis.call('SADD', KEYS[2], ARGV[1])
end
local current = redis.call('HGET', KEYS[1], 'expiresAt')
if current ~= '0' and (ARGV[2] == '0' or tonumber(ARGV[2]) > tonumber(current)) then
  redis.call('HSET', KEYS[1], 'expiresAt', ARGV[2])
  current = ARGV[2]
end
return {'granted', current}`

const EXPIRE = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'expiresAt', ARGV[1])
return 1`

const REMOVE = `
local at = redis.call('HGET', KEYS[1], 'expiresAt')
if not at then return 'removed' end
if at == '0' or tonumber(at) > tonumber(ARGV[1]) then return at end
redis.call('DEL', KEYS[1], KEYS[2])
return 'removed'`

export class RedisAttachmentMeta implements AttachmentMetaStore {
  constructor (private readonly redis: RedisClient) {}

  async create (attachment: NewAttachment, quotaBytes: number): Promise<CreateOutcome> {
    const { id, owner, size, type, createdAt, expiresAt } = attachment
    await this.redis.zadd(INDEX, expiresAt, member(owner, id))
    if (await this.redis.eval(RESERVE, 1, quotaKey(owner), id, size, quotaBytes) === 0) {
      await this.redis.zrem(INDEX, member(owner, id))
      return 'quota_exceeded'
    }
    if (await this.redis.eval(CREATE, 1, recordKey(id), owner, size, type, createdAt, expiresAt) === 1) return 'created'
    // Someone else's id: what this call reserved and indexed for `owner` goes again.
    const existing = await this.get(id)
    if (existing?.owner !== owner) {
      await this.redis.eval(RELEASE, 1, quotaKey(owner), id)
      await this.redis.zrem(INDEX, member(owner, id))
    }
    return 'exists'
  }

  async get (id: string): Promise<AttachmentRecord | undefined> {
    const [record, grants] = await Promise.all([this.redis.hgetall(recordKey(id)), this.redis.smembers(grantsKey(id))])
    if (record.owner === undefined) return undefined
    return {
      id,
      owner: record.owner,
      size: Number(record.size),
      type: record.type!,
      createdAt: Number(record.createdAt),
      expiresAt: Number(record.expiresAt),
      complete: record.complete === '1',
      users: grants.filter((g) => g.startsWith('u:')).map((g) => g.slice(2)).sort(),
      groups: grants.filter((g) => g.startsWith('g:')).map((g) => g.slice(2)).sort()
    }
  }

  async complete (id: string): Promise<boolean> {
    return await this.redis.eval(COMPLETE, 1, recordKey(id)) === 1
  }

  async grant (id: string, grant: Grant, expiresAt: number, maxGrants: number): Promise<GrantOutcome> {
    const name = 'user' in grant ? `u:${grant.user}` : `g:${grant.group}`
    const [outcome, current] = await this.redis.eval(GRANT, 2, recordKey(id), grantsKey(id), name, expiresAt, maxGrants) as [GrantOutcome, string]
    if (outcome === 'granted') await this.#index(id, Number(current))
    return outcome
  }

  async #index (id: string, expiresAt: number): Promise<void> {
    const owner = await this.redis.hget(recordKey(id), 'owner')
    if (owner === null) return
    if (expiresAt === 0) await this.redis.zrem(INDEX, member(owner, id))
    else await this.redis.zadd(INDEX, expiresAt, member(owner, id))
  }

  async expireOwner (owner: string, now: number): Promise<number> {
    // The quota hash names every attachment the owner holds (and `=`, the total).
    const ids = (await this.redis.hkeys(quotaKey(owner))).filter((field) => field !== '=')
    let count = 0
    for (const id of ids) {
      if (await this.redis.eval(EXPIRE, 1, recordKey(id), now) === 1) count++
      await this.redis.zadd(INDEX, now, member(owner, id))
    }
    return count
  }

  async usage (owner: string): Promise<number> {
    return Number(await this.redis.hget(quotaKey(owner), '=') ?? 0)
  }

  async expired (now: number, limit: number): Promise<Expiring[]> {
    const flat = await this.redis.zrangebyscore(INDEX, '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
    const entries: Expiring[] = []
    for (let i = 0; i < flat.length; i += 2) {
      const [owner, id] = flat[i]!.split('/')
      entries.push({ id: id!, owner: owner!, at: Number(flat[i + 1]) })
    }
    return entries
  }

  async remove (entry: Expiring, now: number): Promise<'removed' | 'alive'> {
    const outcome = await this.redis.eval(REMOVE, 2, recordKey(entry.id), grantsKey(entry.id), now) as string
    if (outcome !== 'removed') {
      // A grant moved it; its own index update may not have landed yet.
      await this.#index(entry.id, Number(outcome))
      return 'alive'
    }
    await this.redis.eval(RELEASE, 1, quotaKey(entry.owner), entry.id)
    return 'removed'
  }

  async unindex (entry: Expiring): Promise<void> { await this.redis.zrem(INDEX, member(entry.owner, entry.id)) }

  async close (): Promise<void> {}
}
