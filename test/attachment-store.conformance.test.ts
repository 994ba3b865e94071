// One behaviour, every implementation: the attachment records
// (AttachmentMetaStore: LevelDB, one Redis, a real Redis Cluster of this
// file's own: every script on one owner's keys) and the attachment bytes
// (AttachmentBytes: the disk, S3 through s3rver), written the way uploads
// write them (the tus store, in two requests: a resume).
import t from 'tap'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { randomBytes } from 'node:crypto'
import { Upload } from '@tus/utils'
import type { AttachmentMetaStore, NewAttachment } from '../attachments/attachment-meta.ts'
import { LevelAttachmentMeta } from '../attachments/level-attachment-meta.ts'
import { RedisAttachmentMeta } from '../attachments/redis-attachment-meta.ts'
import type { AttachmentBytes } from '../attachments/attachment-bytes.ts'
import { DiskBytes } from '../attachments/disk-bytes.ts'
import { S3Bytes } from '../attachments/s3-bytes.ts'
import { clusterRedis, singleRedis } from './helpers/store-redis.ts'
import { startRedisCluster } from './helpers/redis-cluster.ts'
import { tempDataDir } from './helpers/server-process.ts'
import { uniqueUser } from './helpers/tokens.ts'
import { startS3 } from './helpers/s3.ts'

const REDIS_DB = 12

const cluster = await startRedisCluster()
t.teardown(() => cluster.stop())

const METAS: Array<{ name: string, open: () => Promise<{ meta: AttachmentMetaStore, close: () => Promise<void> }> }> = [
  {
    name: 'leveldb',
    open: async () => {
      const meta = await LevelAttachmentMeta.open(join(tempDataDir(), 'records'))
      return { meta, close: () => meta.close() }
    }
  },
  {
    name: 'redis',
    open: async () => {
      const redis = await singleRedis(REDIS_DB)
      return { meta: new RedisAttachmentMeta(redis), close: async () => { redis.disconnect() } }
    }
  },
  {
    name: 'redis-cluster',
    open: async () => {
      const redis = await clusterRedis(cluster)
      return { meta: new RedisAttachmentMeta(redis), close: async () => { redis.disconnect() } }
    }
  }
]

// Expiries far in the past, so entries of other runs sharing the Redis index are not picked up (they have real clocks).
let clock = 1_000 + (process.pid % 1000) * 10_000_000
const upload = (owner: string, size: number, expiresAt: number): NewAttachment =>
  ({ id: uniqueUser('att'), owner, size, type: 'image/png', createdAt: clock, expiresAt })

