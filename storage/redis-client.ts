// A connection to the product's Redis: one server (REDIS_URL) or a Redis
// Cluster (ioredis' Cluster routes each command to the primary of its slot).
// Stores take this type, never a plain Redis, so every store runs on both.
import type { Cluster, Redis } from 'ioredis'

export type RedisClient = Redis | Cluster
