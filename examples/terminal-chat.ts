// A terminal chat between two users, built only on the client SDK.
//
//   export JWT_SECRET=...               (the server's secret; demo tokens are minted here)
//   npm run chat -- alice bob           (shell 1)
//   npm run chat -- bob alice           (shell 2)
//   npm run chat -- alice bob --e2ee    (end-to-end encrypted; both sides need --e2ee)
//   npm run chat -- alice --new-group "Trip" bob carol   (creates a group, prints its id, chats in it)
//   npm run chat -- bob --group <groupId>                (chats in a group you are a member of)
//
// Type a line to send it. /history shows the last 20 messages, /quit leaves.
// Kill it at any time: the outbox and the last seq are kept in a file, so
// the next start sends what was unsent and catches up on what was missed.
//
// Each conversation is a device of its own (`terminal-dm-<peer>`,
// `terminal-group-<groupId>`) with its own state file, so chats in several
// shells never take each other's MQTT session over; the same conversation
// twice is refused (a lock file). --new-group creates the group over REST
// (no MQTT session) and then opens it like --group.
import { createInterface } from 'node:readline'
import { readFileSync, writeFileSync, existsSync, openSync, closeSync, unlinkSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createSigner } from 'fast-jwt'
import { ChatClient, createClient, generateKeyPair, toBase64, fromBase64, type ClientStorage, type KeyPair, type MessageEvent } from '@inboxd/client'

const [me, peer, ...flags] = process.argv.slice(2)
const secret = process.env.JWT_SECRET
if (me === undefined || peer === undefined || !secret) {
  console.error('usage: JWT_SECRET=... npm run chat -- <me> <peer> [--e2ee]\n       npm run chat -- <me> --group <groupId>\n       npm run chat -- <me> --new-group <name> <member>...')
  process.exit(1)
}
const groupMode = peer === '--group' || peer === '--new-group'
const url = process.env.CHAT_URL ?? 'ws://localhost:8080/mqtt'
const e2ee = flags.includes('--e2ee') && !groupMode

/** The SDK's state in a small JSON file per user, so it survives restarts. */
class FileStorage implements ClientStorage {
  readonly #values: Record<string, string>
  constructor (private readonly path: string) {
    this.#values = existsSync(path) ? JSON.parse(readFileSync(path, 'utf8')) as Record<string, string> : {}
  }

  async get (key: string): Promise<string | undefined> { return this.#values[key] }
  async set (key: string, value: string): Promise<void> {
    this.#values[key] = value
    writeFileSync(this.path, JSON.stringify(this.#values))
  }
}

function keyPairFor (user: string): KeyPair {
  const path = join(tmpdir(), `inboxd-chat-${user}.key.json`)
  if (existsSync(path)) {
    const saved = JSON.parse(readFileSync(path, 'utf8')) as { publicKey: string, secretKey: string }
    return { publicKey: fromBase64(saved.publicKey), secretKey: fromBase64(saved.secretKey) }
  }
  const keyPair = generateKeyPair()
  writeFileSync(path, JSON.stringify({ publicKey: toBase64(keyPair.publicKey), secretKey: toBase64(keyPair.secretKey) }), { mode: 0o600 })
  return keyPair
}

const signToken = createSigner({ key: secret, algorithm: 'HS256', expiresIn: 15 * 60 * 1000 })
const time = (ts: number): string => new Date(ts).toLocaleTimeString()
const show = (message: MessageEvent): string =>
  `[${time(message.ts)}] ${message.from}: ${message.recalled === true ? '(recalled)' : message.decryptError !== undefined ? `(cannot decrypt: ${message.decryptError})` : String(message.body)}`

const getToken = async (): Promise<string> => signToken({ sub: me })

/** A device id (at most 128 characters, as the server requires) for one conversation. */
function deviceFor (conversation: string): string {
  const id = `terminal-${conversation}`
  return id.length <= 128 ? id : `terminal-${createHash('sha256').update(conversation).digest('hex').slice(0, 32)}`
}

/** One process per device: a second one would take the first one's session over, and back, forever. */
function lock (deviceId: string): void {
  const path = join(tmpdir(), `inboxd-chat-${me}-${deviceId}.lock`)
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, 'wx')
      writeFileSync(fd, String(process.pid))
      closeSync(fd)
      process.on('exit', () => { try { unlinkSync(path) } catch {} })
      return
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
      const pid = Number(readFileSync(path, 'utf8'))
      if (alive(pid)) {
        console.error(`this conversation is already open for ${me} (process ${pid}); close that one first`)
        process.exit(1)
      }
      unlinkSync(path) // left by a process that was killed
    }
  }
  throw new Error(`cannot lock ${path}`)
}

function alive (pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false
  try { process.kill(pid, 0); return true } catch (error) { return (error as NodeJS.ErrnoException).code === 'EPERM' }
}

