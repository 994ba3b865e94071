// Lua for the Redis history store. Every write is one script, so seq stays
// gapless and the indexes consistent across any number of server processes.
// Keys: `<prefix><user>:<name>`:
//   seq    counter              ev     hash  seq -> event JSON
//   log    zset seq -> meta     c:<peer>   zset of message seqs in a 1:1 conversation
//   in:<peer>  zset of incoming, unrecalled message seqs (unread counting)
//   convs  zset peer by last message seq
//   ids    hash  id -> `senderSeq|recipientSeq|to|ts|flag` (idempotency, recall)
//   read / dlv       hash peer -> own mark (own seq space)
//   readby / dlvby   hash peer -> how far the peer got (own seq space)
//   blocks hash  blocked user -> since (ms)
//   cur    hash  device -> cursor (a persistent session; at most MAX_SESSIONS_PER_USER)
// Ids are validated `[A-Za-z0-9._@-]`, so they are safe inside JSON strings
// and `|`-separated metadata without escaping.

const COMMON = `
local P = ARGV[1]
local function k(user, name) return P .. user .. ':' .. name end
local function put(user, seq, event, meta)
  redis.call('HSET', k(user, 'ev'), seq, event)
  redis.call('ZADD', k(user, 'log'), seq, meta)
end
local function meta(seq, ts, peer, kind, dir, id, peerSeq)
  return seq .. '|' .. ts .. '|' .. peer .. '|' .. kind .. '|' .. dir .. '|' .. id .. '|' .. peerSeq
end
-- Drops the oldest events past retention (bounded work per call).
local function trim(user, now, keep)
  if keep <= 0 then return end
  local cutoff = now - keep
  for _ = 1, 50 do
    local first = redis.call('ZRANGE', k(user, 'log'), 0, 0)
    if #first == 0 then return end
    local seq, ts, peer, kind, dir, id = string.match(first[1], '^(%d+)|(%d+)|([^|]*)|(%a)|(%a+)|([^|]*)|')
    if tonumber(ts) >= cutoff then return end
    redis.call('ZREM', k(user, 'log'), first[1])
    redis.call('HDEL', k(user, 'ev'), seq)
    if kind == 'm' then
      redis.call('ZREM', k(user, 'c:' .. peer), seq)
      redis.call('ZREM', k(user, 'in:' .. peer), seq)
      if dir ~= 'in' then redis.call('HDEL', k(user, 'ids'), id) end
    end
    -- Trimmed in seq order: once the conversation's last event (of any kind) goes, all of it has.
    local last = redis.call('ZSCORE', k(user, 'convs'), peer)
    if last and tonumber(last) <= tonumber(seq) then redis.call('ZREM', k(user, 'convs'), peer) end
  end
end
`

/**
 * ARGV: prefix, from, to, id, ts, keepMs, tail. Returns {'stored', senderSeq, recipientSeq, newConversation},
 * {'duplicate', senderEvent} or {'conflict'}. The caller builds the stored events
 * (`{"seq":N,` + tail) itself, so they do not cross the wire twice. A recipient who
 * blocked the sender gets nothing: the message is in the sender's log only (recipientSeq 0).
 */
export const APPEND = COMMON + `
local from, to, id, ts, keep, tail = ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6]), ARGV[7]
local existing = redis.call('HGET', k(from, 'ids'), id)
if existing then
  local sSeq, _, previousTo, previousTs = string.match(existing, '^(%d+)|(%d+)|([^|]*)|(%d+)|')
  -- An id record past retention is forgotten, whether or not a trim has removed it yet.
  if not (keep > 0 and tonumber(previousTs) < tonumber(ts) - keep) then
    if previousTo ~= to then return {'conflict'} end
    return {'duplicate', redis.call('HGET', k(from, 'ev'), sSeq) or false}
  end
end
local withheld = to ~= from and redis.call('HEXISTS', k(to, 'blocks'), from) == 1
local newConversation = 0
if not redis.call('ZSCORE', k(from, 'convs'), to) then newConversation = 1 end
local sSeq = redis.call('INCR', k(from, 'seq'))
local rSeq = sSeq
if withheld then rSeq = 0 elseif to ~= from then rSeq = redis.call('INCR', k(to, 'seq')) end
-- Retention is applied every 16th event of a log (and before every read), not on each append.
if sSeq % 16 == 0 then trim(from, tonumber(ts), keep) end
if to ~= from and rSeq > 0 and rSeq % 16 == 0 then trim(to, tonumber(ts), keep) end
local function store(user, peer, seq, peerSeq, dir)
  put(user, seq, '{"seq":' .. seq .. ',' .. tail, meta(seq, ts, peer, 'm', dir, id, peerSeq))
  redis.call('ZADD', k(user, 'c:' .. peer), seq, seq)
  if dir == 'in' then redis.call('ZADD', k(user, 'in:' .. peer), seq, seq) end
  redis.call('ZADD', k(user, 'convs'), seq, peer)
end
if to == from then
  store(from, to, sSeq, sSeq, 'self')
else
  store(from, to, sSeq, rSeq, 'out')
  if not withheld then store(to, from, rSeq, sSeq, 'in') end
end
redis.call('HSET', k(from, 'ids'), id, sSeq .. '|' .. rSeq .. '|' .. to .. '|' .. ts .. '|')
return {'stored', sSeq, rSeq, newConversation}
`

