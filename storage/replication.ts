// WAIT before an acknowledgement (REDIS_WAIT_REPLICAS): Redis replicates
// asynchronously, so a primary that dies right after answering a write can
// take it with it when its replica is promoted. `WAIT n timeout` blocks until
// n replicas have every write made so far on that connection.
//
// WAIT counts the writes of the connection it is sent on, so it must go to
// the connection the write went through: on one Redis that is the client;
// on a cluster, the cluster's own connection to the primary of the key's
// slot. While it waits that connection answers nothing else, so with a
// replica gone every command queued behind it waits the timeout too: give
// writes that WAIT a command connection of their own.
import type { Cluster, Redis } from 'ioredis'
import type { RedisClient } from './redis-client.ts'
import { isCluster } from './redis-connection.ts'
import { slotOf } from './redis-keys.ts'

/** Fewer replicas than asked for acknowledged in time: a storage outage (no PUBACK, 503), not a bad request. */
export class ReplicaTimeoutError extends Error {
  override readonly name = 'ReplicaTimeoutError'
  constructor (readonly wanted: number, readonly acknowledged: number, timeoutMs: number) {
    super(`NOREPLICAS ${acknowledged} of ${wanted} replicas acknowledged the write within ${timeoutMs} ms`)
  }
}

export interface ReplicationSettings {
  /** Replicas that must hold the write; 0 returns at once. */
  replicas: number
  timeoutMs: number
}

/** The cluster's connection to the primary that serves `key`'s slot now. */
function primaryConnection (cluster: Cluster, key: string): Redis {
  const nodeKey = cluster.slots[slotOf(key)]?.[0]
  const node = nodeKey === undefined ? undefined : cluster.nodes('master').find(({ options }) => `${options.host}:${options.port}` === nodeKey)
  if (node === undefined) throw new Error(`CLUSTERDOWN no connection to the primary of ${key}'s slot`)
  return node
}

/**
 * Resolves once `settings.replicas` replicas hold every write made so far
 * through `client` to the primary of `key`'s slot (call it after the write
 * resolved); throws ReplicaTimeoutError when fewer did within the timeout.
 */
export async function awaitReplicas (client: RedisClient, key: string, settings: ReplicationSettings): Promise<void> {
  if (settings.replicas === 0) return
  const conn = isCluster(client) ? primaryConnection(client, key) : client
  const acknowledged = Number(await conn.call('WAIT', settings.replicas, settings.timeoutMs))
  if (acknowledged < settings.replicas) throw new ReplicaTimeoutError(settings.replicas, acknowledged, settings.timeoutMs)
}

/**
 * WAIT before acknowledging, shared: every write that must reach a replica
 * before its PUBACK asks `after(key)` once its own write resolved. One WAIT
 * covers every write made before it on that connection, so while one is in
 * flight the callers arriving meanwhile share the next one (group commit),
 * instead of one blocking WAIT per message.
 */
export class ReplicaGate {
  readonly #client: RedisClient
  readonly #settings: ReplicationSettings
  readonly #chains = new Map<Redis | RedisClient, { running: Promise<void> | undefined, queued: Promise<void> | undefined }>()

  constructor (client: RedisClient, settings: ReplicationSettings) {
    this.#client = client
    this.#settings = settings
  }

  get enabled (): boolean { return this.#settings.replicas > 0 }

  after (key: string): Promise<void> {
    if (this.#settings.replicas === 0) return Promise.resolve()
    const conn = isCluster(this.#client) ? primaryConnection(this.#client, key) : this.#client
    let chain = this.#chains.get(conn)
    if (chain === undefined) this.#chains.set(conn, chain = { running: undefined, queued: undefined })
    const state = chain
    const start = (): Promise<void> => {
      const wait = this.#wait(conn).finally(() => { if (state.running === wait) state.running = undefined })
      state.running = wait
      return wait
    }
    if (state.running === undefined) return start()
    // The running WAIT may not cover this caller's write: the next one will.
    state.queued ??= state.running.then(() => {}, () => {}).then(() => {
      state.queued = undefined
      return start()
    })
    return state.queued
  }

  async #wait (conn: Redis | RedisClient): Promise<void> {
    const { replicas, timeoutMs } = this.#settings
    const acknowledged = Number(await (conn as Redis).call('WAIT', replicas, timeoutMs))
    if (acknowledged < replicas) throw new ReplicaTimeoutError(replicas, acknowledged, timeoutMs)
  }
}
