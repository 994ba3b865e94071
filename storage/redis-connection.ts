// Opens the connections of Redis mode, to one Redis (REDIS_URL) or to a Redis
// Cluster (REDIS_CLUSTER_NODES), with one outage behaviour for both:
//   command connections fail fast: no offline queue, a command in flight when
//     the connection (or its shard's primary) is lost fails at once, so the
//     doors answer 503 / send no PUBACK instead of waiting for the outage;
//   subscriber connections wait: a SUBSCRIBE made while disconnected waits for
//     the reconnect, and every channel is subscribed again once back;
//   both try again at most 200 ms apart however long Redis was gone, and log
//     one line when lost and one when back (not one per attempt).
// On a cluster, MOVED and ASK are followed (a slot moved: not an outage) and
// TRYAGAIN retried (a slot being migrated); CLUSTERDOWN and a lost primary
// fail the command, as an outage does on one Redis, until the replica is
// promoted and the slots are read again.
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis'
import type { Logger } from 'pino'
import type { RedisNode } from '../config/config.ts'
import type { RedisClient } from './redis-client.ts'
import { slotOf } from './redis-keys.ts'

export type RedisTarget = { kind: 'single', url: string } | { kind: 'cluster', nodes: RedisNode[] }

/** The target of a Redis-mode config, or undefined in embedded mode. */
export function redisTarget (config: { redisUrl: string | undefined, redisClusterNodes: RedisNode[] | undefined }): RedisTarget | undefined {
  if (config.redisClusterNodes !== undefined) return { kind: 'cluster', nodes: config.redisClusterNodes }
  if (config.redisUrl !== undefined) return { kind: 'single', url: config.redisUrl }
  return undefined
}

// ioredis' default backoff grows to 2 s: the server would come back up to 2 s after Redis.
export const reconnectSoon = (attempt: number): number => Math.min(attempt * 50, 200)

const COMMANDS = { lazyConnect: true, retryStrategy: reconnectSoon, enableOfflineQueue: false, maxRetriesPerRequest: 0 } as const satisfies RedisOptions
/** mqemitter-redis counts a failed SUBSCRIBE as done, and its messages would never come: it must wait instead. */
const SUBSCRIBER = { lazyConnect: true, retryStrategy: reconnectSoon, maxRetriesPerRequest: null } as const satisfies RedisOptions

function clusterOptions (kind: 'commands' | 'subscriber'): ClusterOptions {
  return {
    lazyConnect: true,
    clusterRetryStrategy: reconnectSoon,
    enableOfflineQueue: kind === 'subscriber',
    // Writes and reads go to the primary: a replica may lag, and a read after a write must see it.
    scaleReads: 'master',
    // A lost primary (or CLUSTERDOWN while a replica takes over) fails the command now, as on one
    // Redis; ioredis' default would retry it 16 times 100 ms apart, so about 1.6 s before failing anyway.
    retryDelayOnFailover: 0,
    retryDelayOnClusterDown: 0,
    retryDelayOnTryAgain: 100,
    slotsRefreshTimeout: 1_000,
    // A promoted replica is found by the next MOVED or by this refresh, whichever comes first.
    slotsRefreshInterval: 2_000,
    // Never auto-pipelined on a cluster: ioredis follows MOVED/ASK and retries TRYAGAIN only for a
    // command sent on its own (a pipeline is retried only when every command in it failed alike),
    // so during a slot move or after a failover batched commands would fail instead of following.
    // Commands still go out without waiting for each other's replies.
    enableAutoPipelining: false,
    redisOptions: {
      // Per node: a command in flight on a node that dies fails at once (the cluster then decides).
      maxRetriesPerRequest: kind === 'subscriber' ? null : 0,
      // Each node is reached as CLUSTER SLOTS names it; a lost one is dropped until the slots say otherwise.
      connectTimeout: 2_000
    }
  }
}

/** One line when a connection is lost and one when it is back, not one per reconnect attempt (five a second). */
export function logOutages (conn: RedisClient | Redis, name: string, log: Logger): void {
  let lost = false
  conn.on('error', (error: Error) => {
    if (lost) return
    lost = conn.status !== 'ready'
    log.warn({ err: error, connection: name }, lost ? 'redis connection lost; reconnecting' : 'redis connection error')
  })
  // A cluster reports a node it cannot reach here, not as its own error: at most a line per node per 30 s.
  const logged = new Map<string, number>()
  conn.on('node error', (error: Error, node: string) => {
    if (lost || (logged.get(node) ?? 0) > Date.now() - 30_000) return
    logged.set(node, Date.now())
    log.warn({ err: error, connection: name, node }, 'redis cluster node unreachable')
  })
  conn.on('ready', () => {
    if (lost) log.info({ connection: name }, 'redis connection back')
    lost = false
  })
}

export interface ConnectionOptions {
  /** Auto-pipelining on one Redis: commands of one event-loop turn go out in one write (never on a cluster: see clusterOptions). */
  autoPipelining?: boolean
}

/** A connected command connection that fails fast while Redis (or the key's shard) is unreachable. */
export async function openCommands (target: RedisTarget, name: string, log: Logger, options: ConnectionOptions = {}): Promise<RedisClient> {
  const autoPipelining = options.autoPipelining ?? true
  const conn: RedisClient = target.kind === 'single'
    ? new Redis(target.url, { ...COMMANDS, enableAutoPipelining: autoPipelining })
    : new Cluster(target.nodes, clusterOptions('commands'))
  logOutages(conn, name, log)
  await conn.connect()
  await nodesReady(conn)
  return conn
}

