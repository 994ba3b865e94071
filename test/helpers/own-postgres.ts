// A PostgreSQL of a test's own, on a spare port with a data directory of its
// own, so killing it harms no one else. Never the shared one on 5432.
// initdb and postgres refuse to run as root: when the tests run as root, both
// run as the `postgres` OS user (spawn's uid/gid), in a temp directory it owns.
// The postmaster leads a process group of its own, so kill() takes its
// backends down with it, as a crash of the database machine would.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { chownSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { freePort } from './server-process.ts'

const BIN = process.env.PG_BIN ?? '/usr/lib/postgresql/15/bin'
const READY_TIMEOUT_MS = 30_000

export interface OwnPostgres {
  port: number
  /** The `postgres` database as the `postgres` superuser (trust auth). */
  url: string
  /** Starts the server (again, after kill(): same port and data directory, so crash recovery); resolves once it answers a query. */
  start (): Promise<void>
  /** SIGKILL the postmaster and its backends; resolves once every one of them is gone. */
  kill (): Promise<void>
  /** Kills it and removes its directory. */
  remove (): Promise<void>
  /** Its log (stderr), for a failing test's message. */
  output (): string
}

/** The uid and gid to run PostgreSQL as: the `postgres` user when we are root, else ourselves. */
function runAs (): { uid: number, gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined
  const id = (flag: string): number => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim())
  return { uid: id('-u'), gid: id('-g') }
}

/** An initialised data directory on a spare port, not running yet: call start(). */
export async function createOwnPostgres (): Promise<OwnPostgres> {
  const user = runAs()
  const dir = mkdtempSync(join(tmpdir(), 'inboxd-pg-'))
  if (user !== undefined) chownSync(dir, user.uid, user.gid)
  const data = join(dir, 'data')
  const init = spawnSync(join(BIN, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C.UTF-8', '--no-sync'], { ...user, encoding: 'utf8' })
  if (init.status !== 0) {
    rmSync(dir, { recursive: true, force: true })
    throw new Error(`initdb failed (${init.status ?? init.signal}): ${init.stderr}${init.error?.message ?? ''}`)
  }
  const port = await freePort()
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`
  let child: ChildProcess | undefined
  let exited: Promise<void> = Promise.resolve()
  let log = ''

  async function kill (): Promise<void> {
    const running = child
    if (running?.pid === undefined) return
    child = undefined
    try { process.kill(-running.pid, 'SIGKILL') } catch { /* already gone */ }
    await exited
    // The backends are in the postmaster's group: gone once the group is empty (else the next start finds its shared memory in use).
    const deadline = Date.now() + 10_000
    for (;;) {
      try { process.kill(-running.pid, 0) } catch { return }
      if (Date.now() > deadline) throw new Error(`PostgreSQL's processes (group ${running.pid}) did not exit`)
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }

  return {
    port,
    url,
    output: () => log,
    kill,
    async start () {
      if (child !== undefined) return
      const started = spawn(join(BIN, 'postgres'), ['-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off'], {
        ...user,
        detached: true,
        stdio: ['ignore', 'ignore', 'pipe']
      })
      child = started
      started.stderr!.on('data', (chunk: Buffer) => { log += chunk.toString() })
      exited = new Promise((resolve) => started.once('exit', () => resolve()))
      let gone = false
      void exited.then(() => { gone = true })
      const deadline = Date.now() + READY_TIMEOUT_MS
      for (;;) {
        const client = new pg.Client({ connectionString: url })
        client.on('error', () => {})
        try {
          await client.connect()
          await client.query('SELECT 1')
          return
        } catch (error) {
          if (gone) throw new Error(`PostgreSQL exited before it was ready:\n${log}`)
          if (Date.now() > deadline) throw new Error(`PostgreSQL on ${port} not ready after ${READY_TIMEOUT_MS / 1000} s (${(error as Error).message}):\n${log}`)
        } finally {
          await client.end().catch(() => {})
        }
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
    },
    async remove () {
      await kill()
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

/** createOwnPostgres(), started. Pair with `t.teardown(() => postgres.remove())`. */
export async function startOwnPostgres (): Promise<OwnPostgres> {
  const postgres = await createOwnPostgres()
  try {
    await postgres.start()
  } catch (error) {
    await postgres.remove()
    throw error
  }
  return postgres
}
