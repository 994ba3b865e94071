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
import { createInterface } from 'node:readline'
import { readFileSync, writeFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createSigner } from 'fast-jwt'
import { createClient, generateKeyPair, toBase64, fromBase64, type ClientStorage, type KeyPair, type MessageEvent } from '@inboxd/client'

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

const client = await createClient({
  url,
  deviceId: `terminal${e2ee ? '-e2ee' : ''}`,
  getToken: async () => signToken({ sub: me }),
  storage: new FileStorage(join(tmpdir(), `inboxd-chat-${me}.state.json`)),
  ...(e2ee ? { e2ee: { keyPair: keyPairFor(me) } } : {})
})
if (e2ee) await client.publishKey()
if (groupMode) await chatInGroup()

const rl = createInterface({ input: process.stdin, output: process.stdout, prompt: `${me}> ` })
const print = (line: string): void => {
  process.stdout.write(`\r\x1b[K${line}\n`)
  rl.prompt(true)
}

client.on('state', (state) => print(`(connection: ${state})`))
client.on('message', (message) => {
  if (message.from === peer || message.to === peer) print(show(message))
  if (message.from === peer) void client.markRead(peer, message.seq).catch(() => {})
})
client.on('receipt', (receipt) => { if (receipt.by === peer) print(`(${peer} ${receipt.kind === 'read' ? 'read' : 'received'} up to ${receipt.id})`) })
client.on('typing', (typing) => { if (typing.from === peer && typing.active) print(`(${peer} is typing...)`) })
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
async function chatInGroup (): Promise<never> {
  const group = peer === '--new-group'
    ? await client.groups.create(flags[0] ?? 'group', flags.slice(1))
    : await client.groups.get(flags[0] ?? '')
  const rl = createInterface({ input: process.stdin, output: process.stdout, prompt: `${me}@${group.name}> ` })
  const print = (line: string): void => { process.stdout.write(`\r\x1b[K${line}\n`); rl.prompt(true) }
  client.on('message', (message) => {
    if (message.group !== group.id) return
    print(show(message))
    if (message.from !== me && message.gseq !== undefined) void client.groups.markRead(group.id, message.gseq).catch(() => {})
  })
  client.on('groupEvent', (event) => { if (event.group === group.id) print(`(${event.type.replace('_', ' ')} by ${event.by})`) })
  client.on('typing', (typing) => { if (typing.group === group.id && typing.active) print(`(${typing.from} is typing...)`) })
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
