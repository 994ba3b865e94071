// Lua for the Redis history store. Every script touches ONE user's keys,
// declared in KEYS (all `inboxd:h:{u:<user>}:<name>`, one cluster slot), so
// seq stays gapless and the indexes consistent across any number of server
// processes, on one Redis or a cluster. What a write means for another user
// (the recipient's copy, the peer's receipt, a recall) goes into the writer's
// outbox in the same script; the relay (redis-relay.ts) applies it to the
// other user's log with RELAY_APPLY, where a per-origin mark keeps order and
// what is already there makes a repeat harmless. Event JSON is made in Node (history/events.ts); scripts only put
// seq numbers into it. Keys of a user:
//   seq    counter              ev     hash  seq -> event JSON
//   log    zset seq -> meta     c:<peer>   zset of message seqs in a 1:1 conversation
//   in:<peer>  zset of incoming, unrecalled message seqs (unread counting)
//   convs  zset peer by last message seq
//   ids    hash  id -> `senderSeq|0|to|ts|flag` (the sender's idempotency and recall)
//   rids   hash  `<from>|<id>` -> seq of a received message here (0: withheld by a block; -seq: recalled)
//          and `<from>|<id>|e` -> the seqs of its edit events here (`ids` has `<id>|e` for the sender's)
//   read / dlv       hash peer -> own mark (own seq space)
//   readby / dlvby   hash peer -> how far the peer got (own seq space)
//   blocks hash  blocked user -> since (ms)
//   cur    hash  device -> cursor (a persistent session; at most MAX_SESSIONS_PER_USER)
//   ob     hash  n -> outbox item for another user's log   obseq / obdone  counters
//   rx     hash  origin user -> the highest of their outbox items applied here
// plus the relay's pending index (a zset of users with outbox items, in the
// user's slot). Ids are validated `[A-Za-z0-9._@-]`, so they are safe inside
// JSON strings and `|`-separated metadata without escaping.

// An edit event's seqs are listed per message (the sender's in ids `<id>|e`, the recipient's in
// rids `<from>|<id>|e`): a recall cuts each one's body (events.ts, editWithoutBody).
export const SCRUB = `
local function scrub(ev, list)
  for s in string.gmatch(list or '', '%d+') do
    local e = redis.call('HGET', ev, s)
    if e then
      local at = string.find(e, ',"body":', 1, true)
      if at then redis.call('HSET', ev, s, string.sub(e, 1, at - 1) .. '}') end
    end
  end
end
`

const META = `
local function meta(seq, ts, peer, kind, dir, id, peerSeq)
  return seq .. '|' .. ts .. '|' .. peer .. '|' .. kind .. '|' .. dir .. '|' .. id .. '|' .. peerSeq
end
`

/**
 * KEYS: ids, ev, log, seq, c:<to>, convs, ob, obseq, pending, obdone. ARGV: from, to, id, ts, keepMs, tail, now.
 * Returns {'stored', senderSeq, newConversation, item, obdone} (item 0: none), {'duplicate', senderEvent} or {'conflict'}.
 * The message goes into the sender's log and, for another user, into the outbox (item
 * `m|to|senderSeq|id|ts|newConversation`); the relay takes it to the recipient's log.
 */
