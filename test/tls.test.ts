// TLS built in: mqtts and WSS exchange messages with a certificate from a
// throwaway CA made here with openssl; a client trusting another CA is
// refused; a renewed certificate is served after SIGHUP without a restart;
// TLS_ONLY closes the plain listeners.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { connect as tlsConnect } from 'node:tls'
import { createConnection } from 'node:net'
import { join } from 'node:path'
import mqtt from 'mqtt'
import { startServerProcess, tempDataDir, freePort, flushRedisDb } from './helpers/server-process.ts'
import { token, uniqueUser } from './helpers/tokens.ts'

const REDIS_DB = 8
await flushRedisDb(REDIS_DB)
const dir = tempDataDir()
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
const openssl = (...args: string[]): void => { execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' }) }

/** A CA, and a server certificate for 127.0.0.1 signed by it (`name` tells renewals apart). */
function makeCa (ca: string): void {
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${ca}.key`, '-out', `${ca}.pem`, '-days', '2', '-subj', `/CN=${ca}`)
}
function issue (ca: string, name: string): void {
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`)
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n')
  openssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', 'san.ext')
}
makeCa('ca')
makeCa('other-ca')
issue('ca', 'first')
issue('ca', 'second')
const serving = { cert: join(dir, 'serving.pem'), key: join(dir, 'serving.key') }
const use = (name: string): void => {
  writeFileSync(serving.key, readFileSync(join(dir, `${name}.key`)))
  writeFileSync(serving.cert, readFileSync(join(dir, `${name}.pem`)))
}
use('first')
const ca = readFileSync(join(dir, 'ca.pem'))

/** The CN of the certificate a TLS port serves now. */
function servedName (port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ port, host: '127.0.0.1', ca }, () => {
      resolve(String(socket.getPeerCertificate().subject.CN))
      socket.end()
    })
    socket.on('error', reject)
  })
}

function connectTls (url: string, user: string, device: string, trust: Buffer): Promise<mqtt.MqttClient> {
  const client = mqtt.connect(url, { clientId: `${user}:${device}`, username: user, password: token(user), clean: false, reconnectPeriod: 0, ca: trust, connectTimeout: 5_000 })
  return new Promise((resolve, reject) => {
    client.once('connect', () => resolve(client))
    client.once('error', (error) => { client.end(true); reject(error) })
  })
}

t.test('redis (WORKERS=2): mqtts and wss, a wrong CA refused, reload on SIGHUP', async (t) => {
  const [mqttsPort, httpsPort] = [await freePort(), await freePort()]
  const server = await startServerProcess({ mode: 'redis', redisDb: REDIS_DB, env: { TLS_CERT: serving.cert, TLS_KEY: serving.key, MQTTS_PORT: String(mqttsPort), HTTPS_PORT: String(httpsPort), WORKERS: '2' } })
  t.teardown(() => server.stop())
  const [alice, bob] = [uniqueUser('alice'), uniqueUser('bob')]
  const receiver = await connectTls(`wss://127.0.0.1:${httpsPort}/mqtt`, bob, 'browser', ca)
  t.teardown(() => receiver.end(true))
  await receiver.subscribeAsync(`user/${bob}/inbox`, { qos: 1 })
  const got = new Promise<Record<string, unknown>>((resolve) => receiver.once('message', (_topic, payload) => resolve(JSON.parse(payload.toString()) as Record<string, unknown>)))
  const sender = await connectTls(`mqtts://127.0.0.1:${mqttsPort}`, alice, 'device', ca)
  t.teardown(() => sender.end(true))
  await sender.publishAsync(`user/${bob}/inbox`, JSON.stringify({ id: 'tls-1', body: 'over TLS' }), { qos: 1 })
  t.match(await got, { id: 'tls-1', from: alice, body: 'over TLS' }, 'mqtts → wss')
  const health = await new Promise<number>((resolve, reject) => {
    const socket = tlsConnect({ port: httpsPort, host: '127.0.0.1', ca }, () => socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'))
    let text = ''
    socket.on('data', (chunk: Buffer) => { text += chunk.toString() })
    socket.on('end', () => resolve(Number(text.split(' ')[1])))
    socket.on('error', reject)
  })
  t.equal(health, 200, 'HTTPS serves the REST routes')

  await t.rejects(connectTls(`mqtts://127.0.0.1:${mqttsPort}`, alice, 'other', readFileSync(join(dir, 'other-ca.pem'))), 'a client trusting another CA is refused')

  t.equal(await servedName(mqttsPort), 'first')
  use('second')
  server.child.kill('SIGHUP')
  // The server says when it has the new certificate.
  for (const deadline = Date.now() + 10_000; !/TLS certificate reloaded/.test(server.output()) && Date.now() < deadline;) await sleep(20)
  t.equal(await servedName(mqttsPort), 'second', 'the renewed certificate is served after SIGHUP (mqtts)')
  t.equal(await servedName(httpsPort), 'second', 'and on HTTPS')
  t.equal(server.child.exitCode, null, 'without a restart')
})

t.test('embedded: TLS_ONLY closes the plain listeners', async (t) => {
  use('first')
  const [mqttPort, mqttsPort, httpsPort] = [await freePort(), await freePort(), await freePort()]
  const server = await startServerProcess({ mode: 'embedded', mqttPort, env: { TLS_CERT: serving.cert, TLS_KEY: serving.key, MQTTS_PORT: String(mqttsPort), HTTPS_PORT: String(httpsPort), TLS_ONLY: '1' } })
  t.teardown(() => server.stop())
  t.equal(await servedName(mqttsPort), 'first', 'mqtts is up')
  const plain = await new Promise<string>((resolve) => {
    const socket = createConnection(mqttPort, '127.0.0.1')
    socket.on('connect', () => { socket.destroy(); resolve('connected') })
    socket.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? 'error'))
  })
  t.equal(plain, 'ECONNREFUSED', 'nothing listens on the plain MQTT port')
})
