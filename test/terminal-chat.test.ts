// The terminal chat example (examples/terminal-chat.ts, `npm run chat`) as
// real processes against the real server, in both storage modes: a 1:1 chat
// shows only its own conversation (not the groups the user is in), and a
// second invocation (`--new-group` while a chat is open, the README's steps)
// uses a device of its own, so neither takes the other's session over; the
// same conversation opened twice is refused instead. "Never shown" is
// checked after a later message in the same stream has arrived.
import t, { type Test } from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { modesUnderTest, startServerProcess, type ServerHandle } from './helpers/server-process.ts'
import { SECRET, token, uniqueUser } from './helpers/tokens.ts'
import { createClient, type ChatClient, type MessageEvent } from '../client-sdk/src/index.ts'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const REDIS_DB = 10
/** A state line other than the first `online` (a kicked session prints `offline`, then `connecting`). */
const NOT_ONLINE = /\(connection: (?!online\))/

class Terminal {
  readonly child: ChildProcess
  output = ''
  readonly exited: Promise<unknown[]>
  readonly #waiters = new Set<() => void>()

  /** What `npm run chat -- <args>` runs, with its state files in `stateDir`. */
  constructor (server: ServerHandle, stateDir: string, args: string[]) {
    this.child = spawn(process.execPath, ['--import', 'tsx', 'examples/terminal-chat.ts', ...args], {
      cwd: ROOT,
      env: { ...process.env, JWT_SECRET: SECRET, CHAT_URL: server.wsUrl, TMPDIR: stateDir },
      stdio: ['pipe', 'pipe', 'pipe']
    })
    this.exited = once(this.child, 'exit')
    const collect = (chunk: Buffer): void => {
      this.output += chunk.toString()
      for (const wake of this.#waiters) wake()
    }
    this.child.stdout!.on('data', collect)
    this.child.stderr!.on('data', collect)
    this.child.once('exit', () => { for (const wake of this.#waiters) wake() })
  }

  /** Resolves with the first match of `pattern` in the output (waiting for it). */
  async waitFor (pattern: RegExp, ms = 30_000): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.#waiters.delete(check); reject(new Error(`no ${pattern} in ${ms} ms; output:\n${this.output.slice(-2000)}`)) }, ms)
      const check = (): void => {
        const match = this.output.match(pattern)
        if (match === null && this.child.exitCode === null) return
        clearTimeout(timer)
        this.#waiters.delete(check)
        if (match === null) reject(new Error(`exited (${this.child.exitCode}) without ${pattern}; output:\n${this.output.slice(-2000)}`))
        else resolve(match)
      }
      this.#waiters.add(check)
      check()
    })
  }

  type (line: string): void { this.child.stdin!.write(`${line}\n`) }

  async quit (): Promise<number | null> {
    if (this.child.exitCode === null) this.type('/quit')
    await this.exited
    return this.child.exitCode
  }

  count (pattern: RegExp): number { return this.output.match(new RegExp(pattern, 'g'))?.length ?? 0 }
}

for (const mode of modesUnderTest()) {
  t.test(`${mode}: the terminal chat`, async (t) => {
    const server = await startServerProcess({ mode, redisDb: REDIS_DB })
    t.teardown(() => server.stop())
    const bob = uniqueUser('bob')
    const alice = uniqueUser('alice')
    const stateDir = mkdtempSync(join(tmpdir(), 'inboxd-chat-test-'))
    /** A terminal chat, killed at the end of test `t` if still running (a killed one leaves its lock file behind). */
    const open = (t: Test, ...args: string[]): Terminal => {
      const terminal = new Terminal(server, stateDir, args)
      t.teardown(() => { if (terminal.child.exitCode === null) terminal.child.kill('SIGKILL') })
      return terminal
    }
    // Alice on her phone, through the SDK.
    const phone: ChatClient = await createClient({ url: server.wsUrl, deviceId: 'phone', getToken: async () => token(alice) })
    t.teardown(() => phone.stop())
    const phoneGot = (match: (message: MessageEvent) => boolean): Promise<MessageEvent> => new Promise((resolve) => {
      const off = phone.on('message', (message) => { if (match(message)) { off(); resolve(message) } })
    })

    t.test('a 1:1 chat shows only its own conversation, not the groups', async (t) => {
      const group = await phone.groups.create('Trip', [bob])
      const chat = open(t, bob, alice)
      // Typing is for connected devices only: first see that the chat's session is live.
      await phone.send(bob, 'are you there')
      await chat.waitFor(new RegExp(`${alice}: are you there`))
      await phone.sendToGroup(group.id, 'for the whole group')
      phone.typingInGroup(group.id)
      phone.typing(bob)
      await phone.send(bob, 'just for bob')
      // Bob's log holds the group message before the 1:1 one: it was passed over, not yet to come.
      await chat.waitFor(new RegExp(`${alice}: just for bob`))
      await chat.waitFor(/is typing/)
      t.notMatch(chat.output, /for the whole group/, 'the group message is not shown')
      t.equal(chat.count(/is typing/), 1, 'only the 1:1 typing is shown')
      t.equal(await chat.quit(), 0, '/quit exits 0')
    })

    t.test('--new-group while a chat is open: two devices, no takeover, each shows its own conversation', async (t) => {
      const chat = open(t, bob, alice)
      await chat.waitFor(/connected as .* talking to/)
      const newGroup = open(t, bob, '--new-group', 'Weekend', alice)
      const [, groupId] = await newGroup.waitFor(/created group "Weekend": (\S+)/)
      await newGroup.waitFor(/in group "Weekend"/)

      const arrived = phoneGot((message) => message.group === groupId && message.body === 'hello weekend')
      newGroup.type('hello weekend')
      await arrived
      await phone.send(bob, 'ping bob')
      await chat.waitFor(new RegExp(`${alice}: ping bob`))
      await phone.sendToGroup(groupId!, 'pong group')
      await newGroup.waitFor(new RegExp(`${alice}: pong group`))

      t.notMatch(chat.output, NOT_ONLINE, 'the open chat never lost its connection')
      t.notMatch(newGroup.output, NOT_ONLINE, 'nor did the group chat')
      t.notMatch(chat.output, /hello weekend|pong group/, 'the 1:1 chat shows no group message')
      t.notMatch(newGroup.output, /ping bob/, 'the group chat shows no 1:1 message')

      await t.test('the same conversation twice is refused, not a takeover loop', async (t) => {
        const again = open(t, bob, alice)
        await again.waitFor(/already open/)
        t.equal(await again.quit(), 1, 'the second one exits')
        await phone.send(bob, 'still here')
        await chat.waitFor(new RegExp(`${alice}: still here`))
        t.notMatch(chat.output, NOT_ONLINE, 'the first one was never kicked')
      })

      t.equal(await newGroup.quit(), 0, '/quit exits 0')
      t.equal(await chat.quit(), 0, '/quit exits 0')
      await phone.send(bob, 'while you were away')
      const reopened = open(t, bob, alice)
      await reopened.waitFor(new RegExp(`${alice}: while you were away`))
      t.notMatch(reopened.output, /ping bob/, 'reopened, it catches up from where it stopped (its own state file), not from the start')
      t.equal(await reopened.quit(), 0, '/quit exits 0')
    })
  })
}