export const APPEND = META + `
local from, to, id, ts, keep, tail = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
local existing = redis.call('HGET', KEYS[1], id)
if existing then
  local sSeq, _, previousTo, previousTs = string.match(existing, '^(%d+)|(%d+)|([^|]*)|(%d+)|')
  -- An id record past retention is forgotten, whether or not a trim has removed it yet.
  if not (keep > 0 and tonumber(previousTs) < tonumber(ts) - keep) then
    if previousTo ~= to then return {'conflict'} end
    return {'duplicate', redis.call('HGET', KEYS[2], sSeq) or false}
  end
end
local newConversation = 0
if not redis.call('ZSCORE', KEYS[6], to) then newConversation = 1 end
local seq = redis.call('INCR', KEYS[4])
local dir, peerSeq = 'out', 0
if to == from then dir, peerSeq = 'self', seq end
redis.call('HSET', KEYS[2], seq, '{"seq":' .. seq .. ',' .. tail)
redis.call('ZADD', KEYS[3], seq, meta(seq, ts, to, 'm', dir, id, peerSeq))
redis.call('ZADD', KEYS[5], seq, seq)
redis.call('ZADD', KEYS[6], seq, to)
redis.call('HSET', KEYS[1], id, seq .. '|0|' .. to .. '|' .. ts .. '|')
local n = 0
if to ~= from then
  n = redis.call('INCR', KEYS[8])
  redis.call('HSET', KEYS[7], n, 'm|' .. to .. '|' .. seq .. '|' .. id .. '|' .. ts .. '|' .. newConversation)
  redis.call('ZADD', KEYS[9], 'NX', ARGV[7], from)
end
return {'stored', seq, newConversation, n, tonumber(redis.call('GET', KEYS[10]) or '0')}
`

/**
 * KEYS: read, dlv, in:<peer>, seq, ev, log, ob, obseq, pending, obdone (the reader's).
 * ARGV: reader, peer, kind, mark (the reader's seq found for upTo), id, peerSeq (the same message in the
 * peer's log), ts, readerTail (the reader's own receipt event, read receipts only), now.
 * Moves the reader's mark forward to `mark` (never back), appends the reader's own receipt event
 * and queues the peer's (`r|peer|kind|peerSeq|id|ts`). Returns {changed, mark, unread, readerSeq, item, obdone}.
 */
export const RECEIPT = META + `
local reader, peer, kind, s, id, peerSeq, ts, readerTail = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local markKey = KEYS[2]
if kind == 'read' then markKey = KEYS[1] end
local readMark = tonumber(redis.call('HGET', KEYS[1], peer) or '0')
local current = tonumber(redis.call('HGET', markKey, peer) or '0')
local function unread() return redis.call('ZCOUNT', KEYS[3], '(' .. readMark, '+inf') end
if s <= current then return {0, current, unread(), 0} end
redis.call('HSET', markKey, peer, s)
local readerSeq = 0
if kind == 'read' then
  readMark = s
  -- read implies delivered
  if s > tonumber(redis.call('HGET', KEYS[2], peer) or '0') then redis.call('HSET', KEYS[2], peer, s) end
  readerSeq = redis.call('INCR', KEYS[4])
  redis.call('HSET', KEYS[5], readerSeq, '{"seq":' .. readerSeq .. ',' .. readerTail)
  redis.call('ZADD', KEYS[6], readerSeq, meta(readerSeq, ts, peer, 'r', 'out', id, 0))
end
local n = redis.call('INCR', KEYS[8])
redis.call('HSET', KEYS[7], n, 'r|' .. peer .. '|' .. kind .. '|' .. peerSeq .. '|' .. id .. '|' .. ts)
redis.call('ZADD', KEYS[9], 'NX', ARGV[9], reader)
return {1, s, unread(), readerSeq, n, tonumber(redis.call('GET', KEYS[10]) or '0')}
`

/**
 * KEYS: ids, ev, log, seq, ob, obseq, pending, obdone (the sender's).
 * ARGV: sender, id, record (as read: the script changes nothing if it changed meanwhile), senderSeq,
 * to, ts, now, tombstoneTail, recallTail (the sender's recall event), flaggedRecord.
 * Returns {'recalled', recallSeq, item, obdone} or {'changed'}. Queues `x|to|id|ts|now` for the recipient.
 */
