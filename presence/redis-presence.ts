// Presence shared by every process on one Redis.
//   p:<user>           hash clientId → `<node>|<token>` (live connections)
//   ps:<user>          the user's last state (JSON)
//   node:<node>        heartbeat, expires NODE_TTL_MS after the process stops refreshing it
//   nodes              set of node ids that may hold connections
//   conns:<node>       set of `<user>|<clientId>|<node>|<token>` held by that node
// A process that dies stops its heartbeat; any live process then forgets the
// dead one's connections (sweep), so its users show offline within
// NODE_TTL_MS + SWEEP_MS, instead of Aedes' 3 × heartbeatInterval.
import type { Redis } from 'ioredis'
import { neverSeen, type PresenceChange, type PresenceRegistry, type PresenceState } from './presence-registry.ts'

const P = 'inboxd:presence:'
export const NODE_TTL_MS = 6_000
/** The user's live connections (`p:<user>`); the history store's cursor script reads it too. */
export const connectionsKey = (user: string): string => P + 'p:' + user
export const HEARTBEAT_MS = 2_000

const COMMON = `
local P = ARGV[1]
local function state(status, now) return '{"status":"' .. status .. '","ts":' .. now .. ',"lastSeen":' .. now .. '}' end
local function forget(user, clientId, value, now)
  if redis.call('HGET', P .. 'p:' .. user, clientId) ~= value then return false end
  redis.call('HDEL', P .. 'p:' .. user, clientId)
  if redis.call('HLEN', P .. 'p:' .. user) > 0 then return false end
  local s = state('offline', now)
  redis.call('SET', P .. 'ps:' .. user, s)
  return s
end
`

/** ARGV: prefix, user, clientId, node, token, now */
const CONNECT = COMMON + `
local user, clientId, node, token, now = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local value = node .. '|' .. token
local before = redis.call('HLEN', P .. 'p:' .. user)
redis.call('HSET', P .. 'p:' .. user, clientId, value)
redis.call('SADD', P .. 'conns:' .. node, user .. '|' .. clientId .. '|' .. value)
if before > 0 then return false end
local s = state('online', now)
redis.call('SET', P .. 'ps:' .. user, s)
return s
`

/** ARGV: prefix, user, clientId, node, token, now */
const DISCONNECT = COMMON + `
local user, clientId, node, token, now = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local value = node .. '|' .. token
redis.call('SREM', P .. 'conns:' .. node, user .. '|' .. clientId .. '|' .. value)
return forget(user, clientId, value, now)
`

/** ARGV: prefix, node, now. Forgets every connection of a node; returns {user, state, ...}. */
const FORGET_NODE = COMMON + `
local node, now = ARGV[2], ARGV[3]
local changes = {}
for _, entry in ipairs(redis.call('SMEMBERS', P .. 'conns:' .. node)) do
  local user, clientId, value = string.match(entry, '^([^|]+)|([^|]+)|(.+)$')
  local s = forget(user, clientId, value, now)
  if s then table.insert(changes, user); table.insert(changes, s) end
end
redis.call('DEL', P .. 'conns:' .. node)
redis.call('SREM', P .. 'nodes', node)
return changes
`

interface ScriptedRedis extends Redis {
  presenceConnect (...args: Array<string | number>): Promise<string | null>
  presenceDisconnect (...args: Array<string | number>): Promise<string | null>
  presenceForgetNode (...args: Array<string | number>): Promise<string[]>
}

const parse = (json: string | null): PresenceState | undefined => (json === null ? undefined : JSON.parse(json) as PresenceState)

function pairs (flat: string[]): PresenceChange[] {
  const changes: PresenceChange[] = []
  for (let i = 0; i < flat.length; i += 2) changes.push({ user: flat[i]!, state: JSON.parse(flat[i + 1]!) as PresenceState })
  return changes
}

export class RedisPresence implements PresenceRegistry {
  readonly #redis: ScriptedRedis
  readonly #node: string
  #heartbeat: NodeJS.Timeout | undefined

  private constructor (redis: Redis, node: string) {
    redis.defineCommand('presenceConnect', { numberOfKeys: 0, lua: CONNECT })
    redis.defineCommand('presenceDisconnect', { numberOfKeys: 0, lua: DISCONNECT })
    redis.defineCommand('presenceForgetNode', { numberOfKeys: 0, lua: FORGET_NODE })
    this.#redis = redis as ScriptedRedis
    this.#node = node
  }

  /** Registers this node and starts its heartbeat. */
  static async join (redis: Redis, node: string): Promise<RedisPresence> {
    const presence = new RedisPresence(redis, node)
    await presence.#beat()
    await redis.sadd(P + 'nodes', node)
    presence.#heartbeat = setInterval(() => { presence.#beat().catch(() => {}) }, HEARTBEAT_MS)
    presence.#heartbeat.unref()
    return presence
  }

  async #beat (): Promise<void> {
    await this.#redis.set(P + 'node:' + this.#node, '1', 'PX', NODE_TTL_MS)
  }

  async connected (user: string, clientId: string, token: string, now: number): Promise<PresenceState | undefined> {
    return parse(await this.#redis.presenceConnect(P, user, clientId, this.#node, token, now))
  }

  async disconnected (user: string, clientId: string, token: string, now: number): Promise<PresenceState | undefined> {
    return parse(await this.#redis.presenceDisconnect(P, user, clientId, this.#node, token, now))
  }

  async connectedDevices (user: string): Promise<string[]> {
    return this.#redis.hkeys(connectionsKey(user))
  }

  async isConnected (user: string, clientId: string): Promise<boolean> {
    return (await this.#redis.hexists(connectionsKey(user), clientId)) === 1
  }

  async states (users: string[]): Promise<PresenceState[]> {
    if (users.length === 0) return []
    const pipeline = this.#redis.pipeline()
    for (const user of users) {
      pipeline.hlen(P + 'p:' + user)
      pipeline.get(P + 'ps:' + user)
    }
    const replies = (await pipeline.exec())!.map(([, value]) => value)
    return users.map((_, i) => {
      const stored = parse(replies[i * 2 + 1] as string | null) ?? neverSeen
      // The hash is the truth; the stored state only adds the timestamps.
      const connected = Number(replies[i * 2]) > 0
      return connected ? { ...stored, status: 'online' as const, lastSeen: Date.now() } : { ...stored, status: 'offline' as const }
    })
  }

  async sweep (now: number): Promise<PresenceChange[]> {
    const nodes = (await this.#redis.smembers(P + 'nodes')).filter((node) => node !== this.#node)
    const changes: PresenceChange[] = []
    for (const node of nodes) {
      if ((await this.#redis.exists(P + 'node:' + node)) === 1) continue
      changes.push(...pairs(await this.#redis.presenceForgetNode(P, node, now)))
    }
    return changes
  }

  async leave (now: number): Promise<PresenceChange[]> {
    clearInterval(this.#heartbeat)
    const changes = pairs(await this.#redis.presenceForgetNode(P, this.#node, now))
    await this.#redis.del(P + 'node:' + this.#node)
    return changes
  }
}
