// A PostgreSQL database of a test file's own: created with a random name on
// the test server (TEST_DATABASE_URL's, or postgres://postgres@127.0.0.1:5432)
// and dropped at teardown, so test files never share tables.
import { randomBytes } from 'node:crypto'
import pg from 'pg'

export const POSTGRES_BASE = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'

/** The URL of `database` on the test server. */
function urlOf (database: string): string {
  const url = new URL(POSTGRES_BASE)
  url.pathname = `/${database}`
  return url.toString()
}

/** The server's maintenance database, where CREATE / DROP DATABASE run. */
async function admin<T> (work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: urlOf('postgres') })
  await client.connect()
  try {
    return await work(client)
  } finally {
    await client.end()
  }
}

export interface TestDatabase {
  name: string
  url: string
  /** Terminates what is still connected, then drops the database. */
  drop (): Promise<void>
}

/** A new, empty database. Pair with `t.teardown(() => db.drop())`. */
export async function createTestDatabase (prefix = 'inboxd_test'): Promise<TestDatabase> {
  const name = `${prefix}_${randomBytes(6).toString('hex')}`
  await admin((client) => client.query(`CREATE DATABASE ${name}`))
  return {
    name,
    url: urlOf(name),
    drop: () => admin(async (client) => {
      await client.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [name])
      await client.query(`DROP DATABASE IF EXISTS ${name}`)
    })
  }
}
