// A connection to the product's Redis: one server (REDIS_URL) or a Redis
// Cluster (ioredis' Cluster routes each command to the primary of its slot).
// Stores take this type, never a plain Redis, so every store runs on both.
import type { Cluster, Redis } from 'ioredis'

export type RedisClient = Redis | Cluster

/**
 * Defines a script whose caller passes the number of keys first (a variable
 * key list, all in one slot). Such a command is never auto-pipelined:
 * ioredis' auto-pipelining picks a cluster node by a command's first
 * argument, which here is the key count, not a key (a pipeline then mixes
 * slots and fails); sent on its own, it is routed by its keys.
 */
export function defineVariadicScript (redis: RedisClient, name: string, lua: string): void {
  redis.defineCommand(name, { lua })
  const ignored = redis.options.autoPipeliningIgnoredCommands
  if (ignored !== undefined && !ignored.includes(name)) ignored.push(name)
  else if (ignored === undefined) redis.options.autoPipeliningIgnoredCommands = [name]
}
