// The MLS KeyPackage directory over real HTTP, on the real server in both
// storage modes (docs/protocol.md, "MLS KeyPackages"): real KeyPackages made
// with ts-mls, checked by the server, claimed and used to add a member to a
// group; and, in Redis mode, two server processes claiming at once.
import t from 'tap'
import {
  createCommit, createGroup, decodeMlsMessage, defaultCapabilities, defaultLifetime, emptyPskIndex, encodeMlsMessage,
  generateKeyPackage, getCiphersuiteFromName, getCiphersuiteImpl, joinGroup, type CiphersuiteImpl, type PrivateKeyPackage
} from 'ts-mls'
import { apiFor } from './helpers/rest.ts'
import { modesUnderTest, startServerProcess } from './helpers/server-process.ts'
import { uniqueUser } from './helpers/tokens.ts'

const REDIS_DB = 11 // unique user ids: shared with other files that never flush it
const suite1 = await getCiphersuiteImpl(getCiphersuiteFromName('MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519'))

interface Made { base64: string, privatePackage: PrivateKeyPackage }

async function keyPackage (identity: string, impl: CiphersuiteImpl = suite1, lifetime = defaultLifetime): Promise<Made> {
  const kp = await generateKeyPackage({ credentialType: 'basic', identity: new TextEncoder().encode(identity) }, defaultCapabilities(), lifetime, [], impl)
  const bytes = encodeMlsMessage({ version: 'mls10', wireformat: 'mls_key_package', keyPackage: kp.publicPackage })
  return { base64: Buffer.from(bytes).toString('base64'), privatePackage: kp.privatePackage }
}

const many = (identity: string, n: number): Promise<Made[]> => Promise.all(Array.from({ length: n }, () => keyPackage(identity)))
const b64 = (made: Made[]): string[] => made.map((m) => m.base64)

