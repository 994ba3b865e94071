// Lua for groups on Redis. Each change of a group is one script, so the group
// log, its gseq, the membership and every member's own log move together,
// across any number of server processes.
// Group keys (prefix G = `inboxd:g:`), `<G><group>:<name>`:
//   low   the oldest gseq not yet removed by retention
//   info  hash name, meta, creator, createdAt, v (version)
//   m     hash member -> role            j   hash member -> gseq before they joined
//   seq   counter (gseq)                 ev  hash gseq -> event JSON without its `{`
// and per user (prefix P, as in redis-scripts.ts): `groups` set of group ids
// (its size is what MAX_GROUPS_PER_USER bounds, checked in the same script),
// plus the ordinary log keys, where a group event is the entry `@<group>|<gseq>`
// in `ev` and a meta line whose peer is `g:<group>` (kind `m` for messages,
// `e` for membership events).
import { GROUP_TRIM_EVERY, GROUP_TRIM_MAX } from './group-store.ts'

const COMMON = `
local P, G = ARGV[1], ARGV[2]
local function k(user, name) return P .. user .. ':' .. name end
local function gk(group, name) return G .. group .. ':' .. name end
-- One group event into one member's log: a reference, not a copy.
local function fanout(group, user, gseq, ts, kind, dir, id)
  local seq = redis.call('INCR', k(user, 'seq'))
  local peer = 'g:' .. group
  redis.call('HSET', k(user, 'ev'), seq, '@' .. group .. '|' .. gseq)
  redis.call('ZADD', k(user, 'log'), seq, seq .. '|' .. ts .. '|' .. peer .. '|' .. kind .. '|' .. dir .. '|' .. id .. '|' .. gseq)
  -- Scored by gseq, so unread counts and read marks of a group are in gseq.
  -- (No per-member conversation index: a group's history is its own log.)
  if kind == 'm' and dir == 'in' then redis.call('ZADD', k(user, 'in:' .. peer), gseq, seq) end
  redis.call('ZADD', k(user, 'convs'), seq, peer)
  return seq
end
-- History retention for the group log: drops its oldest events past \`keep\`
-- (bounded work per call); \`low\` is the oldest gseq that may still exist.
-- Members' entries for them go with their own logs' retention.
local function gtrim(group, now, keep)
  if keep <= 0 then return end
  local cutoff = now - keep
  local low = tonumber(redis.call('GET', gk(group, 'low')) or '1')
  local head = tonumber(redis.call('GET', gk(group, 'seq')) or '0')
  local n = 0
  while low < head and n < ${GROUP_TRIM_MAX} do
    local tail = redis.call('HGET', gk(group, 'ev'), low)
    if tail then
      -- Decoded: events stored before ts came first may carry a ts in their metadata.
      -- cjson refuses some valid JSON (a lone surrogate, "\\ud800", as JSON.stringify writes it):
      -- then ts is read where every event since has it, right after gseq, before any user content.
      local ok, event = pcall(cjson.decode, '{' .. tail)
      local ts = ok and type(event) == 'table' and tonumber(event.ts) or nil
      if not ok then ts = tonumber(string.match(tail, '"gseq":%d+,"ts":(%d+)')) end
      if ts == nil or ts >= cutoff then break end
      redis.call('HDEL', gk(group, 'ev'), low)
    end
    low = low + 1
    n = n + 1
  end
  redis.call('SET', gk(group, 'low'), low)
end
-- The users among \`users\` (not yet members) already in \`limit\` groups: a
-- change that would add any of them is refused before it writes anything.
local function full(users, limit)
  local out = {'too_many_groups'}
  if limit <= 0 then return out end
  for _, user in ipairs(users) do
    if redis.call('SCARD', k(user, 'groups')) >= limit then table.insert(out, user) end
  end
  return out
end
local function append(group, pre, post)
  local gseq = redis.call('INCR', gk(group, 'seq'))
  local tail = pre .. gseq .. post
  redis.call('HSET', gk(group, 'ev'), gseq, tail)
  return gseq, tail
end
`

