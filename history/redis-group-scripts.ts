// Lua for groups on Redis. Every script touches one owner's keys, declared
// in KEYS (history/redis-group-keys.ts names them): the group's scripts
// only `{g:<group>}` keys, the member scripts only one slot's members' keys.
// Group keys:
//   info  hash name, meta, creator, createdAt, v (version)
//   m     hash member -> role            j   hash member -> gseq before they joined
//   seq   counter (gseq)                 ev  hash gseq -> event JSON without its `{`
//   gids  hash `<sender>|<id>` -> gseq (idempotency of messages)
//   low   the oldest gseq not yet removed by retention
//   read / dlv  hash member -> gseq      mute  hash member -> until
//   fanned  the highest gseq fanned out to every member's log
//   fm      set: the members as of `fanned` (who gets the next events)
// plus the pending index (a zset of groups with events past `fanned`, in the
// group's slot). Member keys (the per-user log): seq, ev, log, in:g:<group>,
// convs, ids, groups (the user's groups: what MAX_GROUPS_PER_USER bounds),
// gres (hash group -> expiry: places reserved for joins not yet fanned out),
// gm (hash group -> the highest gseq applied to this log: the fan-out's idempotency).
import { GROUP_TRIM_MAX } from './group-store.ts'
import { SCRUB } from './redis-scripts.ts'

// A group from before the fan-out step had every event fanned out with its write.
const ADOPT = `
local function adopt(fanned, fm, m, seq)
  if redis.call('EXISTS', fanned) == 1 then return end
  redis.call('SET', fanned, redis.call('GET', seq) or 0)
  local members = redis.call('HKEYS', m)
  for i = 1, #members, 1000 do redis.call('SADD', fm, unpack(members, i, math.min(i + 999, #members))) end
end
`

/** KEYS: info, m, j, seq, ev, fanned, pending. ARGV: group, creator, createdAt, name, meta, pre, post, now, then (user, role) pairs. */
export const GROUP_CREATE = `
if redis.call('EXISTS', KEYS[1]) == 1 then return {'exists'} end
redis.call('HSET', KEYS[1], 'name', ARGV[4], 'meta', ARGV[5], 'creator', ARGV[2], 'createdAt', ARGV[3], 'v', 1)
redis.call('SET', KEYS[6], 0)
local gseq = redis.call('INCR', KEYS[4])
redis.call('HSET', KEYS[5], gseq, ARGV[6] .. gseq .. ARGV[7])
for i = 9, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  redis.call('HSET', KEYS[3], ARGV[i], gseq - 1)
end
redis.call('ZADD', KEYS[7], 'NX', ARGV[8], ARGV[1])
return {'ok', gseq}
`

/**
 * KEYS: info, m, j, seq, ev, fanned, fm, pending.
 * ARGV: group, expectedVersion, pre, post, setName, name, setMeta, meta, replaceGseq ('' for none), replaceTail, now,
 * editOf, scrubEditsOf ('' for none), maxEdits, then n + n (user, role) pairs to upsert, n + n users to remove.
 * An edit's gseq is listed under the message's (ev field `e:<gseq>`); a recall cuts the body off each listed edit.
 */