/** ARGV: prefix, kind, reader, peer, upTo, ts, keepMs. Returns {changed, upTo, unread, peerEvent, readerEvent}. */
export const RECEIPT = COMMON + `
local kind, reader, peer, upTo, ts, keep = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7])
local markName = 'dlv'
if kind == 'read' then markName = 'read' end
local readMark = tonumber(redis.call('HGET', k(reader, 'read'), peer) or '0')
local current = tonumber(redis.call('HGET', k(reader, markName), peer) or '0')
local function unread() return redis.call('ZCOUNT', k(reader, 'in:' .. peer), '(' .. readMark, '+inf') end
-- The mark lands on the latest incoming message at or below upTo.
local found = redis.call('ZREVRANGEBYSCORE', k(reader, 'in:' .. peer), upTo, '-inf', 'LIMIT', 0, 1)
if #found == 0 or tonumber(found[1]) <= current then return {0, current, unread(), false, false} end
local s = found[1]
redis.call('HSET', k(reader, markName), peer, s)
if kind == 'read' then
  readMark = tonumber(s)
  -- read implies delivered
  if readMark > tonumber(redis.call('HGET', k(reader, 'dlv'), peer) or '0') then redis.call('HSET', k(reader, 'dlv'), peer, s) end
end
local entry = redis.call('ZRANGEBYSCORE', k(reader, 'log'), s, s, 'LIMIT', 0, 1)[1]
local id, peerSeq = string.match(entry, '|([^|]*)|(%d+)$')
trim(peer, tonumber(ts), keep)
local ps = redis.call('INCR', k(peer, 'seq'))
local peerEvent = '{"seq":' .. ps .. ',"type":"receipt","kind":"' .. kind .. '","by":"' .. reader .. '","peer":"' .. reader .. '","upTo":' .. peerSeq .. ',"id":"' .. id .. '","ts":' .. ts .. '}'
put(peer, ps, peerEvent, meta(ps, ts, reader, 'r', 'in', id, 0))
if kind == 'read' then redis.call('HSET', k(peer, 'readby'), reader, peerSeq) end
if tonumber(peerSeq) > tonumber(redis.call('HGET', k(peer, 'dlvby'), reader) or '0') then redis.call('HSET', k(peer, 'dlvby'), reader, peerSeq) end
local readerEvent = false
if kind == 'read' then
  trim(reader, tonumber(ts), keep)
  local rs = redis.call('INCR', k(reader, 'seq'))
  readerEvent = '{"seq":' .. rs .. ',"type":"receipt","kind":"read","by":"' .. reader .. '","peer":"' .. peer .. '","upTo":' .. s .. ',"id":"' .. id .. '","ts":' .. ts .. '}'
  put(reader, rs, readerEvent, meta(rs, ts, peer, 'r', 'out', id, 0))
end
return {1, tonumber(s), unread(), peerEvent, readerEvent}
`

/** ARGV: prefix, sender, id, now, windowMs, keepMs. Returns {status, message, senderEvent, recipientEvent, to}. */
export const RECALL = COMMON + `
local sender, id, now, window, keep = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local record = redis.call('HGET', k(sender, 'ids'), id)
if not record then return {'not_found'} end
local sSeq, rSeq, to, ts, flag = string.match(record, '^(%d+)|(%d+)|([^|]*)|(%d+)|(%a*)$')
if string.sub(to, 1, 2) == 'g:' then return {'not_found'} end
if flag == 'r' then return {'recalled', redis.call('HGET', k(sender, 'ev'), sSeq) or false, false, false, to} end
if tonumber(now) - tonumber(ts) > window then return {'window_expired'} end
local function tombstone(seq)
  return '{"seq":' .. seq .. ',"type":"message","id":"' .. id .. '","from":"' .. sender .. '","to":"' .. to .. '","ts":' .. ts .. ',"recalled":true,"recalledAt":' .. now .. '}'
end
local function recallEvent(user, peer, messageSeq, dir)
  trim(user, tonumber(now), keep)
  local es = redis.call('INCR', k(user, 'seq'))
  local event = '{"seq":' .. es .. ',"type":"recall","id":"' .. id .. '","from":"' .. sender .. '","to":"' .. to .. '","messageSeq":' .. messageSeq .. ',"ts":' .. now .. '}'
  put(user, es, event, meta(es, now, peer, 'x', dir, id, 0))
  return event
end
redis.call('HSET', k(sender, 'ev'), sSeq, tombstone(sSeq))
redis.call('HSET', k(sender, 'ids'), id, sSeq .. '|' .. rSeq .. '|' .. to .. '|' .. ts .. '|r')
local senderEvent = recallEvent(sender, to, sSeq, 'out')
local recipientEvent = false
-- rSeq 0: the recipient had blocked the sender and never got it.
if to ~= sender and rSeq ~= '0' then
  redis.call('HSET', k(to, 'ev'), rSeq, tombstone(rSeq))
  redis.call('ZREM', k(to, 'in:' .. sender), rSeq)
  recipientEvent = recallEvent(to, sender, rSeq, 'in')
end
return {'recalled', tombstone(sSeq), senderEvent, recipientEvent, to}
`

