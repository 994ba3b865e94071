// Key names and Lua scripts of the Redis presence store. Each script touches
// one owner's keys, declared in KEYS (one slot on a cluster):
//   inboxd:presence:{u:<user>}:p      hash clientId → `<node>|<token>`: the user's live connections
//                                     (presenceConnectionsKey: the log feed and the cursor script read it)
//   inboxd:presence:{u:<user>}:ps     the user's last state (JSON)
//   inboxd:presence:{n:<node>}:alive  heartbeat, expires unless the process refreshes it
//   inboxd:presence:{n:<node>}:conns  set of `<user>|<clientId>|<token>`: every connection the node
//                                     may have recorded in a user's hash (a superset: see redis-presence.ts)
//   inboxd:presence:nodes             set of node ids that may hold connections (one small key)
import { nodeTag, ownerKey, presenceConnectionsKey, userTag } from '../storage/redis-keys.ts'

export const userKeys = (user: string): [string, string] => [presenceConnectionsKey(user), ownerKey('presence', userTag(user), 'ps')]
export const aliveKey = (node: string): string => ownerKey('presence', nodeTag(node), 'alive')
export const nodeConnsKey = (node: string): string => ownerKey('presence', nodeTag(node), 'conns')
export const NODES_KEY = 'inboxd:presence:nodes'

const STATE = `
local function state(status, now) return '{"status":"' .. status .. '","ts":' .. now .. ',"lastSeen":' .. now .. '}' end
`

/** KEYS: p, ps. ARGV: clientId, `<node>|<token>`, now. Returns the online state if the user just came online. */
export const CONNECT = STATE + `
local before = redis.call('HLEN', KEYS[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if before > 0 then return false end
local s = state('online', ARGV[3])
redis.call('SET', KEYS[2], s)
return s
`

/**
 * KEYS: p, ps. ARGV: now, then pairs clientId, `<node>|<token>`. Forgets each
 * connection whose value is still that one (a takeover or a reconnect
 * elsewhere replaced it otherwise); returns the offline state if that left
 * the user with none. Run twice, the second finds nothing to forget.
 */
export const FORGET = STATE + `
local removed = false
for i = 2, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
    removed = true
  end
end
if not removed or redis.call('HLEN', KEYS[1]) > 0 then return false end
local s = state('offline', ARGV[1])
redis.call('SET', KEYS[2], s)
return s
`

/**
 * KEYS: alive, conns of a node. ARGV: the conns members that were forgotten.
 * Removes them; returns 1 if the node may now leave the nodes set (no
 * heartbeat, nothing recorded since), 0 if it is back or holds more.
 */
export const RELEASE_NODE = `
for i = 1, #ARGV, 1000 do redis.call('SREM', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV))) end
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('SCARD', KEYS[2]) > 0 then return 0 end
return 1
`