/** ARGV: P, G, group, creator, ts, name, meta, pre, post, maxGroupsPerUser, then (user, role) pairs. */
export const GROUP_CREATE = COMMON + `
local group, creator, ts = ARGV[3], ARGV[4], ARGV[5]
if redis.call('EXISTS', gk(group, 'info')) == 1 then return {'exists'} end
local joining = {}
for i = 11, #ARGV, 2 do table.insert(joining, ARGV[i]) end
local refused = full(joining, tonumber(ARGV[10]))
if #refused > 1 then return refused end
redis.call('HSET', gk(group, 'info'), 'name', ARGV[6], 'meta', ARGV[7], 'creator', creator, 'createdAt', ts, 'v', 1)
local gseq, tail = append(group, ARGV[8], ARGV[9])
local out = {'ok', gseq, tail}
for i = 11, #ARGV, 2 do
  local user = ARGV[i]
  redis.call('HSET', gk(group, 'm'), user, ARGV[i + 1])
  redis.call('HSET', gk(group, 'j'), user, gseq - 1)
  redis.call('SADD', k(user, 'groups'), group)
  table.insert(out, user)
  table.insert(out, fanout(group, user, gseq, ts, 'e', 'in', ''))
end
return out
`

/**
 * ARGV: P, G, group, expectedVersion, ts, pre, post, setName, name, setMeta, meta, replaceGseq ('' for none), replaceTail,
 * maxGroupsPerUser, then n + n (user, role) pairs to upsert, n + n users to remove, n + n users to notify as well.
 */
export const GROUP_CHANGE = COMMON + `
local group, ts = ARGV[3], ARGV[5]
if redis.call('HGET', gk(group, 'info'), 'v') ~= ARGV[4] then return {'stale'} end
local joining = {}
for j = 1, tonumber(ARGV[15]) do
  local user = ARGV[15 + 2 * j - 1]
  if not redis.call('HGET', gk(group, 'm'), user) then table.insert(joining, user) end
end
local refused = full(joining, tonumber(ARGV[14]))
if #refused > 1 then return refused end
redis.call('HINCRBY', gk(group, 'info'), 'v', 1)
if ARGV[8] == '1' then redis.call('HSET', gk(group, 'info'), 'name', ARGV[9]) end
if ARGV[10] == '1' then redis.call('HSET', gk(group, 'info'), 'meta', ARGV[11]) end
-- A recall's tombstone, unless retention removed the event meanwhile.
if ARGV[12] ~= '' and redis.call('HEXISTS', gk(group, 'ev'), ARGV[12]) == 1 then redis.call('HSET', gk(group, 'ev'), ARGV[12], ARGV[13]) end
local gseq, tail = append(group, ARGV[6], ARGV[7])
local i = 15
local n = tonumber(ARGV[i])
for j = 1, n do
  local user, role = ARGV[i + 2 * j - 1], ARGV[i + 2 * j]
  if not redis.call('HGET', gk(group, 'm'), user) then
    redis.call('HSET', gk(group, 'j'), user, gseq - 1)
    redis.call('SADD', k(user, 'groups'), group)
  end
  redis.call('HSET', gk(group, 'm'), user, role)
end
i = i + 2 * n + 1
n = tonumber(ARGV[i])
for j = 1, n do
  local user = ARGV[i + j]
  redis.call('HDEL', gk(group, 'm'), user)
  redis.call('HDEL', gk(group, 'j'), user)
  redis.call('SREM', k(user, 'groups'), group)
end
i = i + n + 1
n = tonumber(ARGV[i])
local extra = {}
for j = 1, n do extra[ARGV[i + j]] = true end
local out = {'ok', gseq, tail}
for _, user in ipairs(redis.call('HKEYS', gk(group, 'm'))) do
  extra[user] = nil
  -- A recalled message no longer counts as unread.
  if ARGV[12] ~= '' then redis.call('ZREMRANGEBYSCORE', k(user, 'in:g:' .. group), ARGV[12], ARGV[12]) end
  table.insert(out, user)
  table.insert(out, fanout(group, user, gseq, ts, 'e', 'in', ''))
end
for user in pairs(extra) do
  table.insert(out, user)
  table.insert(out, fanout(group, user, gseq, ts, 'e', 'in', ''))
end
return out
`