export const RECALL = META + SCRUB + `
local sender, id, sSeq, to, ts, now = ARGV[1], ARGV[2], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
if redis.call('HGET', KEYS[1], id) ~= ARGV[3] then return {'changed'} end
if redis.call('HEXISTS', KEYS[2], sSeq) == 1 then redis.call('HSET', KEYS[2], sSeq, '{"seq":' .. sSeq .. ',' .. ARGV[8]) end
redis.call('HSET', KEYS[1], id, ARGV[10])
scrub(KEYS[2], redis.call('HGET', KEYS[1], id .. '|e'))
redis.call('HDEL', KEYS[1], id .. '|e')
local seq = redis.call('INCR', KEYS[4])
redis.call('HSET', KEYS[2], seq, '{"seq":' .. seq .. ',' .. ARGV[9])
redis.call('ZADD', KEYS[3], seq, meta(seq, now, to, 'x', 'out', id, 0))
local n = 0
if to ~= sender then
  n = redis.call('INCR', KEYS[6])
  redis.call('HSET', KEYS[5], n, 'x|' .. to .. '|' .. id .. '|' .. ts .. '|' .. now)
  redis.call('ZADD', KEYS[7], 'NX', now, sender)
end
return {'recalled', seq, n, tonumber(redis.call('GET', KEYS[8]) or '0')}
`

/**
 * KEYS: ids, ev, log, seq, ob, obseq, pending, obdone (the sender's).
 * ARGV: sender, id, record and stored message (as read: the script changes nothing if either
 * changed meanwhile), senderSeq, to, now, editedTail (the message after the edit), editTail
 * (the sender's edit event), item (the outbox item), max (edits per message).
 * Returns {'edited', editSeq, item, obdone}, {'changed'} or {'too_many'}. Queues the item for the recipient.
 */
export const EDIT = META + `
local sender, id, sSeq, to, now = ARGV[1], ARGV[2], ARGV[5], ARGV[6], ARGV[7]
if redis.call('HGET', KEYS[1], id) ~= ARGV[3] then return {'changed'} end
if redis.call('HGET', KEYS[2], sSeq) ~= '{"seq":' .. sSeq .. ',' .. ARGV[4] then return {'changed'} end
local edits = redis.call('HGET', KEYS[1], id .. '|e')
local _, count = string.gsub(edits or '', '%d+', '')
if count >= tonumber(ARGV[11]) then return {'too_many'} end
redis.call('HSET', KEYS[2], sSeq, '{"seq":' .. sSeq .. ',' .. ARGV[8])
local seq = redis.call('INCR', KEYS[4])
if edits then redis.call('HSET', KEYS[1], id .. '|e', edits .. ',' .. seq) else redis.call('HSET', KEYS[1], id .. '|e', seq) end
redis.call('HSET', KEYS[2], seq, '{"seq":' .. seq .. ',' .. ARGV[9])
redis.call('ZADD', KEYS[3], seq, meta(seq, now, to, 'x', 'out', id, 0))
local n = 0
if to ~= sender then
  n = redis.call('INCR', KEYS[6])
  redis.call('HSET', KEYS[5], n, ARGV[10])
  redis.call('ZADD', KEYS[7], 'NX', now, sender)
end
return {'edited', seq, n, tonumber(redis.call('GET', KEYS[8]) or '0')}
`

/**
 * KEYS: obdone, obseq, ob, ev (the origin's). ARGV: max.
 * What the relay has to do: {done, head, then per item up to max: item, and for a message its
 * stored event ('' otherwise, or when gone)}.
 */
export const RELAY_READ = `
local done = tonumber(redis.call('GET', KEYS[1]) or '0')
local head = tonumber(redis.call('GET', KEYS[2]) or '0')
local out = {done, head}
local to = math.min(head, done + tonumber(ARGV[1]))
for n = done + 1, to do
  local item = redis.call('HGET', KEYS[3], n) or ''
  local event = ''
  local sSeq = string.match(item, '^m|[^|]*|(%d+)|')
  if sSeq then event = redis.call('HGET', KEYS[4], sSeq) or '' end
  table.insert(out, item)
  table.insert(out, event)
end
return out
`

/** The keys RELAY_APPLY takes per (target, origin) block, in its order (`c:<origin>`, `in:<origin>` last). */
export const RELAY_TARGET_KEYS = ['seq', 'ev', 'log', 'convs', 'rx', 'rids', 'blocks', 'readby', 'dlvby'] as const

