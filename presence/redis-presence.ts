// Presence shared by every process through Redis (one server or a cluster);
// keys and scripts in redis-presence-scripts.ts. A process that dies stops
// its heartbeat; any live process then forgets the dead one's connections
// (sweep), so its users show offline within the heartbeat's TTL + the sweep
// interval, instead of Aedes' 3 × heartbeatInterval.
//
// A connection is recorded under two owners, so in two steps: the user's
// hash (what everyone reads) and the node's `conns` set (what a sweep of the
// node reads). They are ordered so that `conns` always holds at least what
// the node holds in users' hashes, whatever step a crash interrupts:
//   connect:    SADD conns, then the user's script;
//   disconnect: the user's script, then SREM conns.
// An entry of `conns` with no matching hash value is harmless: forgetting a
// connection checks its value `<node>|<token>`, which is also what keeps a
// sweep from forgetting a connection that moved (a takeover, a reconnect) to
// a live process, and makes a sweep repeatable: run twice, or by two
// processes at once, each offline change is reported by one of them only.
import type { RedisClient } from '../storage/redis-client.ts'
import { presenceConnectionsKey } from '../storage/redis-keys.ts'
import { neverSeen, type PresenceChange, type PresenceRegistry, type PresenceState } from './presence-registry.ts'
import { aliveKey, CONNECT, FORGET, NODES_KEY, nodeConnsKey, RELEASE_NODE, userKeys } from './redis-presence-scripts.ts'

export const NODE_TTL_MS = 6_000
export const HEARTBEAT_MS = 2_000
/** The user's live connections; kept as an alias for those who import it from here. */
export const connectionsKey = presenceConnectionsKey

/** `conns` members per RELEASE_NODE call: keeps each script short. */
const MEMBERS = 1_000

interface PresenceCommands {
  presenceConnect (p: string, ps: string, clientId: string, value: string, now: number): Promise<string | null>
  presenceForget (p: string, ps: string, now: number, ...connections: string[]): Promise<string | null>
  presenceReleaseNode (...args: string[]): Promise<number>
}

export interface JoinOptions {
  /** How long the heartbeat lives unless refreshed: a process silent this long is swept. */
  ttlMs?: number
  heartbeatMs?: number
}

interface UserConnections { user: string, connections: Array<[clientId: string, value: string]> }

const parse = (json: string | null): PresenceState | undefined => (json === null ? undefined : JSON.parse(json) as PresenceState)
const member = (user: string, clientId: string, token: string): string => `${user}|${clientId}|${token}`

function chunks<T> (items: T[], size: number): T[][] {
  const out: T[][] = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}

export class RedisPresence implements PresenceRegistry {
  readonly #redis: RedisClient
  readonly #scripts: PresenceCommands
  readonly #node: string
  readonly #ttlMs: number
  #heartbeat: NodeJS.Timeout | undefined

  private constructor (redis: RedisClient, node: string, ttlMs: number) {
    redis.defineCommand('presenceConnect', { numberOfKeys: 2, lua: CONNECT })
    redis.defineCommand('presenceForget', { numberOfKeys: 2, lua: FORGET })
    redis.defineCommand('presenceReleaseNode', { numberOfKeys: 2, lua: RELEASE_NODE })
    this.#redis = redis
    this.#scripts = redis as unknown as PresenceCommands
    this.#node = node
    this.#ttlMs = ttlMs
  }

  /** Registers this node and starts its heartbeat. */
  static async join (redis: RedisClient, node: string, { ttlMs = NODE_TTL_MS, heartbeatMs = HEARTBEAT_MS }: JoinOptions = {}): Promise<RedisPresence> {
    const presence = new RedisPresence(redis, node, ttlMs)
    await presence.#beat()
    presence.#heartbeat = setInterval(() => { presence.#beat().catch(() => {}) }, heartbeatMs)
    presence.#heartbeat.unref()
    return presence
  }

