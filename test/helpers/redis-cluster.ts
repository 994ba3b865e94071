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
  const nodes = await Promise.all(ports.map(async (port) => {
    const nodeDir = join(dir, String(port))
    await run('mkdir', ['-p', nodeDir])
    return startRedisServer(port, nodeDir, ['--cluster-enabled', 'yes', '--cluster-config-file', join(nodeDir, 'nodes.conf'),
      '--cluster-node-timeout', '2000', '--appendonly', 'no', ...extraArgs])
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

  async function primaryOf (key: string): Promise<number> {
    const alive = nodes.find((node) => node.child.exitCode === null && node.child.signalCode === null)!
    const probe = new Redis({ port: alive.port, host: '127.0.0.1', lazyConnect: true })
    try {
      await probe.connect()
      const slot = await probe.cluster('KEYSLOT', key) as number
      const ranges = await probe.cluster('SLOTS') as unknown as Array<[number, number, [string, number]]>
      const range = ranges.find(([from, to]) => slot >= from && slot <= to)
      if (range === undefined) throw new Error(`no node serves slot ${slot}`)
      return range[2][1]
    } finally {
      probe.disconnect()
    }
  }

  return {
    nodes,
    seeds: ports.map((port) => `127.0.0.1:${port}`).join(','),
    primaries,
    primaryOf,
    settled,
    async stop () {
      await Promise.all(nodes.map((node) => node.kill()))
      await rm(dir, { recursive: true, force: true })
    }
  }
}