/**
 * KEYS: per block (11 each; all blocks in one slot): the target's seq, ev, log, convs, rx, rids,
 * blocks, readby, dlvby, c:<origin>, in:<origin>.
 * ARGV: block count, then per block: origin, n, then n items of 8 fields (itemNo, kind, ts, id, a, b, pre, post):
 *   m  a = the sender's seq, pre = the message's tail           (withheld if the target blocks the origin)
 *   r  a = receipt kind, b = upTo (target's seq space), pre = the receipt's tail
 *   x  pre/post = the recall event's tail around messageSeq, b = the tombstone's tail
 *   e  pre/post = the edit event's tail around messageSeq, b = the edited message's tail
 * Applies each item once, in order. An item at or below the target's mark for the origin was applied
 * before, unless what it would write is not there (an origin's primary that failed over without
 * replicating its last items numbers new items again): a message by its `rids` entry (`0` withheld,
 * `-seq` recalled), a receipt by the peer's marks, a recall by the `-`; an edit only when fresh (a
 * renumbered edit is passed over: the recipient keeps the text before it).
 * Returns {block index, itemNo, seq, messageSeq, ...} of what it appended.
 */
export const RELAY_APPLY = META + SCRUB + `
local out = {}
local a = 2
for t = 1, tonumber(ARGV[1]) do
  local K = (t - 1) * 11
  local seqKey, ev, log, convs, rx, rids, readby, dlvby, conv, inc = KEYS[K + 1], KEYS[K + 2], KEYS[K + 3], KEYS[K + 4], KEYS[K + 5], KEYS[K + 6], KEYS[K + 8], KEYS[K + 9], KEYS[K + 10], KEYS[K + 11]
  local origin = ARGV[a]
  local n = tonumber(ARGV[a + 1])
  a = a + 2
  local applied = tonumber(redis.call('HGET', rx, origin) or '0')
  local mark = applied
  local blocked = redis.call('HEXISTS', KEYS[K + 7], origin) == 1
  for _ = 1, n do
    local no, kind, ts, id, x, y, pre, post = tonumber(ARGV[a]), ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], ARGV[a + 6], ARGV[a + 7]
    a = a + 8
    local fresh = no > applied
    if no > mark then mark = no end
    if kind == 'm' then
      local known = redis.call('HGET', rids, origin .. '|' .. id)
      if fresh or not known then
        if blocked then
          redis.call('HSET', rids, origin .. '|' .. id, 0)
        else
          local s = redis.call('INCR', seqKey)
          redis.call('HSET', ev, s, '{"seq":' .. s .. ',' .. pre)
          redis.call('ZADD', log, s, meta(s, ts, origin, 'm', 'in', id, x))
          redis.call('ZADD', conv, s, s)
          redis.call('ZADD', inc, s, s)
          redis.call('ZADD', convs, s, origin)
          redis.call('HSET', rids, origin .. '|' .. id, s)
          table.insert(out, t); table.insert(out, no); table.insert(out, s); table.insert(out, 0)
        end
      end
    elseif kind == 'r' then
      local upTo = tonumber(y)
      local markKey = dlvby
      if x == 'read' then markKey = readby end
      if fresh or upTo > tonumber(redis.call('HGET', markKey, origin) or '0') then
        local s = redis.call('INCR', seqKey)
        redis.call('HSET', ev, s, '{"seq":' .. s .. ',' .. pre)
        redis.call('ZADD', log, s, meta(s, ts, origin, 'r', 'in', id, 0))
        if x == 'read' and upTo > tonumber(redis.call('HGET', readby, origin) or '0') then redis.call('HSET', readby, origin, upTo) end
        if upTo > tonumber(redis.call('HGET', dlvby, origin) or '0') then redis.call('HSET', dlvby, origin, upTo) end
        table.insert(out, t); table.insert(out, no); table.insert(out, s); table.insert(out, 0)
      end
    elseif kind == 'x' then
      -- Not found, 0: the message was withheld (a block) or is past retention here.
      local r = tonumber(redis.call('HGET', rids, origin .. '|' .. id) or '0')
      if r > 0 then
        if redis.call('HEXISTS', ev, r) == 1 then redis.call('HSET', ev, r, '{"seq":' .. r .. ',' .. y) end
        redis.call('ZREM', inc, r)
        redis.call('HSET', rids, origin .. '|' .. id, -r)
        scrub(ev, redis.call('HGET', rids, origin .. '|' .. id .. '|e'))
        redis.call('HDEL', rids, origin .. '|' .. id .. '|e')
        local s = redis.call('INCR', seqKey)
        redis.call('HSET', ev, s, '{"seq":' .. s .. ',' .. pre .. r .. post)
        redis.call('ZADD', log, s, meta(s, ts, origin, 'x', 'in', id, 0))
        table.insert(out, t); table.insert(out, no); table.insert(out, s); table.insert(out, r)
      end
    elseif kind == 'e' then
      -- Only a message that is here and not recalled: recall wins over an edit.
      local r = tonumber(redis.call('HGET', rids, origin .. '|' .. id) or '0')
      if r > 0 and fresh then
        if redis.call('HEXISTS', ev, r) == 1 then redis.call('HSET', ev, r, '{"seq":' .. r .. ',' .. y) end
        local s = redis.call('INCR', seqKey)
        redis.call('HSET', ev, s, '{"seq":' .. s .. ',' .. pre .. r .. post)
        redis.call('ZADD', log, s, meta(s, ts, origin, 'x', 'in', id, 0))
        local ek = origin .. '|' .. id .. '|e'
        local edits = redis.call('HGET', rids, ek)
        if edits then redis.call('HSET', rids, ek, edits .. ',' .. s) else redis.call('HSET', rids, ek, s) end
        table.insert(out, t); table.insert(out, no); table.insert(out, s); table.insert(out, r)
      end
    end
  end
  if mark > applied then redis.call('HSET', rx, origin, mark) end
end
return out
`