/** ARGV: P, G, group, user, gseq, ts. A member's read mark (in gseq), forward only; read implies delivered. */
export const GROUP_READ = COMMON + `
local group, user, ts = ARGV[3], ARGV[4], ARGV[6]
if not redis.call('HGET', gk(group, 'm'), user) then return {'not_a_member'} end
local peer = 'g:' .. group
local head = tonumber(redis.call('GET', gk(group, 'seq')) or '0')
local upTo = math.min(tonumber(ARGV[5]), head)
local current = tonumber(redis.call('HGET', k(user, 'read'), peer) or '0')
local function unread() return redis.call('ZCOUNT', k(user, 'in:' .. peer), '(' .. math.max(current, upTo), '+inf') end
if upTo <= current then return {'unchanged', current, unread(), false, current} end
redis.call('HSET', k(user, 'read'), peer, upTo)
redis.call('HSET', gk(group, 'read'), user, upTo)
if upTo > tonumber(redis.call('HGET', gk(group, 'dlv'), user) or '0') then redis.call('HSET', gk(group, 'dlv'), user, upTo) end
-- The reader's other devices learn it from their own log.
local seq = redis.call('INCR', k(user, 'seq'))
local event = '{"seq":' .. seq .. ',"type":"receipt","kind":"read","by":"' .. user .. '","group":"' .. group .. '","upTo":' .. upTo .. ',"ts":' .. ts .. '}'
redis.call('HSET', k(user, 'ev'), seq, event)
redis.call('ZADD', k(user, 'log'), seq, seq .. '|' .. ts .. '|' .. peer .. '|r|out||0')
return {'changed', upTo, unread(), event, current}
`

/** ARGV: P, G, then (group, user, gseq) triples: delivered marks, forward only. */
export const GROUP_DELIVERED = COMMON + `
for i = 3, #ARGV, 3 do
  local key = gk(ARGV[i], 'dlv')
  if tonumber(ARGV[i + 2]) > tonumber(redis.call('HGET', key, ARGV[i + 1]) or '0') then redis.call('HSET', key, ARGV[i + 1], ARGV[i + 2]) end
end
return 1
`

/** ARGV: P, G, group, from, id, ts, pre, post, keepMs. */
export const GROUP_MESSAGE = COMMON + `
local group, from, id, ts, keep = ARGV[3], ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[9])
if not redis.call('HGET', gk(group, 'm'), from) then return {'not_a_member'} end
local peer = 'g:' .. group
local existing = redis.call('HGET', k(from, 'ids'), id)
if existing then
  local sSeq, gseq, previousTo = string.match(existing, '^(%d+)|(%d+)|([^|]*)|')
  if previousTo ~= peer then return {'conflict'} end
  local stored = redis.call('HGET', gk(group, 'ev'), gseq)
  if not stored then return {'duplicate', false} end
  return {'duplicate', '{"seq":' .. sSeq .. ',' .. stored}
end
local gseq, tail = append(group, ARGV[7], ARGV[8])
local out = {'stored', gseq, tail}
local senderSeq = 0
for _, user in ipairs(redis.call('HKEYS', gk(group, 'm'))) do
  local dir = 'in'
  if user == from then dir = 'out' end
  local seq = fanout(group, user, gseq, ts, 'm', dir, id)
  if user == from then senderSeq = seq end
  table.insert(out, user)
  table.insert(out, seq)
end
redis.call('HSET', k(from, 'ids'), id, senderSeq .. '|' .. gseq .. '|' .. peer .. '|' .. ts .. '|')
if gseq % ${GROUP_TRIM_EVERY} == 0 then gtrim(group, tonumber(ts), keep) end
return out
`
