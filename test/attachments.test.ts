// Attachments end to end (issue #24), on the real server in both modes:
// embedded with its disk, Redis with S3 (s3rver started here). A 20 MB upload
// cut mid-way and resumed from the offset the server reports, sent in a
// message and downloaded byte-identical by the peer; strangers get 404; links
// expire; size and quota refusals; orphans and unfinished uploads collected;
// Redis mode without S3 answers 501.
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { S3Client, HeadObjectCommand } from '@aws-sdk/client-s3'
import { modesUnderTest, startServerProcess, tempDataDir, type Mode, type ServerHandle } from './helpers/server-process.ts'
import { connectDevice } from './helpers/devices.ts'
import { token, uniqueUser } from './helpers/tokens.ts'
import { apiFor } from './helpers/rest.ts'
import { tusFor } from './helpers/tus.ts'
import { startS3, type OwnS3 } from './helpers/s3.ts'

const MiB = 1024 * 1024
const REDIS_DB = 12
const ADMIN = 'admin-token-admin-token-admin-token-0123'
const sha = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex')
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

let s3: OwnS3 | undefined
const ownS3 = async (): Promise<OwnS3> => {
  if (s3 === undefined) {
    s3 = await startS3()
    t.teardown(() => s3!.stop())
  }
  return s3
}

async function start (mode: Mode, env: Record<string, string>): Promise<{ server: ServerHandle, dataDir: string, stored: (id: string) => Promise<boolean> }> {
  const dataDir = tempDataDir()
  const storage = mode === 'redis' ? (await ownS3()).env : {}
  const server = await startServerProcess({ mode, redisDb: REDIS_DB, dataDir, env: { ...storage, ...env } })
  const client = mode === 'redis' ? new S3Client({ ...s3!.settings }) : undefined
  // Whether the storage still holds the attachment's bytes, read there directly.
  const stored = async (id: string): Promise<boolean> => {
    if (client === undefined) return existsSync(join(dataDir, 'attachments', id))
    try {
      await client.send(new HeadObjectCommand({ Bucket: s3!.settings.bucket, Key: id }))
      return true
    } catch { return false }
  }
  return { server, dataDir, stored }
}

/** GET /v1/attachments/:id as `user`, then the link it redirects to, without the token. */
async function download (httpUrl: string, user: string, id: string): Promise<{ status: number, bytes?: Uint8Array, link?: string }> {
  const response = await fetch(`${httpUrl}/v1/attachments/${id}`, { headers: { authorization: `Bearer ${token(user)}` }, redirect: 'manual' })
  if (response.status !== 302) return { status: response.status }
  const link = new URL(response.headers.get('location')!, httpUrl).toString()
  const bytes = await fetch(link)
  return { status: bytes.status, link, ...(bytes.status === 200 ? { bytes: new Uint8Array(await bytes.arrayBuffer()) } : {}) }
}

