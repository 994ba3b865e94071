// A Redis Cluster of a test's (or the benchmark's) own: 3 primaries and 3
// replicas of `redis-server --cluster-enabled yes` on spare ports, each with
// its own directory, created with `redis-cli --cluster create`, removed by
// stop(). Never touches the shared Redis on 6379.
import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Redis } from 'ioredis'
import { startRedisServer, type OwnRedis } from './redis-server.ts'

const run = promisify(execFile)

export interface OwnCluster {
  /** Every node, primaries first as created (a failover changes who is primary: ask `primaries()`). */
  nodes: OwnRedis[]
  /** `127.0.0.1:port,…` of every node: the value of REDIS_CLUSTER_NODES. */
  seeds: string
  /** The nodes that are primaries now, by port. */
  primaries (): Promise<number[]>
  /** The port of the primary that holds `key`'s slot now. */
  primaryOf (key: string): Promise<number>
  /** Resolves once every slot is served and every node agrees the cluster is ok. */
  settled (timeoutMs?: number): Promise<void>
  /** Starts the killed node on `port` again with its directory and nodes.conf: it rejoins, as a replica of whoever took its slots. */
  restart (port: number): Promise<void>
  /**
   * Moves `slot` to the primary on `toPort` as `redis-cli --cluster reshard` does:
   * IMPORTING on the target, MIGRATING on the source, MIGRATE of its keys
   * `batch` at a time with `pauseMs` between batches (so writes meet the
   * half-moved slot: ASK, TRYAGAIN), then SETSLOT NODE on every primary.
   * Resolves with how many keys it moved.
   */
  moveSlot (slot: number, toPort: number, options?: { batch?: number, pauseMs?: number }): Promise<number>
  stop (): Promise<void>
}

function portFree (port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createServer()
    probe.once('error', () => resolve(false))
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(true)))
  })
}

/** `count` ports p whose cluster bus port p + 10000 is free too, from a random start in 20000–29000. */
async function sparePorts (count: number): Promise<number[]> {
  const ports: number[] = []
  let port = 20_000 + Math.floor(Math.random() * 9_000)
  while (ports.length < count) {
    port++
    if (port > 29_999) port = 20_000
    if (await portFree(port) && await portFree(port + 10_000)) ports.push(port)
  }
  return ports
}

async function cli (port: number, ...args: string[]): Promise<string> {
  const { stdout } = await run('redis-cli', ['-p', String(port), ...args])
  return stdout
}