for (const mode of modesUnderTest()) {
  t.test(`${mode}: upload, count, claim, and a member added with what was claimed`, async (t) => {
    const server = await startServerProcess({ mode, redisDb: REDIS_DB, env: { MLS_UPLOADS_PER_MINUTE: '0' } }) // many refused uploads below
    t.teardown(() => server.stop())
    const [alice, bob, carol] = [uniqueUser('alice'), uniqueUser('bob'), uniqueUser('carol')]
    const api = { alice: apiFor(server.httpUrl, alice), bob: apiFor(server.httpUrl, bob), carol: apiFor(server.httpUrl, carol) }

    const unauthenticated = await fetch(`${server.httpUrl}/v1/mls/key-packages/count?deviceId=phone`)
    t.equal(unauthenticated.status, 401, 'no token: 401')

    const phone = await many(`${alice}:phone`, 3)
    const phoneLast = await keyPackage(`${alice}:phone`)
    const first = await api.alice.post('/v1/mls/key-packages', { deviceId: 'phone', keyPackages: b64(phone) })
    t.same([first.status, first.body.error], [400, 'last_resort_required'], 'a first upload needs a last-resort package')
    const stored = await api.alice.post('/v1/mls/key-packages', { deviceId: 'phone', keyPackages: b64(phone), lastResort: phoneLast.base64 })
    t.same([stored.status, stored.body], [200, { deviceId: 'phone', oneTime: 3, lastResort: true }], 'three one-time packages and a last resort')
    const laptopLast = await keyPackage(`${alice}:laptop`)
    t.equal((await api.alice.post('/v1/mls/key-packages', { deviceId: 'laptop', keyPackages: [], lastResort: laptopLast.base64 })).status, 200, 'a second device, last resort only')
    t.same((await api.alice.get('/v1/mls/key-packages/count?deviceId=phone')).body, { deviceId: 'phone', oneTime: 3, lastResort: true }, 'the count')
    t.same((await api.bob.get('/v1/mls/key-packages/count?deviceId=phone')).body, { deviceId: 'phone', oneTime: 0, lastResort: false }, 'counts are per user: bob has none on his phone')

    // What the server refuses, and where it says the problem is
    const refused = async (body: unknown, error: string, field?: string, as = api.alice): Promise<void> => {
      const response = await as.post('/v1/mls/key-packages', body)
      t.equal(response.body.error, error, `${error}${field === undefined ? '' : ` at ${field}`}: ${response.body.message}`)
      if (field !== undefined) t.equal(response.body.field, field)
    }
    const bobs = await keyPackage(`${bob}:phone`)
    await refused({ deviceId: 'phone', keyPackages: [bobs.base64] }, 'invalid_key_package', 'body.keyPackages.0')
    await refused({ deviceId: 'tablet', keyPackages: [], lastResort: (await keyPackage(`${alice}:phone`)).base64 }, 'invalid_key_package', 'body.lastResort')
    const p256 = await getCiphersuiteImpl(getCiphersuiteFromName('MLS_128_DHKEMP256_AES128GCM_SHA256_P256'))
    await refused({ deviceId: 'phone', keyPackages: [(await keyPackage(`${alice}:phone`, p256)).base64] }, 'invalid_key_package', 'body.keyPackages.0')
    const tampered = Buffer.from((await keyPackage(`${alice}:phone`)).base64, 'base64')
    tampered[tampered.length - 10]! ^= 1
    await refused({ deviceId: 'phone', keyPackages: [phone[0]!.base64.replace(/.$/, ''), tampered.toString('base64')] }, 'invalid_key_package', 'body.keyPackages.0')
    await refused({ deviceId: 'phone', keyPackages: [tampered.toString('base64')] }, 'invalid_key_package', 'body.keyPackages.0')
    await refused({ deviceId: 'phone', keyPackages: [Buffer.from('not an MLS message').toString('base64')] }, 'invalid_key_package', 'body.keyPackages.0')
    await refused({ deviceId: 'phone', keyPackages: [(await keyPackage(`${alice}:phone`, suite1, { notBefore: 0n, notAfter: 1n })).base64] }, 'invalid_key_package', 'body.keyPackages.0')
    await refused({ deviceId: 'phone', keyPackages: [phone[1]!.base64] }, 'duplicate_key_package')
    await refused({ deviceId: 'phone', keyPackages: ['x'.repeat(3000)] }, 'invalid_request', 'body.keyPackages.0')
    await refused({ deviceId: 'no spaces', keyPackages: [] }, 'invalid_request', 'body.deviceId')
    await refused({ deviceId: 'phone', keyPackages: b64(await many(`${alice}:phone`, 98)) }, 'too_many_key_packages')
    t.same((await api.alice.get('/v1/mls/key-packages/count?deviceId=phone')).body.oneTime, 3, 'nothing refused was stored')

    // bob claims for alice (and for someone with nothing): one per device
    const claim = await api.bob.post('/v1/mls/key-packages/claim', { users: [alice, carol, alice] })
    t.equal(claim.status, 200, 'claimed')
    t.same(claim.body.keyPackages.map((p: any) => [p.user, p.deviceId, p.lastResort]), [[alice, 'laptop', true], [alice, 'phone', false]], 'one per device of alice: laptop\'s last resort, a one-time package of phone')
    t.same(claim.body.missing, [carol], 'carol has none')
    t.ok(b64(phone).includes(claim.body.keyPackages[1].keyPackage), 'the package as uploaded')
    t.same((await api.alice.get('/v1/mls/key-packages/count?deviceId=phone')).body.oneTime, 2, 'phone holds one fewer')

    // bob adds alice's phone to a group with it; her phone joins from the Welcome with its private keys
    const bobKp = await generateKeyPackage({ credentialType: 'basic', identity: new TextEncoder().encode(`${bob}:phone`) }, defaultCapabilities(), defaultLifetime, [], suite1)
    const group = await createGroup(new TextEncoder().encode('g'), bobKp.publicPackage, bobKp.privatePackage, [], suite1)
    const decoded = decodeMlsMessage(Buffer.from(claim.body.keyPackages[1].keyPackage, 'base64'), 0)?.[0]
    if (decoded?.wireformat !== 'mls_key_package') throw new Error('claimed package does not decode')
    const commit = await createCommit({ state: group, cipherSuite: suite1 }, { extraProposals: [{ proposalType: 'add', add: { keyPackage: decoded.keyPackage } }], ratchetTreeExtension: true })
    const mine = phone.find((p) => p.base64 === claim.body.keyPackages[1].keyPackage)!
    const joined = await joinGroup(commit.welcome!, decoded.keyPackage, mine.privatePackage, emptyPskIndex, suite1)
    t.same(joined.keySchedule.epochAuthenticator, commit.newState.keySchedule.epochAuthenticator, 'alice\'s phone joins bob\'s group from the claimed package')

    // blocks: carol, blocked by alice, gets nothing of hers, told apart from nobody
    t.equal((await api.alice.put(`/v1/blocks/${carol}`, {})).status, 200, 'alice blocks carol')
    t.same((await api.carol.post('/v1/mls/key-packages/claim', { users: [alice] })).body, { keyPackages: [], missing: [alice] }, 'carol claims nothing of alice\'s')
    t.same((await api.alice.get('/v1/mls/key-packages/count?deviceId=phone')).body.oneTime, 2, 'and takes nothing')
    const tooMany = await api.bob.post('/v1/mls/key-packages/claim', { users: Array.from({ length: 21 }, (_, i) => `u${i}`) })
    t.same([tooMany.status, tooMany.body.error, tooMany.body.field], [400, 'invalid_request', 'body.users'], 'at most 20 users per claim')
    t.equal((await api.bob.post('/v1/mls/key-packages/claim', { users: [] })).status, 400, 'at least one')

    // after the one-time ones, the last resort, again and again
    for (let i = 0; i < 3; i++) await api.bob.post('/v1/mls/key-packages/claim', { users: [alice] })
    const drained = await api.bob.post('/v1/mls/key-packages/claim', { users: [alice] })
    t.same(drained.body.keyPackages.map((p: any) => [p.deviceId, p.lastResort, p.keyPackage]), [['laptop', true, laptopLast.base64], ['phone', true, phoneLast.base64]], 'drained: last resorts')

    // a device retired
    t.equal((await api.alice.delete('/v1/mls/key-packages/laptop')).status, 204, 'laptop retired')
    t.equal((await api.alice.delete('/v1/mls/key-packages/laptop')).body.error, 'device_not_found', 'once')
    t.same((await api.bob.post('/v1/mls/key-packages/claim', { users: [alice] })).body.keyPackages.map((p: any) => p.deviceId), ['phone'], 'claims leave it out')
  })
}

