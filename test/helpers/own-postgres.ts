// A PostgreSQL of a test's own, on a spare port with a data directory of its
// own, so killing it harms no one else. Never the shared one on 5432.
// initdb and postgres refuse to run as root: when the tests run as root, both
// run as the `postgres` OS user (spawn's uid/gid), in a temp directory it owns.
// kill() and pause() signal the postmaster and every process it forked (each
// backend makes itself a process group leader, so they are found in /proc),
// as a crash or a freeze of the database machine would.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { chownSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
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
  /** SIGSTOP the postmaster and its backends: connections stay open, nothing answers (a frozen or hopelessly slow database). */
  pause (): void
  /** SIGCONT: it answers again. */
  resume (): void
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

/** The postmaster and its children (Linux /proc). */
function family (postmaster: number): number[] {
  const pids = [postmaster]
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8')
      // pid (comm) state ppid …: comm may hold spaces and parentheses.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (ppid === postmaster) pids.push(Number(name))
    } catch { /* gone meanwhile */ }
  }
  return pids
}

/** Signals each of `pids`; returns those still there (a zombie is gone: it holds no memory). */
function signal (pids: number[], name: NodeJS.Signals | 0): number[] {
  return pids.filter((pid) => {
    try {
      process.kill(pid, name)
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
      return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
    } catch { return false }
  })
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
    // Frozen first, so that none of them sees another die and acts on it.
    let pids = signal(family(running.pid), 'SIGSTOP')
    signal(pids, 'SIGKILL')
    await exited
    // Every backend gone too, else the next start finds their shared memory still in use.
    const deadline = Date.now() + 10_000
    while ((pids = signal(pids, 0)).length > 0) {
      if (Date.now() > deadline) throw new Error(`PostgreSQL's processes ${pids.join(', ')} did not exit`)
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }

  return {
    port,
    url,
    output: () => log,
    kill,
    pause () {
      if (child?.pid !== undefined) signal(family(child.pid), 'SIGSTOP')
    },
    resume () {
      if (child?.pid !== undefined) signal(family(child.pid), 'SIGCONT')
    },
    async start () {
      if (child !== undefined) return
      const started = spawn(join(BIN, 'postgres'), ['-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off'], {
        ...user,
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