/**
 * KEYS: per origin (4 each; all in one slot): obdone, ob, obseq, pending. ARGV: per origin: origin, upTo.
 * Every item up to upTo is in its target's log: moves obdone (forward only), forgets those
 * items, and drops the origin from the pending index once nothing is left.
 */
export const RELAY_DONE = `
for i = 1, #KEYS / 4 do
  local K = (i - 1) * 4
  local origin, upTo = ARGV[2 * i - 1], tonumber(ARGV[2 * i])
  local done = tonumber(redis.call('GET', KEYS[K + 1]) or '0')
  if upTo > done then
    for n = done + 1, upTo do redis.call('HDEL', KEYS[K + 2], n) end
    redis.call('SET', KEYS[K + 1], upTo)
    done = upTo
  end
  if done >= tonumber(redis.call('GET', KEYS[K + 3]) or '0') then redis.call('ZREM', KEYS[K + 4], origin) end
end
return 1
`

/**
 * KEYS: log, ev, ids, rids, convs, then c:<peer> and in:<peer> per peer (ARGV order).
 * ARGV: keepConversations ('1': an archive holds what goes, so the conversation stays listed),
 * count of metas, the metas to remove (oldest first, as read), then the peers.
 * Retention, apart from the writes: removes exactly these entries (one already gone is
 * passed over). Returns how many went.
 */
export const TRIM = `
local keepConversations = ARGV[1] == '1'
local count = tonumber(ARGV[2])
local peerIndex = {}
for i = count + 3, #ARGV do peerIndex[ARGV[i]] = 5 + (i - count - 3) * 2 + 1 end
local removed = 0
for i = 3, count + 2 do
  local entry = ARGV[i]
  if redis.call('ZREM', KEYS[1], entry) == 1 then
    removed = removed + 1
    local seq, ts, peer, kind, dir, id = string.match(entry, '^(%d+)|(%d+)|([^|]*)|(%a)|(%a+)|([^|]*)|')
    redis.call('HDEL', KEYS[2], seq)
    local k = peerIndex[peer]
    if kind == 'm' and k then
      redis.call('ZREM', KEYS[k], seq)
      redis.call('ZREM', KEYS[k + 1], seq)
      if dir == 'in' then
        if string.sub(peer, 1, 2) ~= 'g:' then redis.call('HDEL', KEYS[4], peer .. '|' .. id, peer .. '|' .. id .. '|e') end
      else
        local record = redis.call('HGET', KEYS[3], id)
        if record and string.match(record, '^(%d+)|') == seq then redis.call('HDEL', KEYS[3], id, id .. '|e') end
      end
    end
    -- Trimmed in seq order: once the conversation's last event (of any kind) goes, all of it has.
    local last = redis.call('ZSCORE', KEYS[5], peer)
    if not keepConversations and last and tonumber(last) <= tonumber(seq) then redis.call('ZREM', KEYS[5], peer) end
  end
end
return removed
`