export const GROUP_CHANGE = ADOPT + SCRUB + `
if redis.call('HGET', KEYS[1], 'v') ~= ARGV[2] then return {'stale'} end
local edits = ARGV[12] ~= '' and redis.call('HGET', KEYS[5], 'e:' .. ARGV[12]) or nil
if edits then
  local _, count = string.gsub(edits, '%d+', '')
  if count >= tonumber(ARGV[14]) then return {'too_many'} end
end
adopt(KEYS[6], KEYS[7], KEYS[2], KEYS[4])
redis.call('HINCRBY', KEYS[1], 'v', 1)
if ARGV[5] == '1' then redis.call('HSET', KEYS[1], 'name', ARGV[6]) end
if ARGV[7] == '1' then redis.call('HSET', KEYS[1], 'meta', ARGV[8]) end
-- A recall's tombstone, unless retention removed the event meanwhile.
if ARGV[9] ~= '' and redis.call('HEXISTS', KEYS[5], ARGV[9]) == 1 then redis.call('HSET', KEYS[5], ARGV[9], ARGV[10]) end
local gseq = redis.call('INCR', KEYS[4])
redis.call('HSET', KEYS[5], gseq, ARGV[3] .. gseq .. ARGV[4])
if ARGV[12] ~= '' then
  if edits then redis.call('HSET', KEYS[5], 'e:' .. ARGV[12], edits .. ',' .. gseq) else redis.call('HSET', KEYS[5], 'e:' .. ARGV[12], gseq) end
end
if ARGV[13] ~= '' then
  scrub(KEYS[5], redis.call('HGET', KEYS[5], 'e:' .. ARGV[13]))
  redis.call('HDEL', KEYS[5], 'e:' .. ARGV[13])
end
local i = 15
local n = tonumber(ARGV[i])
for j = 1, n do
  local user, role = ARGV[i + 2 * j - 1], ARGV[i + 2 * j]
  if not redis.call('HGET', KEYS[2], user) then redis.call('HSET', KEYS[3], user, gseq - 1) end
  redis.call('HSET', KEYS[2], user, role)
end
i = i + 2 * n + 1
for j = 1, tonumber(ARGV[i]) do
  redis.call('HDEL', KEYS[2], ARGV[i + j])
  redis.call('HDEL', KEYS[3], ARGV[i + j])
end
redis.call('ZADD', KEYS[8], 'NX', ARGV[11], ARGV[1])
return {'ok', gseq}
`

/** KEYS: m, seq, ev, gids, fanned, fm, pending. ARGV: group, from, id, pre, post, now. Durable in the group log: the fan-out follows. */
export const GROUP_MESSAGE = ADOPT + `
if not redis.call('HGET', KEYS[1], ARGV[2]) then return {'not_a_member'} end
local existing = redis.call('HGET', KEYS[4], ARGV[2] .. '|' .. ARGV[3])
if existing then return {'duplicate', tonumber(existing)} end
adopt(KEYS[5], KEYS[6], KEYS[1], KEYS[2])
local gseq = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[3], gseq, ARGV[4] .. gseq .. ARGV[5])
redis.call('HSET', KEYS[4], ARGV[2] .. '|' .. ARGV[3], gseq)
redis.call('ZADD', KEYS[7], 'NX', ARGV[6], ARGV[1])
return {'stored', gseq}
`

/**
 * KEYS: fanned, seq, ev, fm. ARGV: max. What the fan-out has to do:
 * {fanned, head, #members, members as of fanned..., then the tails of fanned+1.. (at most max; '' for one gone)}.
 */
export const FANOUT_READ = `
local fanned = tonumber(redis.call('GET', KEYS[1]) or '-1')
local head = tonumber(redis.call('GET', KEYS[2]) or '0')
-- No mark: a group from before the fan-out step, never written since: nothing pending.
if fanned < 0 then return {head, head, 0} end
local members = redis.call('SMEMBERS', KEYS[4])
local out = {fanned, head, #members}
for _, member in ipairs(members) do table.insert(out, member) end
local to = math.min(head, fanned + tonumber(ARGV[1]))
if to > fanned then
  local gseqs = {}
  for g = fanned + 1, to do table.insert(gseqs, g) end
  local tails = redis.call('HMGET', KEYS[3], unpack(gseqs))
  for i = 1, #gseqs do table.insert(out, tails[i] or '') end
end
return out
`

/**
 * KEYS: fanned, fm, seq, pending. ARGV: group, upTo, then per membership event: gseq, n, joining..., n, leaving...
 * Every member's log has the events up to upTo: moves `fanned` (forward only) and the members as of it;
 * drops the group from the pending index once nothing is left.
 */
