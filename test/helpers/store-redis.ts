// The Redis connections a store conformance suite runs on, opened as the
// server opens them (storage/redis-connection.ts): one Redis (a DB of the
// shared one on 6379) or a Redis Cluster of the test's own.
import { pino } from 'pino'
import { openCommands } from '../../storage/redis-connection.ts'
import type { RedisClient } from '../../storage/redis-client.ts'
import type { OwnCluster } from './redis-cluster.ts'
import { REDIS_BASE } from './server-process.ts'

const log = pino({ level: process.env.TEST_LOG ?? 'silent' })

export function singleRedis (db: number): Promise<RedisClient> {
  return openCommands({ kind: 'single', url: `${REDIS_BASE}/${db}` }, 'test', log)
}

export function clusterRedis (cluster: OwnCluster): Promise<RedisClient> {
  return openCommands({ kind: 'cluster', nodes: cluster.nodes.map(({ port }) => ({ host: '127.0.0.1', port })) }, 'test', log)
}

/** A store as two server processes hold it: one instance per connection, on the same Redis. */
export async function twoProcesses<S> (open: () => Promise<RedisClient>, make: (redis: RedisClient) => S): Promise<{ one: S, other: S, redis: RedisClient, close: () => Promise<void> }> {
  const [redis, second] = await Promise.all([open(), open()])
  return { one: make(redis), other: make(second), redis, close: async () => { redis.disconnect(); second.disconnect() } }
}