  /** Also joins `nodes` again: a process swept while it only stalled is found again when it dies for good. */
  async #beat (): Promise<void> {
    await this.#redis.set(aliveKey(this.#node), '1', 'PX', this.#ttlMs)
    await this.#redis.sadd(NODES_KEY, this.#node)
  }

  async connected (user: string, clientId: string, token: string, now: number): Promise<PresenceState | undefined> {
    await this.#redis.sadd(nodeConnsKey(this.#node), member(user, clientId, token))
    const [p, ps] = userKeys(user)
    return parse(await this.#scripts.presenceConnect(p, ps, clientId, `${this.#node}|${token}`, now))
  }

  async disconnected (user: string, clientId: string, token: string, now: number): Promise<PresenceState | undefined> {
    const [change] = await this.#forget([{ user, connections: [[clientId, `${this.#node}|${token}`]] }], now)
    // Failing here leaves a stale entry in conns (harmless, see top); the change happened and is reported.
    await this.#redis.srem(nodeConnsKey(this.#node), member(user, clientId, token)).catch(() => {})
    return change?.state
  }

  async connectedDevices (user: string): Promise<string[]> {
    return this.#redis.hkeys(presenceConnectionsKey(user))
  }

  async isConnected (user: string, clientId: string): Promise<boolean> {
    return (await this.#redis.hexists(presenceConnectionsKey(user), clientId)) === 1
  }

  async states (users: string[]): Promise<PresenceState[]> {
    // Single-key commands (auto-pipelined when the connection is): each goes to its own slot on a cluster.
    const replies = await Promise.all(users.map(async (user) => {
      const [p, ps] = userKeys(user)
      return Promise.all([this.#redis.hlen(p), this.#redis.get(ps)])
    }))
    const now = Date.now()
    return replies.map(([connections, json]) => {
      const stored = parse(json) ?? neverSeen
      // The hash is the truth; the stored state only adds the timestamps.
      return connections > 0 ? { ...stored, status: 'online' as const, lastSeen: now } : { ...stored, status: 'offline' as const }
    })
  }

  async sweep (now: number): Promise<PresenceChange[]> {
    const nodes = (await this.#redis.smembers(NODES_KEY)).filter((node) => node !== this.#node)
    const alive = await Promise.all(nodes.map((node) => this.#redis.exists(aliveKey(node))))
    const changes: PresenceChange[] = []
    for (const [i, node] of nodes.entries()) {
      if (alive[i] === 0) changes.push(...await this.#forgetNode(node, now))
    }
    return changes
  }

  async leave (now: number): Promise<PresenceChange[]> {
    clearInterval(this.#heartbeat)
    await this.#redis.del(aliveKey(this.#node))
    return this.#forgetNode(this.#node, now)
  }

  /**
   * Forgets every connection a node recorded (one script per user), then
   * the `conns` entries read (not those recorded since), then the node unless
   * it is back. A sweep that dies midway leaves `conns` and `nodes` as they
   * were: the next one does it again.
   */
  async #forgetNode (node: string, now: number): Promise<PresenceChange[]> {
    const members = await this.#redis.smembers(nodeConnsKey(node))
    const byUser = new Map<string, UserConnections>()
    for (const entry of members) {
      const [user, clientId, token] = entry.split('|')
      if (user === undefined || clientId === undefined || token === undefined) continue
      let connections = byUser.get(user)
      if (connections === undefined) byUser.set(user, connections = { user, connections: [] })
      connections.connections.push([clientId, `${node}|${token}`])
    }
    const changes = await this.#forget([...byUser.values()], now)
    let free = 0
    for (const part of members.length === 0 ? [[]] : chunks(members, MEMBERS)) {
      free = await this.#scripts.presenceReleaseNode(aliveKey(node), nodeConnsKey(node), ...part)
    }
    if (free === 1) await this.#redis.srem(NODES_KEY, node)
    return changes
  }

  /**
   * One FORGET per user (the keys of one owner): on a cluster each goes to
   * its slot's primary, and an auto-pipelining connection sends each
   * primary's in one write.
   */
  async #forget (users: UserConnections[], now: number): Promise<PresenceChange[]> {
    const changes = await Promise.all(users.map(async ({ user, connections }) => {
      const json = await this.#scripts.presenceForget(...userKeys(user), now, ...connections.flat())
      return json === null ? [] : [{ user, state: JSON.parse(json) as PresenceState }]
    }))
    return changes.flat()
  }
}