for (const mode of modesUnderTest()) {
  t.test(`${mode} mode (${mode === 'redis' ? 'S3' : 'disk'})`, async (t) => {
    // Redis mode: two server processes (WORKERS defaults to the cores), so a resumed upload may reach the other one.
    const { server, stored } = await start(mode, { MAX_UPLOAD_BYTES: String(25 * MiB), UPLOAD_QUOTA_BYTES: String(30 * MiB), ATTACHMENT_LINK_TTL_SECONDS: '2' })
    t.teardown(() => server.stop())
    const [alice, bob, carol, dave] = [uniqueUser('alice'), uniqueUser('bob'), uniqueUser('carol'), uniqueUser('dave')]

    t.test('a 20 MB video cut mid-way resumes from the server\'s offset, and the peer downloads it byte-identical', async (t) => {
      const video = randomBytes(20 * MiB)
      const tus = tusFor(server.httpUrl, alice)
      const created = await tus.create(video.length, 'video/mp4')
      t.equal(created.status, 201, 'created')
      const id = created.id!
      await tus.cut(id, 0, video, 12 * MiB)
      // As a tus client does after a reconnect: ask for the offset, again after a moment while the server is busy (5xx, 423).
      let { status, offset } = await tus.head(id)
      for (let attempt = 0; status !== 200 && attempt < 20; attempt++) ({ status, offset } = await sleep(250).then(() => tus.head(id)))
      t.equal(status, 200)
      t.ok(offset! > 0 && offset! < video.length, `the server kept part of it (${offset} of ${video.length} bytes)`)
      t.equal((await tusFor(server.httpUrl, carol).head(id)).status, 404, 'nobody else may see or resume the upload')
      t.match(await download(server.httpUrl, alice, id), { status: 404 }, 'not downloadable before it is complete')
      const rest = await tus.patch(id, offset!, video.subarray(offset!))
      t.match(rest, { status: 204, offset: video.length }, 'resumed from that offset to the end')

      const phone = await connectDevice({ url: server.mqttUrl, userId: bob, deviceId: 'phone' })
      t.teardown(() => phone.end(true))
      const sender = await connectDevice({ url: server.mqttUrl, userId: alice, deviceId: 'phone' })
      t.teardown(() => sender.end(true))
      await sender.send(bob, { id: 'v1', body: 'our trip', attachments: [{ id, thumbnail: 'AAAA' }] })
      const [message] = await phone.waitForMatching((event) => event.id === 'v1', 1)
      t.same(message!.attachments, [{ id, size: video.length, type: 'video/mp4', thumbnail: 'AAAA' }], 'the envelope names it with the size and type of the upload')
      const got = await download(server.httpUrl, bob, id)
      t.equal(got.status, 200)
      t.equal(sha(got.bytes!), sha(video), 'byte-identical')
      t.ok(await stored(id), 'in the storage of this mode')
      if (mode === 'redis') t.match(got.link, /^http:\/\/127\.0\.0\.1:\d+\/inboxd-attachments\//, 'S3: a presigned URL, the bytes never pass through the server')

      t.test('strangers get 404 and cannot reference it; a reader may forward it', async (t) => {
        t.match(await download(server.httpUrl, carol, id), { status: 404 }, 'a stranger: 404')
        const body = (await fetch(`${server.httpUrl}/v1/attachments/${id}`, { headers: { authorization: `Bearer ${token(carol)}` } })).json()
        t.match(await body, { error: 'attachment_not_found' })
        t.match(await download(server.httpUrl, carol, 'no-such-upload'), { status: 404 }, 'the same as for an id that does not exist')
        const carolApi = apiFor(server.httpUrl, carol)
        t.match(await carolApi.post('/v1/messages', { to: dave, id: 'steal', body: 'look', attachments: [{ id }] }), { status: 400, body: { error: 'invalid_attachment' } }, 'REST: referencing it is refused')
        const mallory = await connectDevice({ url: server.mqttUrl, userId: carol, deviceId: 'laptop' })
        t.teardown(() => mallory.end(true))
        await mallory.send(dave, { id: 'steal2', body: 'look', attachments: [{ id }] })
        t.match(await mallory.waitForErrors(1), [{ code: 'invalid_attachment', id: 'steal2' }], 'MQTT: PUBACK and the error event invalid_attachment')
        t.match(await download(server.httpUrl, dave, id), { status: 404 }, 'and nobody gained access')
        t.match(await apiFor(server.httpUrl, bob).post('/v1/messages', { to: carol, id: 'fwd', body: 'fwd', attachments: [{ id }] }), { status: 201, body: { message: { attachments: [{ id, size: video.length }] } } }, 'bob forwards it to carol')
        t.equal(sha((await download(server.httpUrl, carol, id)).bytes!), sha(video), 'carol now reads it')
      })

      t.test('a group message grants its current members', async (t) => {
        const aliceApi = apiFor(server.httpUrl, alice)
        const group = (await aliceApi.post('/v1/groups', { name: 'Trip', members: [dave] })).body.group.id as string
        t.match(await apiFor(server.httpUrl, carol).post('/v1/messages', { group, id: 'g0', body: 'x', attachments: [{ id }] }), { status: 404, body: { error: 'not_a_member' } }, 'a non-member cannot grant the group')
        t.match(await aliceApi.post('/v1/messages', { group, id: 'g1', body: 'video', attachments: [{ id }] }), { status: 201, body: { message: { attachments: [{ id, type: 'video/mp4' }] } } })
        t.equal((await download(server.httpUrl, dave, id)).status, 200, 'a member reads it')
        await aliceApi.delete(`/v1/groups/${group}/members/${dave}`)
        t.match(await download(server.httpUrl, dave, id), { status: 404 }, 'removed from the group: no longer')
      })

      t.test('a link expires', async (t) => {
        const response = await fetch(`${server.httpUrl}/v1/attachments/${id}/link`, { headers: { authorization: `Bearer ${token(bob)}` } })
        const link = await response.json() as { url: string, expiresAt: number }
        t.ok(link.expiresAt > Date.now(), 'link with its expiry')
        const url = new URL(link.url, server.httpUrl).toString()
        // The link works without a token until it expires, then it is refused.
        let status = 206
        for (const deadline = Date.now() + 8_000; (status === 200 || status === 206) && Date.now() < deadline; await sleep(250)) {
          const answer = await fetch(url, { method: 'GET', headers: { range: 'bytes=0-0' } })
          await answer.arrayBuffer()
          status = answer.status
        }
        t.equal(status, 403, 'refused once expired')
        t.ok(Date.now() >= link.expiresAt, 'and not before')
      })
    })

    t.test('size and quota refusals, with clear errors', async (t) => {
      const tus = tusFor(server.httpUrl, alice)
      t.match(await tus.create(26 * MiB), { status: 413, body: { error: 'upload_too_large' } }, 'over MAX_UPLOAD_BYTES')
      t.match(await tus.create(11 * MiB), { status: 413, body: { error: 'quota_exceeded', message: /31457280/ } }, 'alice holds 20 MB of her 30: 11 more is over her quota')
      t.match(await tusFor(server.httpUrl, dave).create(11 * MiB), { status: 201 }, 'quotas are per user')
      const noLength = await fetch(`${server.httpUrl}/v1/uploads`, { method: 'POST', headers: { 'tus-resumable': '1.0.0', authorization: `Bearer ${token(alice)}`, 'upload-defer-length': '1' } })
      t.match({ status: noLength.status, body: await noLength.json() }, { status: 400, body: { error: 'invalid_request', field: 'headers.upload-length' } }, 'the size is declared up front')
      t.match(await tus.create(10, 'not a type'), { status: 400 }, 'a media type that is not one')
      t.equal((await fetch(`${server.httpUrl}/v1/uploads`, { method: 'POST', headers: { 'tus-resumable': '1.0.0', 'upload-length': '10' } })).status, 401, 'no token: 401')
      const api = apiFor(server.httpUrl, alice)
      t.match(await api.post('/v1/messages', { to: bob, id: 'bad1', body: 'x', attachments: [{ id: 'x', size: 5, extra: 1 }] }), { status: 400, body: { error: 'invalid_message' } }, 'unknown fields in a reference')
      t.match(await api.post('/v1/messages', { to: bob, id: 'bad2', body: 'x', attachments: Array.from({ length: 11 }, (_, i) => ({ id: `a${i}` })) }), { status: 400, body: { error: 'invalid_message' } }, 'more than 10')
      t.match(await api.post('/v1/messages', { to: bob, id: 'bad3', body: 'x', attachments: [{ id: 'x', thumbnail: 'A'.repeat(9000) }] }), { status: 400, body: { error: 'invalid_message' } }, 'a thumbnail over 8,192 characters')
    })
  })

  t.test(`${mode} mode: uploads nothing references, finished or not, are collected and leave the quota`, async (t) => {
    const { server, stored } = await start(mode, { WORKERS: '1', UPLOAD_QUOTA_BYTES: '1000', ATTACHMENT_ORPHAN_SECONDS: '1', ATTACHMENT_SWEEP_SECONDS: '1', ADMIN_TOKEN: ADMIN })
    t.teardown(() => server.stop())
    const erin = uniqueUser('erin')
    const tus = tusFor(server.httpUrl, erin)
    const finished = (await tus.create(600, 'image/png')).id!
    t.match(await tus.patch(finished, 0, randomBytes(600)), { status: 204 })
    const unfinished = (await tus.create(300)).id!
    t.match(await tus.patch(unfinished, 0, randomBytes(100)), { status: 204, offset: 100 })
    t.ok(await stored(finished), 'stored')
    t.match(await tus.create(600), { status: 413, body: { error: 'quota_exceeded' } }, 'both count against the quota meanwhile')
    for (const deadline = Date.now() + 10_000; (await download(server.httpUrl, erin, finished)).status !== 404; await sleep(200)) {
      if (Date.now() > deadline) throw new Error('never collected')
    }
    t.pass('the orphan is gone for its owner too')
    for (const deadline = Date.now() + 10_000; (await tus.head(unfinished)).status !== 404; await sleep(200)) {
      if (Date.now() > deadline) throw new Error('unfinished upload never collected')
    }
    t.pass('the unfinished upload too')
    // The record goes first (a download is 404 from then), the bytes right after.
    for (const deadline = Date.now() + 10_000; await stored(finished); await sleep(100)) {
      if (Date.now() > deadline) throw new Error('its bytes were never removed')
    }
    t.pass('its bytes left the storage')
    t.match(await tus.create(900), { status: 201 }, 'and the quota is free again')

    t.test('deleting an account collects its uploads, shared or not', async (t) => {
      const [gone, peer] = [uniqueUser('gone'), uniqueUser('peer')]
      const theirs = tusFor(server.httpUrl, gone)
      const id = (await theirs.create(500, 'image/png')).id!
      await theirs.patch(id, 0, randomBytes(500))
      t.match(await apiFor(server.httpUrl, gone).post('/v1/messages', { to: peer, id: 'pic', body: 'x', attachments: [{ id }] }), { status: 201 })
      t.equal((await download(server.httpUrl, peer, id)).status, 200, 'shared with the peer')
      const deleted = await fetch(`${server.httpUrl}/v1/admin/users/${gone}`, { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN}` } })
      t.equal(deleted.status, 200, 'account deleted')
      for (const deadline = Date.now() + 10_000; (await download(server.httpUrl, peer, id)).status !== 404; await sleep(200)) {
        if (Date.now() > deadline) throw new Error('never collected')
      }
      for (const deadline = Date.now() + 10_000; await stored(id); await sleep(100)) {
        if (Date.now() > deadline) throw new Error('its bytes were never removed')
      }
      t.pass('its bytes left the storage')
    })
  })
}

t.test('redis mode without S3: 501 attachments_not_configured, and messages naming attachments are refused', async (t) => {
  const server = await startServerProcess({ mode: 'redis', redisDb: REDIS_DB, env: { WORKERS: '1' } })
  t.teardown(() => server.stop())
  const user = uniqueUser('frank')
  t.match(await tusFor(server.httpUrl, user).create(10), { status: 501, body: { error: 'attachments_not_configured' } })
  t.match(await apiFor(server.httpUrl, user).get('/v1/attachments/abc'), { status: 501, body: { error: 'attachments_not_configured' } })
  t.match(await apiFor(server.httpUrl, user).post('/v1/messages', { to: uniqueUser('x'), id: 'm', body: 'x', attachments: [{ id: 'abc' }] }), { status: 400, body: { error: 'invalid_attachment' } })
})