export const FANOUT_DONE = `
local fanned = tonumber(redis.call('GET', KEYS[1]) or '0')
local upTo = tonumber(ARGV[2])
if upTo > fanned then
  local i = 3
  while i <= #ARGV do
    local apply = tonumber(ARGV[i]) > fanned
    local n = tonumber(ARGV[i + 1])
    for j = 1, n do if apply then redis.call('SADD', KEYS[2], ARGV[i + 1 + j]) end end
    i = i + 2 + n
    n = tonumber(ARGV[i])
    for j = 1, n do if apply then redis.call('SREM', KEYS[2], ARGV[i + j]) end end
    i = i + 1 + n
  end
  redis.call('SET', KEYS[1], upTo)
  fanned = upTo
end
if fanned >= tonumber(redis.call('GET', KEYS[3]) or '0') then redis.call('ZREM', KEYS[4], ARGV[1]) end
return fanned
`

/**
 * KEYS: per member (9 each): seq, ev, log, in:g:<group>, convs, groups, gm, ids, gres.
 * ARGV: group, member count, then per member: n, then n events of 7 fields (gseq, ts, kind, dir, id, op, unrecall).
 * Applies to each member's log the events past their mark, in gseq order (a repeat changes nothing).
 * Returns {member index, gseq, seq, ...} of what it applied.
 */
export const MEMBER_APPLY = `
local group = ARGV[1]
local peer = 'g:' .. group
local out = {}
local a = 3
for i = 1, tonumber(ARGV[2]) do
  local K = (i - 1) * 9
  local mark = tonumber(redis.call('HGET', KEYS[K + 7], group) or '0')
  local n = tonumber(ARGV[a])
  a = a + 1
  for _ = 1, n do
    local gseq, ts, kind, dir, id, op, unrecall = tonumber(ARGV[a]), ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], ARGV[a + 6]
    a = a + 7
    if gseq > mark then
      local seq = redis.call('INCR', KEYS[K + 1])
      redis.call('HSET', KEYS[K + 2], seq, '@' .. group .. '|' .. gseq)
      redis.call('ZADD', KEYS[K + 3], seq, seq .. '|' .. ts .. '|' .. peer .. '|' .. kind .. '|' .. dir .. '|' .. id .. '|' .. gseq)
      -- Scored by gseq, so unread counts and read marks of a group are in gseq.
      if kind == 'm' and dir == 'in' then redis.call('ZADD', KEYS[K + 4], gseq, seq) end
      -- A recalled message no longer counts as unread.
      if unrecall ~= '' then redis.call('ZREMRANGEBYSCORE', KEYS[K + 4], unrecall, unrecall) end
      redis.call('ZADD', KEYS[K + 5], seq, peer)
      if op == 'join' then
        redis.call('SADD', KEYS[K + 6], group)
        redis.call('HDEL', KEYS[K + 9], group)
      elseif op == 'leave' then
        redis.call('SREM', KEYS[K + 6], group)
      end
      -- The sender's record of the id, as for a 1:1 message (an id reused for a person conflicts); a 1:1 record is kept.
      if kind == 'm' and dir == 'out' then redis.call('HSETNX', KEYS[K + 8], id, seq .. '|' .. gseq .. '|' .. peer .. '|' .. ts .. '|') end
      mark = gseq
      table.insert(out, i)
      table.insert(out, gseq)
      table.insert(out, seq)
    end
  end
  redis.call('HSET', KEYS[K + 7], group, mark)
end
return out
`

/**
 * KEYS: groups, gres (one user's). ARGV: group, limit, now, ttlMs.
 * Reserves a place for joining `group` in the user's slot before the group's
 * change: 'member' (already in), 'held' (reserved before), 'new', or 'full'.
 * Places count the groups joined plus the live reservations.
 */
export const MEMBER_RESERVE = `
local group, limit, now = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
if redis.call('SISMEMBER', KEYS[1], group) == 1 then return 'member' end
local live, held = 0, false
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  if tonumber(all[i + 1]) <= now then redis.call('HDEL', KEYS[2], all[i])
  elseif all[i] == group then held = true
  else live = live + 1 end
end
local expiry = now + tonumber(ARGV[4])
if held then redis.call('HSET', KEYS[2], group, expiry) return 'held' end
if redis.call('SCARD', KEYS[1]) + live >= limit then return 'full' end
redis.call('HSET', KEYS[2], group, expiry)
return 'new'
`

