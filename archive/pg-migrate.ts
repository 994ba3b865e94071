// The archive's schema on PostgreSQL: the numbered SQL migrations of
// archive/migrations/, applied by node-pg-migrate (pending ones in one
// transaction, under its advisory lock, so servers starting together wait
// for one another instead of failing). Run at start by PgArchive.open and by
// `npm run migrate` (server/migrate-archive.ts).
import { fileURLToPath } from 'node:url'
import { runner } from 'node-pg-migrate'

export const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations', import.meta.url))
/** Which migrations have run (its own table: the database may hold other schemas' history). */
export const MIGRATIONS_TABLE = 'archive_migrations'

/** Applies the pending migrations; returns the names of those it ran. `log`: progress lines (default: none). */
export async function migrateArchive (databaseUrl: string, log: (line: string) => void = () => {}): Promise<string[]> {
  const ran = await runner({
    databaseUrl,
    dir: MIGRATIONS_DIR,
    migrationsTable: MIGRATIONS_TABLE,
    direction: 'up',
    singleTransaction: true,
    checkOrder: true,
    advisoryLockMode: 'wait',
    logger: { debug: () => {}, info: log, warn: log, error: log }
  })
  return ran.map((migration) => migration.name)
}
