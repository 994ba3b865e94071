// Hostile and malformed input, as a fuzz-style test: garbage bytes,
// truncated and oversized packets, absurd topics and SUBSCRIBEs, thousands of
// connect/disconnect cycles, REST bodies of wrong types and sizes, path and
// unicode tricks. The server must stay up with bounded memory, answer every
// REST request with a 4xx JSON error (never a 5xx), and keep serving others.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { createConnection } from 'node:net'
import { readFileSync } from 'node:fs'
import mqttPacket from 'mqtt-packet'
import { startServerProcess } from './helpers/server-process.ts'
import { connectDevice } from './helpers/devices.ts'
import { token, uniqueUser } from './helpers/tokens.ts'

const rssMb = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024

/** Writes `bytes` on a fresh TCP connection; resolves when the server closes it (or after `ms`). */
function throwAt (port: number, bytes: Buffer, ms = 2_000): Promise<'closed' | 'open'> {
  return new Promise((resolve) => {
    const socket = createConnection(port, '127.0.0.1')
    const timer = setTimeout(() => { socket.destroy(); resolve('open') }, ms)
    socket.on('error', () => {})
    socket.on('close', () => { clearTimeout(timer); resolve('closed') })
    socket.on('connect', () => socket.write(bytes))
  })
}

