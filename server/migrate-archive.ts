// `npm run migrate`: brings the archive's PostgreSQL schema (DATABASE_URL) up
// to date (archive/migrations/, archive/pg-migrate.ts). Servers do the same
// when they start; this is for doing it ahead of a deploy. Safe to run again
// (nothing pending: nothing done) and beside running servers (they wait on
// the same lock). Exit 0: up to date; 1: failed (nothing half-applied: the
// pending migrations run in one transaction).
import { migrateArchive } from '../archive/pg-migrate.ts'

const out = (line: string): void => { process.stdout.write(line + '\n') }

const url = process.env.DATABASE_URL
if (url === undefined || url === '') {
  process.stderr.write('usage: DATABASE_URL=postgres://user@host:5432/db npm run migrate\n')
  process.exit(1)
}

try {
  const target = new URL(url)
  out(`migrating the archive schema on ${target.host}${target.pathname}`)
  const ran = await migrateArchive(url)
  out(ran.length === 0 ? 'up to date: nothing to run' : `applied: ${ran.join(', ')}`)
} catch (error) {
  process.stderr.write(`migration failed: ${(error as Error).message}\n`)
  process.exitCode = 1
}
