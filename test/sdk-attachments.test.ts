// The SDK's attachments against the real server, both modes (embedded: disk;
// Redis: S3 via s3rver): client.upload resumes by itself after its
// connection is cut mid-upload, the peer's client.download gets the same
// bytes; in an end-to-end encrypted conversation the server stores only
// ciphertext (read there directly) and the receiver decrypts and verifies.
import t from 'tap'
import { createServer, connect, type Socket } from 'node:net'
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { S3Client, GetObjectCommand } from '@aws-sdk/client-s3'
import { modesUnderTest, startServerProcess, tempDataDir } from './helpers/server-process.ts'
import { token, uniqueUser } from './helpers/tokens.ts'
import { apiFor } from './helpers/rest.ts'
import { startS3 } from './helpers/s3.ts'
import { createClient, decryptFile, encryptFile, generateKeyPair, type ChatClient, type MessageEvent } from '../client-sdk/src/index.ts'

const REDIS_DB = 12
const s3 = await startS3()
t.teardown(() => s3.stop())

/** A TCP proxy to the server's HTTP port that cuts the first connection carrying more than `cutAfter` bytes upstream, once. */
async function cuttingProxy (port: number, cutAfter: number): Promise<{ url: string, cuts: () => number, close: () => void }> {
  let cuts = 0
  const sockets = new Set<Socket>()
  const proxy = createServer((client) => {
    const upstream = connect(port, '127.0.0.1')
    sockets.add(client).add(upstream)
    let sent = 0
    client.on('data', (chunk: Buffer) => {
      sent += chunk.length
      if (cuts === 0 && sent > cutAfter) {
        cuts++
        client.destroy()
        upstream.destroy()
        return
      }
      upstream.write(chunk)
    })
    upstream.on('data', (chunk) => client.write(chunk))
    for (const [a, b] of [[client, upstream], [upstream, client]] as const) {
      a.on('close', () => b.destroy())
      a.on('error', () => b.destroy())
    }
  })
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(proxy.address() as { port: number }).port}`,
    cuts: () => cuts,
    close: () => { for (const socket of sockets) socket.destroy(); proxy.close() }
  }
}

function nextMessage (client: ChatClient, from: string): Promise<MessageEvent> {
  return new Promise((resolve) => client.on('message', (message) => { if (message.from === from) resolve(message) }))
}

for (const mode of modesUnderTest()) {
  t.test(`${mode} mode`, async (t) => {
    const dataDir = tempDataDir()
    const server = await startServerProcess({ mode, redisDb: REDIS_DB, dataDir, env: mode === 'redis' ? { ...s3.env, WORKERS: '1' } : {} })
    t.teardown(() => server.stop())
    const storedBytes = async (id: string): Promise<Buffer> => {
      if (mode === 'embedded') return readFileSync(join(dataDir, 'attachments', id))
      const object = await new S3Client(s3.settings).send(new GetObjectCommand({ Bucket: s3.settings.bucket, Key: id }))
      return Buffer.from(await object.Body!.transformToByteArray())
    }
    const open = async (user: string, options: { apiUrl?: string, e2ee?: { keyPair: ReturnType<typeof generateKeyPair> } } = {}): Promise<ChatClient> => {
      const client = await createClient({ url: server.wsUrl, deviceId: 'phone', getToken: async () => token(user), ...options })
      t.teardown(() => client.stop())
      return client
    }

    t.test('upload resumes by itself after its connection is cut; the peer downloads the same bytes', async (t) => {
      const [alice, bob] = [uniqueUser('alice'), uniqueUser('bob')]
      const proxy = await cuttingProxy(server.httpPort, 1024 * 1024)
      t.teardown(proxy.close)
      const a = await open(alice, { apiUrl: proxy.url })
      const b = await open(bob)
      const photo = randomBytes(3 * 1024 * 1024)
      const progress: number[] = []
      const attachment = await a.upload(photo, { type: 'image/jpeg', thumbnail: 'AAAA', onProgress: (sent) => progress.push(sent) })
      t.equal(proxy.cuts(), 1, 'the connection was cut mid-upload')
      t.match(attachment, { id: String, size: photo.length, type: 'image/jpeg', thumbnail: 'AAAA' })
      t.equal(attachment.key, undefined, 'not encrypted without end-to-end encryption')
      t.equal(progress.at(-1), photo.length, 'progress reached the end')
      const arrived = nextMessage(b, alice)
      await a.send(bob, 'the photo', { attachments: [attachment] })
      const message = await arrived
      t.same(message.attachments, [{ id: attachment.id, size: photo.length, type: 'image/jpeg', thumbnail: 'AAAA' }])
      t.ok(Buffer.from(await b.download(message.attachments![0]!)).equals(photo), 'byte-identical')
      t.ok((await storedBytes(attachment.id)).equals(photo), 'stored as sent')
      await t.rejects(open(uniqueUser('carol')).then((c) => c.download(attachment.id)), { status: 404, code: 'attachment_not_found' }, 'a stranger cannot')
    })

    t.test('end-to-end encrypted: the server stores only ciphertext; the receiver decrypts and verifies', async (t) => {
      const [alice, bob] = [uniqueUser('alice'), uniqueUser('bob')]
      const [aliceKeys, bobKeys] = [generateKeyPair(), generateKeyPair()]
      const a = await open(alice, { e2ee: { keyPair: aliceKeys } })
      const b = await open(bob, { e2ee: { keyPair: bobKeys } })
      await Promise.all([a.publishKey(), b.publishKey()])
      const voice = randomBytes(200_000)
      const attachment = await a.upload(voice, { type: 'audio/ogg', thumbnail: 'QUJD' })
      t.match(attachment, { size: voice.length, type: 'audio/ogg', key: String, digest: String })
      const arrived = nextMessage(b, alice)
      await a.send(bob, 'a voice note', { attachments: [attachment] })
      const message = await arrived
      t.equal(message.body, 'a voice note', 'the body decrypted')
      t.same(message.attachments, [attachment], 'the file\'s key, digest, real type and size came inside the encrypted body')
      t.ok(Buffer.from(await b.download(message.attachments![0]!)).equals(voice), 'decrypted and verified: the same bytes')

      const stored = await storedBytes(attachment.id)
      t.equal(stored.length, voice.length + 24 + 16, 'the server holds nonce + ciphertext + tag')
      t.equal(stored.indexOf(voice.subarray(1000, 1064)), -1, 'and none of the plaintext')
      const [seen] = (await apiFor(server.httpUrl, bob).get('/v1/sync?since=0')).body.events.filter((event: { id?: string }) => event.id === message.id)
      t.same(seen.attachments, [{ id: attachment.id, size: stored.length, type: 'application/octet-stream' }], 'what the server sees: no type, no thumbnail, the ciphertext\'s size')
      t.match(seen.body, { e2ee: String, ciphertext: String })
      await t.rejects(a.send(bob, 'x', { attachments: [{ ...attachment, key: undefined, digest: undefined }] }), /unencrypted/, 'an unencrypted upload is never sent in an encrypted conversation')
    })
  })
}

t.test('file encryption: a changed byte or a wrong key is refused', async (t) => {
  const plain = randomBytes(1000)
  const { sealed, key, digest } = encryptFile(plain)
  t.ok(Buffer.from(decryptFile(sealed, key, digest)).equals(plain))
  const changed = Uint8Array.from(sealed)
  changed[100]! ^= 1
  t.throws(() => decryptFile(changed, key, digest), /digest/, 'the digest catches a changed file')
  t.throws(() => decryptFile(sealed, encryptFile(plain).key, digest), 'another key: the AEAD refuses it')
})
