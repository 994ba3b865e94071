// Redis mode with PostgreSQL, isolated: a redis-server of the test's own (the
// archive's pending index and leases are per Redis, so two test files sharing
// a Redis database would archive each other's users into their own
// PostgreSQL) and a database of its own, both removed at teardown.
import { freePort, startServerProcess, tempDataDir, type ServerHandle, type StartOptions } from './server-process.ts'
import { startRedisServer, type OwnRedis } from './redis-server.ts'
import { createTestDatabase, type TestDatabase } from './postgres.ts'
import { archiveOpen } from './metrics.ts'

export interface ArchivedRedis {
  redis: OwnRedis
  db: TestDatabase
  /** A server process on this Redis and database (several may share them), once its archive is open. */
  start (options?: Omit<StartOptions, 'mode'>): Promise<ServerHandle>
  close (): Promise<void>
}

export async function archivedRedis (): Promise<ArchivedRedis> {
  const redis = await startRedisServer(await freePort(), tempDataDir())
  const db = await createTestDatabase()
  return {
    redis,
    db,
    async start (options = {}) {
      const server = await startServerProcess({ ...options, mode: 'redis', env: { REDIS_URL: redis.url, DATABASE_URL: db.url, ...options.env } })
      // PostgreSQL is opened after the server is ready: until then search answers search_unavailable.
      await archiveOpen(server)
      return server
    },
    async close () {
      await redis.kill()
      await db.drop()
    }
  }
}