t.test('embedded: hostile input', async (t) => {
  const server = await startServerProcess({ mode: 'embedded', env: { MAX_PAYLOAD_BYTES: '4096', CONNECT_RATE: '0' } })
  t.teardown(() => server.stop())
  const port = server.mqttPort
  const pid = server.child.pid!

  await Promise.all(Array.from({ length: 200 }, () => throwAt(port, randomBytes(1 + Math.floor(Math.random() * 512)), 1_000)))
  t.pass('200 connections of random bytes')
  const connect = mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 30, clientId: 'x:y', username: 'x', password: Buffer.from(token('x')) })
  t.equal(await throwAt(port, connect.subarray(0, 10), 500), 'open', 'a truncated CONNECT just waits (the connect timeout ends it)')
  t.equal(await throwAt(port, Buffer.from([0x30, 0xff, 0xff, 0xff, 0x7f])), 'closed', 'a PUBLISH announcing 256 MB is cut at once, before CONNECT')

  const user = uniqueUser('mallory')
  const within = <T>(work: Promise<T>, ms = 3_000): Promise<T | 'no answer'> =>
    Promise.race([work, new Promise<'no answer'>((resolve) => setTimeout(() => resolve('no answer'), ms))])
  const deepClient = await connectDevice({ url: server.mqttUrl, userId: user, deviceId: 'deep', subscribe: false })
  const deep = Array.from({ length: 10_000 }, () => 'a').join('/')
  const closed = new Promise<'closed'>((resolve) => deepClient.client.once('close', () => resolve('closed')))
  const outcome = await within(Promise.race([deepClient.sendRaw(deep, '{"id":"x","body":1}').then(() => 'acked'), closed]))
  t.ok(outcome === 'closed' || (outcome === 'acked' && (await deepClient.waitForErrors(1, 3_000).then(() => true, () => false))), `a 10,000-level topic: refused (${outcome})`)
  await deepClient.end(true)
  const mallory = await connectDevice({ url: server.mqttUrl, userId: user, deviceId: 'd', subscribe: false })
  t.teardown(() => mallory.end(true))
  // mqtt.js rejects a SUBSCRIBE whose grants are 0x80 (refused).
  const grants = await within(mallory.client.subscribeAsync(Array.from({ length: 300 }, (_, i) => `user/other${i}/inbox`), { qos: 1 }).then(() => 'granted', (error: Error) => error.message))
  t.match(grants, /^Subscribe error/, 'a 300-topic SUBSCRIBE to others\' inboxes: refused (SUBACK 0x80)')
  const huge = await within(mallory.client.subscribeAsync(Array.from({ length: 1_000 }, (_, i) => `user/other${i}/inbox`), { qos: 1 }).then(() => 'granted', (error: Error) => error.message))
  t.equal(huge, 'Connection closed', 'a 1,000-topic SUBSCRIBE (larger than the packet limit) closes the connection')

  const before = rssMb(pid)
  for (let round = 0; round < 20; round++) {
    await Promise.all(Array.from({ length: 100 }, async (_, i) => {
      const device = await connectDevice({ url: server.mqttUrl, userId: uniqueUser('churn'), deviceId: `d${i}`, subscribe: round % 2 === 0 }).catch(() => undefined)
      await device?.end(true)
    }))
  }
  const after = rssMb(pid)
  t.ok(after - before < 150, `2,000 connect/disconnect cycles: RSS ${before.toFixed(0)} → ${after.toFixed(0)} MB`)

  const auth = { authorization: `Bearer ${token(user)}` }
  const bodies: Array<[string, string, Record<string, string>]> = [
    ['/v1/messages', '[]', { 'content-type': 'application/json' }],
    ['/v1/messages', '"just a string"', { 'content-type': 'application/json' }],
    ['/v1/messages', '{"to": 5, "id": {}, "body": null}', { 'content-type': 'application/json' }],
    ['/v1/messages', '{"to":"a","id":"b","body":"' + 'x'.repeat(20_000) + '"}', { 'content-type': 'application/json' }],
    ['/v1/messages', '{"to":"a","id":"b",', { 'content-type': 'application/json' }],
    ['/v1/messages', 'to=a&id=b', { 'content-type': 'application/x-www-form-urlencoded' }],
    ['/v1/groups', '{"name": {"$gt": ""}}', { 'content-type': 'application/json' }],
    ['/v1/groups', '{"name":"x","members":' + JSON.stringify(Array.from({ length: 5000 }, (_, i) => `u${i}`)) + '}', { 'content-type': 'application/json' }],
    ['/v1/conversations/%2e%2e%2f%2e%2e%2fetc/read', '{"seq":-1}', { 'content-type': 'application/json' }],
    ['/v1/devices', '{"platform":"ios","token":"\u0000\u202e","deviceId":"d"}', { 'content-type': 'application/json' }]
  ]
  const paths = ['/v1/conversations/..%2F..%2Fsecret/messages', '/v1/presence/%F0%9F%92%A9', '/v1/keys/%00', '/v1/sync?since=-5', '/v1/sync?since=1e400', '/v1/groups/%E2%80%AE', '/v1/conversations/' + 'a'.repeat(5000) + '/messages', '/v1/presence?users=' + 'a,'.repeat(500)]
  const statuses: number[] = []
  for (const [path, body, headers] of bodies) {
    const response = await fetch(server.httpUrl + path, { method: 'POST', headers: { ...auth, ...headers }, body })
    statuses.push(response.status)
    t.match(await response.json(), { error: String }, `POST ${path.slice(0, 40)} ${body.slice(0, 30)}: a JSON error (${response.status})`)
  }
  for (const path of paths) {
    const response = await fetch(server.httpUrl + path, { headers: auth })
    statuses.push(response.status)
    t.match(await response.json(), { error: String }, `GET ${path.slice(0, 50)}: a JSON error (${response.status})`)
  }
  t.ok(statuses.every((status) => status >= 400 && status < 500), `every answer is a 4xx (${[...new Set(statuses)].join(', ')})`)

  const [alice, bob] = [uniqueUser('alice'), uniqueUser('bob')]
  const receiver = await connectDevice({ url: server.mqttUrl, userId: bob, deviceId: 'phone' })
  const sender = await connectDevice({ url: server.mqttUrl, userId: alice, deviceId: 'phone', subscribe: false })
  t.teardown(async () => { await receiver.end(); await sender.end() })
  await sender.send(bob, { id: 'still-fine', body: 'hello' })
  t.match((await receiver.waitForInbox(1))[0], { id: 'still-fine' }, 'normal traffic keeps flowing')
  t.equal(server.child.exitCode, null, 'the server is up')
})