/** KEYS: log, ev. ARGV: after, limit. Returns {meta, event, meta, event, ...} for seq > after, oldest first. */
export const READ_LOG = `
local metas = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'LIMIT', 0, tonumber(ARGV[2]))
if #metas == 0 then return {} end
local seqs = {}
for i, m in ipairs(metas) do seqs[i] = string.match(m, '^(%d+)|') end
local events = redis.call('HMGET', KEYS[2], unpack(seqs))
local out = {}
for i, m in ipairs(metas) do
  if events[i] then table.insert(out, m); table.insert(out, events[i]) end
end
return out
`

/** KEYS: per user (3 each, one slot): seq, ev, log. ARGV: per user: peer, ts, tail. Appends each as a receipt-kind event; returns the seqs. */
export const NOTICES = `
local out = {}
for i = 1, #KEYS / 3 do
  local K, A = (i - 1) * 3, (i - 1) * 3
  local peer, ts, tail = ARGV[A + 1], ARGV[A + 2], ARGV[A + 3]
  local seq = redis.call('INCR', KEYS[K + 1])
  redis.call('HSET', KEYS[K + 2], seq, '{"seq":' .. seq .. ',' .. tail)
  redis.call('ZADD', KEYS[K + 3], seq, seq .. '|' .. ts .. '|' .. peer .. '|r|in||0')
  table.insert(out, seq)
end
return out
`

/**
 * KEYS: cur, seq, the user's presence hash (clientId → connection: who is connected, on any
 * process; same slot). ARGV: user, device, maxSessions (0: no bound). Returns {cursor, created, evicted device...}.
 * A new cursor starts at the user's head. If the user then holds more than maxSessions cursors,
 * the ones furthest behind (lowest seq, then device id) of devices not connected are dropped in
 * this same script: a session is never evicted while its device is connected anywhere.
 */
export const OPEN_CURSOR = `
local user, device, max = ARGV[1], ARGV[2], tonumber(ARGV[3])
local key = KEYS[1]
local current = redis.call('HGET', key, device)
if current then return {tonumber(current), 0} end
local head = tonumber(redis.call('GET', KEYS[2]) or '0')
local out = {head, 1}
local excess = max > 0 and redis.call('HLEN', key) + 1 - max or 0
if excess > 0 then
  local connected = {}
  for _, clientId in ipairs(redis.call('HKEYS', KEYS[3])) do connected[clientId] = true end
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

/** KEYS: each user's cur (one slot). ARGV: (device, seq) per key. Moves each existing cursor forward only. */
export const SAVE_CURSORS = `
for i = 1, #KEYS do
  local device, seq = ARGV[2 * i - 1], tonumber(ARGV[2 * i])
  local current = redis.call('HGET', KEYS[i], device)
  -- A cursor dropped or evicted meanwhile is not brought back by a late save.
  if current and seq > tonumber(current) then redis.call('HSET', KEYS[i], device, seq) end
end
return 1
`

/** KEYS: blocks. ARGV: user, since, limit (0: none). Returns since (the first one, if already blocked), or 'limit'. */
export const BLOCK = `
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if existing then return existing end
local limit = tonumber(ARGV[3])
if limit > 0 and redis.call('HLEN', KEYS[1]) >= limit then return 'limit' end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return ARGV[2]
`
