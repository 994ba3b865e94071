// `npm run migrate:redis`: moves a single Redis (REDIS_URL) from the key
// names before #20 to the owner-tagged ones (storage/migrate-redis-keys.ts).
// Stop every server first, run this, then start the new version. Safe to
// run again, or after being interrupted. Exit 0: done; 2: done, but some old
// keys were refused (listed; the new version had written under their new
// names); 1: failed (run it again).
import { Redis } from 'ioredis'
import { migrateRedisKeys, summary } from '../storage/migrate-redis-keys.ts'

const out = (line: string): void => { process.stdout.write(line + '\n') }

if ((process.env.REDIS_CLUSTER_NODES ?? '').trim() !== '') {
  process.stderr.write('REDIS_CLUSTER_NODES is set: a Redis Cluster never held the old key names (cluster mode came with them), so there is nothing to migrate. This tool is for one Redis: set REDIS_URL only.\n')
  process.exit(1)
}
const url = process.env.REDIS_URL
if (url === undefined || url === '') {
  process.stderr.write('usage: REDIS_URL=redis://host:6379/0 npm run migrate:redis   (stop every server first)\n')
  process.exit(1)
}

const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 })
redis.on('error', () => {}) // a failed command says why
try {
  await redis.connect()
  out(`migrating ${new URL(url).host}${new URL(url).pathname} to the #20 key names`)
  const started = Date.now()
  const result = await migrateRedisKeys(redis, { progress: out })
  out(`done in ${((Date.now() - started) / 1000).toFixed(1)} s`)
  for (const line of summary(result)) out(line)
  if (result.refused.length > 0) {
    out(`${result.refused.length} refused (old keys left in place):`)
    for (const line of result.refused) out(`  ${line}`)
    process.exitCode = 2
  }
} catch (error) {
  process.stderr.write(`migration failed: ${(error as Error).message}\nNothing is lost: run it again to finish.\n`)
  process.exitCode = 1
} finally {
  redis.disconnect()
}