let groupId: string | undefined
if (peer === '--new-group') {
  // Over REST only: this client is never started, so it holds no MQTT session.
  const group = await new ChatClient({ url, deviceId: 'terminal-setup', getToken }).groups.create(flags[0] ?? 'group', flags.slice(1))
  console.log(`created group "${group.name}": ${group.id}  (open it again with: npm run chat -- ${me} --group ${group.id})`)
  groupId = group.id
} else if (peer === '--group') {
  groupId = flags[0] ?? ''
}

// Distinct prefixes, so no peer's name can make a group's device id.
const deviceId = deviceFor(groupId !== undefined ? `group-${groupId}` : `${e2ee ? 'e2ee' : 'dm'}-${peer}`)
lock(deviceId)
const client = await createClient({
  url,
  deviceId,
  getToken,
  storage: new FileStorage(join(tmpdir(), `inboxd-chat-${me}-${deviceId}.state.json`)),
  ...(e2ee ? { e2ee: { keyPair: keyPairFor(me) } } : {})
})
if (e2ee) await client.publishKey()
if (groupId !== undefined) await chatInGroup(groupId)

const rl = createInterface({ input: process.stdin, output: process.stdout, prompt: `${me}> ` })
const print = (line: string): void => {
  process.stdout.write(`\r\x1b[K${line}\n`)
  rl.prompt(true)
}

client.on('state', (state) => print(`(connection: ${state})`))
// Only this conversation: the inbox also carries groups and other peers.
const inThisChat = (event: { group?: string }): boolean => event.group === undefined
client.on('message', (message) => {
  if (!inThisChat(message) || (message.from !== peer && message.to !== peer)) return
  print(show(message))
  if (message.from === peer) void client.markRead(peer, message.seq).catch(() => {})
})
client.on('receipt', (receipt) => { if (inThisChat(receipt) && receipt.by === peer) print(`(${peer} ${receipt.kind === 'read' ? 'read' : 'received'} up to ${receipt.id})`) })
client.on('typing', (typing) => { if (inThisChat(typing) && typing.from === peer && typing.active) print(`(${peer} is typing...)`) })
client.on('presence', (user, state) => print(`(${user} is ${state.status})`))
client.on('error', (error) => print(`(error: ${error.message})`))
client.watchPresence(peer)

print(`connected as ${me} to ${url}; talking to ${peer}${e2ee ? ' (end-to-end encrypted)' : ''}`)
rl.prompt()
let lastTyping = 0
process.stdin.on('keypress', () => {
  if (Date.now() - lastTyping > 3_000) { lastTyping = Date.now(); client.typing(peer) }
})
rl.on('line', (line) => {
  const text = line.trim()
  if (text === '/quit') return rl.close()
  if (text === '/history') {
    client.history(peer, { limit: 20 }).then(({ messages }) => messages.forEach((m) => print(show(m))), (error: Error) => print(`(error: ${error.message})`))
    return
  }
  if (text !== '') client.send(peer, text).catch((error: Error) => print(`(not sent: ${error.message})`))
  rl.prompt()
})
rl.on('close', () => { void client.stop().then(() => process.exit(0)) })

/** Group mode: the same terminal, talking to a group. */
async function chatInGroup (id: string): Promise<never> {
  const group = await client.groups.get(id)
  const rl = createInterface({ input: process.stdin, output: process.stdout, prompt: `${me}@${group.name}> ` })
  const print = (line: string): void => { process.stdout.write(`\r\x1b[K${line}\n`); rl.prompt(true) }
  client.on('message', (message) => {
    if (message.group !== group.id) return
    print(show(message))
    if (message.from !== me && message.gseq !== undefined) void client.groups.markRead(group.id, message.gseq).catch(() => {})
  })
  client.on('groupEvent', (event) => { if (event.group === group.id) print(`(${event.type.replace('_', ' ')} by ${event.by})`) })
  client.on('typing', (typing) => { if (typing.group === group.id && typing.from !== me && typing.active) print(`(${typing.from} is typing...)`) })
  client.on('state', (state) => print(`(connection: ${state})`))
  client.on('error', (error) => print(`(error: ${error.message})`))
  print(`in group "${group.name}" (id ${group.id}) with ${group.members.map((m) => m.user).join(', ')}; /history, /quit`)
  rl.prompt()
  let lastTyping = 0
  process.stdin.on('keypress', () => { if (Date.now() - lastTyping > 3_000) { lastTyping = Date.now(); client.typingInGroup(group.id) } })
  rl.on('line', (line) => {
    const text = line.trim()
    if (text === '/quit') return rl.close()
    if (text === '/history') {
      client.groups.history(group.id, { limit: 20 }).then(({ events }) => events.forEach((e) => { if (e.type === 'message') print(show(e as unknown as MessageEvent)) }), (error: Error) => print(`(error: ${error.message})`))
      return
    }
    if (text !== '') client.sendToGroup(group.id, text).catch((error: Error) => print(`(not sent: ${error.message})`))
    rl.prompt()
  })
  rl.on('close', () => { void client.stop().then(() => process.exit(0)) })
  return new Promise<never>(() => {})
}