/**
 * KEYS: read, in:g:<group>, seq, ev, log (the reader's). ARGV: peer, upTo, ts, receipt tail (without its seq).
 * The reader's own read mark (forward only) and their receipt event. Returns {status, previous, unread, event}.
 */
export const MEMBER_READ = `
local peer, upTo, ts = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local current = tonumber(redis.call('HGET', KEYS[1], peer) or '0')
local function unread() return redis.call('ZCOUNT', KEYS[2], '(' .. math.max(current, upTo), '+inf') end
if upTo <= current then return {'unchanged', current, unread(), false} end
redis.call('HSET', KEYS[1], peer, upTo)
local seq = redis.call('INCR', KEYS[3])
local event = '{"seq":' .. seq .. ',' .. ARGV[4]
redis.call('HSET', KEYS[4], seq, event)
redis.call('ZADD', KEYS[5], seq, seq .. '|' .. ts .. '|' .. peer .. '|r|out||0')
return {'changed', current, unread(), event}
`

/** KEYS: read, dlv (the group's). ARGV: user, upTo. The group's copy of a read mark: forward only, read implies delivered. */
export const GROUP_MARKS = `
local upTo = tonumber(ARGV[2])
if upTo > tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') then redis.call('HSET', KEYS[1], ARGV[1], upTo) end
if upTo > tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0') then redis.call('HSET', KEYS[2], ARGV[1], upTo) end
return 1
`

/** KEYS: dlv of each group (one slot). ARGV: (user, gseq) per key. Delivered marks, forward only. */
export const GROUP_DELIVERED = `
for i = 1, #KEYS do
  local user, gseq = ARGV[2 * i - 1], tonumber(ARGV[2 * i])
  if gseq > tonumber(redis.call('HGET', KEYS[i], user) or '0') then redis.call('HSET', KEYS[i], user, gseq) end
end
return 1
`

/**
 * KEYS: low, seq, ev, gids, fanned. ARGV: cutoff (ms), upTo (what the retention hook lets go).
 * Retention of a group log: drops its oldest events older than cutoff, up to upTo and never one
 * not yet fanned out nor the newest, at most ${GROUP_TRIM_MAX} a call. `low` is the oldest gseq that may
 * still exist. Members' entries for them go with their own logs' retention. Returns how many went.
 */
export const GROUP_TRIM = `
local cutoff = tonumber(ARGV[1])
local low = tonumber(redis.call('GET', KEYS[1]) or '1')
local head = tonumber(redis.call('GET', KEYS[2]) or '0')
local fanned = tonumber(redis.call('GET', KEYS[5]) or head)
local limit = math.min(tonumber(ARGV[2]), fanned, head - 1)
local n, removed = 0, 0
while low <= limit and n < ${GROUP_TRIM_MAX} do
  local tail = redis.call('HGET', KEYS[3], low)
  if tail then
    -- cjson refuses some valid JSON (a lone surrogate, "\\ud800", as JSON.stringify writes it):
    -- then ts is read where every event has it, right after gseq, before any user content.
    local ok, event = pcall(cjson.decode, '{' .. tail)
    local ts = ok and type(event) == 'table' and tonumber(event.ts) or nil
    if not ok then ts = tonumber(string.match(tail, '"gseq":%d+,"ts":(%d+)')) end
    if ts == nil or ts >= cutoff then break end
    redis.call('HDEL', KEYS[3], low)
    local id, from = string.match(tail, '^"type":"message","id":"([^"]+)","from":"([^"]+)"')
    if id then
      redis.call('HDEL', KEYS[4], from .. '|' .. id)
      redis.call('HDEL', KEYS[3], 'e:' .. low)
    end
    removed = removed + 1
  end
  low = low + 1
  n = n + 1
end
redis.call('SET', KEYS[1], low)
return removed
`