for (const { name, open } of METAS) {
  t.test(`${name}: records, quota and grants`, async (t) => {
    const { meta, close } = await open()
    t.teardown(close)
    const [alice, bob] = [uniqueUser('alice'), uniqueUser('bob')]
    const first = upload(alice, 600, clock + 1000)
    t.equal(await meta.create(first, 1000), 'created')
    t.equal(await meta.create(first, 1000), 'exists', 'an id is created once')
    t.equal(await meta.usage(alice), 600, 'counted once')
    t.same(await meta.get(first.id), { ...first, complete: false, users: [], groups: [] }, 'read back, not complete')
    t.equal(await meta.create(upload(alice, 401, clock + 1000), 1000), 'quota_exceeded', 'over the quota: refused')
    t.equal(await meta.usage(alice), 600, 'and nothing counted')
    t.equal(await meta.create(upload(bob, 1000, clock + 1000), 1000), 'created', 'quotas are per owner')
    t.equal(await meta.create(upload(alice, 10_000, clock + 1000), 0), 'created', 'quota 0: no quota')
    t.equal(await meta.complete(first.id), true)
    t.equal(await meta.complete('no-such-id'), false)
    t.equal((await meta.get(first.id))?.complete, true, 'complete')
    t.equal(await meta.grant(first.id, { user: bob }, clock + 5000, 3), 'granted')
    t.equal(await meta.grant(first.id, { user: bob }, clock + 2000, 3), 'granted', 'granting again is harmless')
    t.equal(await meta.grant(first.id, { group: 'g1' }, clock + 4000, 3), 'granted')
    t.match(await meta.get(first.id), { users: [bob], groups: ['g1'], expiresAt: clock + 5000 }, 'grants kept; the expiry moved to the latest, never back')
    t.equal(await meta.grant(first.id, { group: 'g2' }, clock + 5000, 3), 'granted')
    t.equal(await meta.grant(first.id, { group: 'g3' }, clock + 5000, 3), 'too_many_grants', 'at most maxGrants')
    t.equal(await meta.grant('no-such-id', { user: bob }, clock + 5000, 3), 'not_found')
    t.equal(await meta.grant(first.id, { user: bob }, 0, 3), 'granted', 'expiry 0: kept forever')
    t.equal((await meta.get(first.id))?.expiresAt, 0)
    t.equal(await meta.grant(first.id, { user: bob }, clock + 9000, 3), 'granted')
    t.equal((await meta.get(first.id))?.expiresAt, 0, 'and forever stays forever')
  })

  t.test(`${name}: collection`, async (t) => {
    const { meta, close } = await open()
    t.teardown(close)
    clock += 100_000
    const carol = uniqueUser('carol')
    const [orphan, referenced, later] = [upload(carol, 100, clock + 10), upload(carol, 200, clock + 20), upload(carol, 300, clock + 5000)]
    for (const item of [orphan, referenced, later]) t.equal(await meta.create(item, 0), 'created')
    t.equal(await meta.usage(carol), 600)
    const mine = async (): Promise<string[]> => (await meta.expired(clock + 100, 1000)).filter((entry) => entry.owner === carol).map((entry) => entry.id).sort()
    t.same(await mine(), [orphan.id, referenced.id].sort(), 'the expired ones, not the later one')
    const entries = (await meta.expired(clock + 100, 1000)).filter((entry) => entry.owner === carol)
    // Referenced after it was listed: the sweep must leave it.
    t.equal(await meta.grant(referenced.id, { user: 'dave' }, clock + 10_000, 100), 'granted')
    const outcome = await Promise.all(entries.map((entry) => meta.remove(entry, clock + 100)))
    t.same(Object.fromEntries(entries.map((entry, i) => [entry.id, outcome[i]])), { [orphan.id]: 'removed', [referenced.id]: 'alive' })
    t.equal(await meta.get(orphan.id), undefined, 'the orphan is gone')
    t.ok(await meta.get(referenced.id), 'the referenced one stays')
    t.equal(await meta.usage(carol), 500, 'its bytes left the quota')
    const gone = entries.find((entry) => entry.id === orphan.id)!
    t.equal(await meta.remove(gone, clock + 100), 'removed', 'removing again: harmless (a sweep cut short is finished by the next)')
    t.equal(await meta.usage(carol), 500, 'and counted once')
    t.same(await mine(), [orphan.id], 'until unindexed (after its bytes), the removed one is still listed; the alive one no longer')
    await meta.unindex(gone)
    t.same(await mine(), [], 'unindexed')
    t.same((await meta.expired(clock + 10_000, 1000)).filter((entry) => entry.owner === carol).map((entry) => entry.id).sort(), [referenced.id, later.id].sort(), 'the others, at their own expiry')
    await meta.grant(referenced.id, { user: 'dave' }, 0, 100)
    t.equal(await meta.expireOwner(carol, clock + 200), 2, 'account deletion: every remaining one of the owner, kept forever or not, expires now')
    t.same(await mine(), [], 'not before that')
    const all = (await meta.expired(clock + 200, 1000)).filter((entry) => entry.owner === carol)
    t.same(all.map((entry) => entry.id).sort(), [referenced.id, later.id].sort(), 'then the sweep finds them')
    t.same(await Promise.all(all.map((entry) => meta.remove(entry, clock + 200))), ['removed', 'removed'])
    t.equal(await meta.usage(carol), 0, 'and the quota is empty')
    t.equal(await meta.expireOwner(carol, clock + 300), 0, 'nothing left to expire')
  })
}

const s3 = await startS3()
t.teardown(() => s3.stop())

const BYTES: Array<{ name: string, open: () => AttachmentBytes }> = [
  { name: 'disk', open: () => new DiskBytes(join(tempDataDir(), 'attachments')) },
  { name: 's3', open: () => new S3Bytes(s3.settings) }
]

async function readAll (stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of stream) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

for (const { name, open } of BYTES) {
  t.test(`${name}: bytes written in two requests read back whole, links, removal`, async (t) => {
    const bytes = open()
    const data = randomBytes(300_000)
    const id = uniqueUser('file')
    await bytes.datastore.create(new Upload({ id, size: data.length, offset: 0, metadata: {} }))
    t.equal(await bytes.read(id), undefined, 'nothing to read before it is written')
    const half = await bytes.datastore.write(Readable.from([data.subarray(0, 100_000)]), id, 0)
    t.equal(half, 100_000, 'the first request')
    t.equal((await bytes.datastore.getUpload(id)).offset, 100_000, 'a resume finds its offset')
    t.equal(await bytes.datastore.write(Readable.from([data.subarray(100_000)]), id, 100_000), data.length, 'the rest')
    const read = await bytes.read(id)
    t.equal(read?.size, data.length)
    t.ok((await readAll(read!.stream)).equals(data), 'byte-identical')
    const link = await bytes.link(id, 60, 'image/png')
    if (bytes.kind === 'disk') t.equal(link, undefined, 'disk: the server serves the bytes itself')
    else {
      const response = await fetch(link!)
      t.equal(response.status, 200, 'S3: a presigned URL, no other credential')
      t.equal(response.headers.get('content-type'), 'image/png', 'with the type given')
      t.ok(Buffer.from(await response.arrayBuffer()).equals(data))
    }
    await bytes.remove(id)
    t.equal(await bytes.read(id), undefined, 'removed')
    await bytes.remove(id)
    t.pass('removing again is harmless')

    const unfinished = uniqueUser('partial')
    await bytes.datastore.create(new Upload({ id: unfinished, size: data.length, offset: 0, metadata: {} }))
    await bytes.datastore.write(Readable.from([data.subarray(0, 1000)]), unfinished, 0)
    await bytes.remove(unfinished)
    await t.rejects(bytes.datastore.getUpload(unfinished), 'an unfinished upload is removed too')
  })
}