/** ARGV: prefix, user, now, keepMs. Applies retention before a read. */
export const TRIM = COMMON + `
trim(ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]))
return 1
`

/** ARGV: prefix, user, after, limit, group prefix. Returns {meta, event, meta, event, ...} for seq > after, oldest first ('' for a group event that is gone). */
export const READ_LOG = `
local P = ARGV[1]
local user = ARGV[2]
local metas = redis.call('ZRANGEBYSCORE', P .. user .. ':log', '(' .. ARGV[3], '+inf', 'LIMIT', 0, tonumber(ARGV[4]))
if #metas == 0 then return {} end
local seqs = {}
for i, m in ipairs(metas) do seqs[i] = string.match(m, '^(%d+)|') end
local events = redis.call('HMGET', P .. user .. ':ev', unpack(seqs))
local out = {}
for i, m in ipairs(metas) do
  local event = events[i]
  -- A group event is stored once, in the group log; the member's entry refers to it.
  if event and string.sub(event, 1, 1) == '@' then
    local group, gseq = string.match(event, '^@([^|]+)|(%d+)$')
    local tail = redis.call('HGET', ARGV[5] .. group .. ':ev', gseq)
    -- Gone (group retention): an empty event, so the reader can pass over the seq.
    if tail then event = '{"seq":' .. seqs[i] .. ',' .. tail else event = '' end
  end
  if event then table.insert(out, m); table.insert(out, event) end
end
return out
`

/** ARGV: prefix, then (user, peer, ts, tail) quadruples. Appends each as a receipt-kind event; returns the events. */
export const NOTICES = `
local P = ARGV[1]
local out = {}
for i = 2, #ARGV, 4 do
  local user, peer, ts, tail = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local seq = redis.call('INCR', P .. user .. ':seq')
  local event = '{"seq":' .. seq .. ',' .. tail
  redis.call('HSET', P .. user .. ':ev', seq, event)
  redis.call('ZADD', P .. user .. ':log', seq, seq .. '|' .. ts .. '|' .. peer .. '|r|in||0')
  table.insert(out, event)
end
return out
`

/**
 * ARGV: prefix, user, device, maxSessions (0: no bound), the user's presence hash (clientId →
 * connection: who is connected, on any process). Returns {cursor, created, evicted device...}.
 * A new cursor starts at the user's head. If the user then holds more than maxSessions cursors,
 * the ones furthest behind (lowest seq, then device id) of devices not connected are dropped in
 * this same script: a session is never evicted while its device is connected anywhere.
 */
export const OPEN_CURSOR = `
local P = ARGV[1]
local user, device, max, presence = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local key = P .. user .. ':cur'
local current = redis.call('HGET', key, device)
if current then return {tonumber(current), 0} end
local head = tonumber(redis.call('GET', P .. user .. ':seq') or '0')
local out = {head, 1}
local excess = max > 0 and redis.call('HLEN', key) + 1 - max or 0
if excess > 0 then
  local connected = {}
  for _, clientId in ipairs(redis.call('HKEYS', presence)) do connected[clientId] = true end
  local candidates = {}
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    if not connected[user .. ':' .. all[i]] then table.insert(candidates, {all[i], tonumber(all[i + 1])}) end
  end
  table.sort(candidates, function (a, b)
    if a[2] ~= b[2] then return a[2] < b[2] end
    return a[1] < b[1]
  end)
  for i = 1, math.min(excess, #candidates) do
    redis.call('HDEL', key, candidates[i][1])
    table.insert(out, candidates[i][1])
  end
end
redis.call('HSET', key, device, head)
return out
`

/** ARGV: prefix, then (user, device, seq) triples. Moves each existing cursor forward only. */
export const SAVE_CURSORS = `
local P = ARGV[1]
for i = 2, #ARGV, 3 do
  local key = P .. ARGV[i] .. ':cur'
  local seq = tonumber(ARGV[i + 2])
  local current = redis.call('HGET', key, ARGV[i + 1])
  -- A cursor dropped or evicted meanwhile is not brought back by a late save.
  if current and seq > tonumber(current) then redis.call('HSET', key, ARGV[i + 1], seq) end
end
return 1
`

/** ARGV: prefix, blocker, user, since, limit (0: none). Returns since (the first one, if already blocked), or 'limit'. */
export const BLOCK = `
local key = ARGV[1] .. ARGV[2] .. ':blocks'
local existing = redis.call('HGET', key, ARGV[3])
if existing then return existing end
local limit = tonumber(ARGV[5])
if limit > 0 and redis.call('HLEN', key) >= limit then return 'limit' end
redis.call('HSET', key, ARGV[3], ARGV[4])
return ARGV[4]
`