/** `extraArgs`: more redis-server arguments for every node, e.g. AOF. */
export async function startRedisCluster (extraArgs: string[] = []): Promise<OwnCluster> {
  const dir = await mkdtemp(join(tmpdir(), 'inboxd-cluster-'))
  const ports = await sparePorts(6)
  const startNode = (port: number): Promise<OwnRedis> => {
    const nodeDir = join(dir, String(port))
    return startRedisServer(port, nodeDir, ['--cluster-enabled', 'yes', '--cluster-config-file', join(nodeDir, 'nodes.conf'),
      '--cluster-node-timeout', '2000', '--appendonly', 'no', ...extraArgs])
  }
  const nodes = await Promise.all(ports.map(async (port) => {
    await run('mkdir', ['-p', join(dir, String(port))])
    return startNode(port)
  }))
  await run('redis-cli', ['--cluster', 'create', ...ports.map((port) => `127.0.0.1:${port}`), '--cluster-replicas', '1', '--cluster-yes'])

  async function settled (timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const alive = nodes.filter((node) => node.child.exitCode === null && node.child.signalCode === null)
      const states = await Promise.all(alive.map((node) => cli(node.port, 'cluster', 'info').catch(() => '')))
      const ok = states.every((info) => /cluster_state:ok/.test(info) && /cluster_slots_ok:16384/.test(info))
      if (ok) {
        // Every live replica has finished its first sync, so a failover test starts from replicated data.
        const roles = await Promise.all(alive.map((node) => cli(node.port, 'info', 'replication').catch(() => '')))
        if (roles.every((info) => !/role:slave/.test(info) || /master_link_status:up/.test(info))) return
      }
      if (Date.now() > deadline) throw new Error(`cluster on ${ports.join(',')} did not settle in ${timeoutMs} ms`)
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }
  await settled()

  async function primaries (): Promise<number[]> {
    const alive = nodes.find((node) => node.child.exitCode === null && node.child.signalCode === null)!
    const text = await cli(alive.port, 'cluster', 'nodes')
    return text.split('\n').filter((line) => /\bmaster\b/.test(line) && !/\bfail\b/.test(line))
      .map((line) => Number(/:(\d+)@/.exec(line)![1]))
  }

  /** Asks a live node: `fn` on a connection to it. */
  async function ask<T> (fn: (probe: Redis) => Promise<T>): Promise<T> {
    const alive = nodes.find((node) => node.child.exitCode === null && node.child.signalCode === null)!
    const probe = new Redis({ port: alive.port, host: '127.0.0.1', lazyConnect: true })
    try {
      await probe.connect()
      return await fn(probe)
    } finally {
      probe.disconnect()
    }
  }

  async function ownerOfSlot (probe: Redis, slot: number): Promise<number> {
    const ranges = await probe.cluster('SLOTS') as unknown as Array<[number, number, [string, number]]>
    const range = ranges.find(([from, to]) => slot >= from && slot <= to)
    if (range === undefined) throw new Error(`no node serves slot ${slot}`)
    return range[2][1]
  }

  async function primaryOf (key: string): Promise<number> {
    return ask(async (probe) => ownerOfSlot(probe, await probe.cluster('KEYSLOT', key) as number))
  }

  async function restart (port: number): Promise<void> {
    const index = nodes.findIndex((node) => node.port === port)
    if (index < 0) throw new Error(`no node on ${port}`)
    await nodes[index]!.kill()
    nodes[index] = await startNode(port)
  }

  async function moveSlot (slot: number, toPort: number, options: { batch?: number, pauseMs?: number } = {}): Promise<number> {
    const owner = await ask((probe) => ownerOfSlot(probe, slot))
    if (owner === toPort) return 0
    const from = new Redis({ port: owner, host: '127.0.0.1' })
    const to = new Redis({ port: toPort, host: '127.0.0.1' })
    try {
      const fromId = await from.cluster('MYID') as string
      const toId = await to.cluster('MYID') as string
      await to.cluster('SETSLOT', slot, 'IMPORTING', fromId)
      await from.cluster('SETSLOT', slot, 'MIGRATING', toId)
      let moved = 0
      for (;;) {
        const keys = await from.cluster('GETKEYSINSLOT', slot, options.batch ?? 1) as string[]
        if (keys.length === 0) break
        await from.call('MIGRATE', '127.0.0.1', String(toPort), '', '0', '5000', 'KEYS', ...keys)
        moved += keys.length
        if (options.pauseMs !== undefined) await new Promise((resolve) => setTimeout(resolve, options.pauseMs))
      }
      // The target first, so a client sent there by the source's MOVED finds it owning the slot.
      await to.cluster('SETSLOT', slot, 'NODE', toId)
      await from.cluster('SETSLOT', slot, 'NODE', toId)
      for (const port of await primaries()) {
        if (port !== owner && port !== toPort) await cli(port, 'cluster', 'setslot', String(slot), 'node', toId)
      }
      return moved
    } finally {
      from.disconnect()
      to.disconnect()
    }
  }

  return {
    nodes,
    seeds: ports.map((port) => `127.0.0.1:${port}`).join(','),
    primaries,
    primaryOf,
    settled,
    restart,
    moveSlot,
    async stop () {
      await Promise.all(nodes.map((node) => node.kill()))
      await rm(dir, { recursive: true, force: true })
    }
  }
}