t.test('redis: two server processes claiming at once never hand out the same package; the upload budget', async (t) => {
  const [one, two] = await Promise.all([startServerProcess({ mode: 'redis', redisDb: REDIS_DB, env: { WORKERS: '1' } }), startServerProcess({ mode: 'redis', redisDb: REDIS_DB, env: { WORKERS: '1' } })])
  t.teardown(async () => { await Promise.all([one.stop(), two.stop()]) })
  const [dave, erin] = [uniqueUser('dave'), uniqueUser('erin')]
  const packages = await many(`${dave}:phone`, 30)
  const last = await keyPackage(`${dave}:phone`)
  t.equal((await apiFor(one.httpUrl, dave).post('/v1/mls/key-packages', { deviceId: 'phone', keyPackages: b64(packages), lastResort: last.base64 })).status, 200, '30 one-time packages')
  const claimers = [apiFor(one.httpUrl, erin), apiFor(two.httpUrl, erin)]
  const claims = await Promise.all(Array.from({ length: 40 }, (_, i) => claimers[i % 2]!.post('/v1/mls/key-packages/claim', { users: [dave] })))
  const got = claims.map((c) => c.body.keyPackages[0])
  const oneTime = got.filter((p: any) => !p.lastResort).map((p: any) => p.keyPackage)
  t.equal(oneTime.length, 30, '40 claims on two processes: the 30 one-time packages')
  t.equal(new Set(oneTime).size, 30, 'each once')
  t.same(new Set(oneTime), new Set(b64(packages)), 'the ones uploaded')
  t.ok(got.filter((p: any) => p.lastResort).every((p: any) => p.keyPackage === last.base64), 'the other 10: the last resort')

  // Uploads have a budget of their own (MLS_UPLOADS_PER_MINUTE, default 6 after a burst of 10): dave used one.
  const statuses: number[] = []
  for (let i = 0; i < 10; i++) statuses.push((await apiFor(one.httpUrl, dave).post('/v1/mls/key-packages', { deviceId: 'phone', keyPackages: [] })).status)
  t.same(statuses, [...Array(9).fill(200), 429], 'the 11th upload in a burst: 429')
  const limited = await apiFor(one.httpUrl, dave).post('/v1/mls/key-packages', { deviceId: 'phone', keyPackages: [] })
  t.same([limited.status, limited.body.error], [429, 'rate_limited'], 'rate_limited')
  t.equal((await apiFor(two.httpUrl, dave).post('/v1/mls/key-packages', { deviceId: 'phone', keyPackages: [] })).status, 200, 'per process: the other still takes one')
})
