// The SDK with groups against the real server: create, send from each member
// (through the outbox, resolved with the stamped copy), every message once and
// in order on every member, membership events, read marks and receipts.
import t from 'tap'
import { startServerProcess, modesUnderTest } from './helpers/server-process.ts'
import { token, uniqueUser } from './helpers/tokens.ts'
import { createClient, generateKeyPair, type ChatClient, type GroupEvent, type MessageEvent } from '../client-sdk/src/index.ts'

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
async function until (check: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const started = Date.now()
  while (!check()) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out: ${what}`)
    await sleep(20)
  }
}

interface Member { client: ChatClient, messages: MessageEvent[], groupEvents: GroupEvent[] }

async function member (url: string, user: string): Promise<Member> {
  const client = await createClient({ url, deviceId: 'app', getToken: async () => token(user) })
  const result: Member = { client, messages: [], groupEvents: [] }
  client.on('message', (message) => result.messages.push(message))
  client.on('groupEvent', (event) => result.groupEvents.push(event))
  client.on('error', () => {})
  return result
}

for (const mode of modesUnderTest()) {
  t.test(`${mode}: groups through the SDK`, async (t) => {
    const server = await startServerProcess({ mode, redisDb: 5 })
    t.teardown(() => server.stop())
    const [alice, bob, carol] = [uniqueUser('alice'), uniqueUser('bob'), uniqueUser('carol')]
    const [a, b] = await Promise.all([member(server.wsUrl, alice), member(server.wsUrl, bob)])
    t.teardown(async () => { await a.client.stop(); await b.client.stop() })

    const group = await a.client.groups.create('Trip', [bob], { topic: 'July' })
    t.match(group, { name: 'Trip', meta: { topic: 'July' }, members: [{ user: alice, role: 'owner' }, { user: bob, role: 'member' }] })
    await until(() => b.groupEvents.some((event) => event.type === 'group_created'), 'bob sees the group created')

    const sent: MessageEvent[] = []
    for (let i = 0; i < 10; i++) sent.push(await (i % 2 === 0 ? a : b).client.sendToGroup(group.id, `m${i}`))
    t.ok(sent.every((message, i) => message.group === group.id && message.gseq === i + 2), 'each send resolves with its stamped copy (group, gseq)')
    await until(() => a.messages.length >= 10 && b.messages.length >= 10, 'both see all ten')

    await a.client.groups.addMembers(group.id, [carol])
    await until(() => a.groupEvents.some((event) => event.type === 'member_added') && b.groupEvents.some((event) => event.type === 'member_added'), 'both see carol added')
    // Carol's addition comes after the ten in the group's order: a repeat of one of them would have come before it.
    for (const { messages } of [a, b]) {
      t.same(messages.map((message) => message.body), Array.from({ length: 10 }, (_, i) => `m${i}`), 'once each, in order')
    }
    t.match(b.groupEvents.find((event) => event.type === 'member_added'), { by: alice, users: [carol] })
    t.same(await b.client.groups.markRead(group.id, 11), { readUpTo: 11, unread: 0 })
    for (const deadline = Date.now() + 10_000; (await a.client.groups.receipts(group.id, 11)).read.length === 0 && Date.now() < deadline;) await sleep(20)
    t.match(await a.client.groups.receipts(group.id, 11), { read: [bob] })
    const history = await b.client.groups.history(group.id, { after: 5, limit: 3 })
    t.same(history.events.map((event) => event.gseq), [6, 7, 8])
    t.match((await a.client.conversations()).find((c) => c.group === group.id), { group: group.id, unread: 5 }, 'alice has not read bob\'s five')

    const sealed = await createClient({ url: server.wsUrl, deviceId: 'e2ee', getToken: async () => token(alice), e2ee: { keyPair: generateKeyPair() } })
    t.teardown(() => sealed.stop())
    await t.rejects(sealed.sendToGroup(group.id, 'x'), /1:1 conversations only/, 'with e2ee on, a group send is refused rather than sent in the clear')
  })
}