/**
 * A cluster connects to each node on its first command, and with no offline queue a command
 * that meets a node connection still connecting fails ("Connection is closed"): at start
 * that would be a lost message for nothing, so every primary is connected before use.
 */
async function nodesReady (conn: RedisClient): Promise<void> {
  if (!isCluster(conn)) return
  await Promise.all(conn.nodes('master').map((node) => node.ping().catch(() => {})))
}

/**
 * A connected connection for classic SUBSCRIBE, whose subscriptions survive
 * a reconnect (on a cluster: ioredis subscribes on another node when its
 * node is lost; classic PUBLISH reaches every node of a cluster).
 * Handed over connected: a subscriber handed a fresh one can SUBSCRIBE
 * before ioredis' ready check runs, and that error, emitted with no
 * listener, killed the process.
 */
export async function openSubscriber (target: RedisTarget, name: string, log: Logger): Promise<RedisClient> {
  const conn: RedisClient = target.kind === 'single'
    ? new Redis(target.url, SUBSCRIBER)
    : new Cluster(target.nodes, clusterOptions('subscriber'))
  logOutages(conn, name, log)
  await conn.connect()
  return conn
}

/** A plain connection to one node of a cluster, with the options the cluster gives its own. */
export function nodeConnection (node: RedisNode, options: RedisOptions = {}): Redis {
  return new Redis({ host: node.host, port: node.port, lazyConnect: true, connectTimeout: 2_000, ...options })
}

export function isCluster (client: RedisClient): client is Cluster {
  return (client as { isCluster?: boolean }).isCluster === true
}

export interface ShardSubscription {
  close (): void
}

type ClusterSlots = Array<[number, number, [string, number, ...unknown[]], ...unknown[]]>

/**
 * SSUBSCRIBE to one sharded channel (with `sharded: false` on one Redis: a
 * classic SUBSCRIBE), on the node that serves its slot: the
 * Redis itself, or on a cluster the primary of the slot (found with CLUSTER
 * SLOTS through `locator`, the command connection). When that subscription
 * is lost (the connection drops, the primary dies and a replica takes over,
 * the slot moves and Redis unsubscribes us) it is made again on whichever
 * node serves the slot then, at most 200 ms apart, and `onResubscribed` is
 * called once it holds: what was published meanwhile is gone.
 */
export async function subscribeShard (target: RedisTarget, locator: RedisClient, channel: string, name: string, log: Logger,
  onMessage: (message: Buffer) => void, onResubscribed: () => void, sharded = true): Promise<ShardSubscription> {
  const slot = slotOf(channel)
  let current: { conn: Redis, node: string } | undefined
  let closed = false
  let lost = false
  let attempt = 0
  let retry: NodeJS.Timeout | undefined

  async function locate (): Promise<{ node: string, options: RedisOptions & { host?: string, port?: number } }> {
    if (target.kind === 'single') return { node: target.url, options: {} }
    const ranges = await locator.call('CLUSTER', 'SLOTS') as ClusterSlots
    const range = ranges.find(([from, to]) => slot >= from && slot <= to)
    if (range === undefined) throw new Error(`CLUSTERDOWN no node serves slot ${slot} of ${channel}`)
    const [host, port] = range[2]
    return { node: `${host}:${port}`, options: { host, port } }
  }

  async function subscribe (): Promise<void> {
    const { node, options } = await locate()
    const settings: RedisOptions = { lazyConnect: true, retryStrategy: () => null, autoResubscribe: false, maxRetriesPerRequest: 0, connectTimeout: 2_000 }
    const conn = target.kind === 'single' ? new Redis(target.url, settings) : new Redis({ ...settings, ...options })
    conn.on(sharded ? 'smessageBuffer' : 'messageBuffer', (_channel: Buffer, message: Buffer) => onMessage(message))
    conn.on('error', (error: Error) => {
      // Redis unsubscribes us when the slot leaves the node (a reshard, or the node became a replica).
      if (/sunsubscribe/.test(error.message)) lose(conn, error)
    })
    conn.once('end', () => lose(conn))
    try {
      await conn.connect()
      await (sharded ? conn.ssubscribe(channel) : conn.subscribe(channel))
    } catch (error) {
      conn.disconnect()
      throw error
    }
    if (closed) { conn.disconnect(); return }
    current = { conn, node }
  }

  function lose (conn: Redis, error?: Error): void {
    if (current?.conn !== conn || closed) return
    current = undefined
    conn.disconnect()
    if (!lost) log.warn({ err: error, connection: name, channel }, 'redis shard subscription lost; subscribing again')
    lost = true
    again()
  }

  function again (): void {
    retry = setTimeout(() => {
      retry = undefined
      subscribe().then(() => {
        if (closed) return
        attempt = 0
        lost = false
        log.info({ connection: name, channel, node: current?.node }, 'redis shard subscription back')
        onResubscribed()
      }, () => { if (!closed) again() })
    }, reconnectSoon(++attempt))
  }

  await subscribe()
  // A slot that moved while the connection stayed up (the old node alive as a replica, or a reshard):
  // the cluster's periodic slot refresh says so even if Redis's unsubscribe was missed.
  const onRefresh = (): void => {
    if (current === undefined || !isCluster(locator)) return
    const now = locator.slots[slot]?.[0]
    if (now !== undefined && now !== current.node) lose(current.conn, new Error(`slot ${slot} moved from ${current.node} to ${now}`))
  }
  locator.on('refresh', onRefresh)
  return {
    close () {
      closed = true
      clearTimeout(retry)
      locator.off('refresh', onRefresh)
      current?.conn.disconnect()
      current = undefined
    }
  }
}
