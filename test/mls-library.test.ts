// The MLS library we build group end-to-end encryption on (ts-mls, docs/mls.md):
// official RFC 9420 test vectors it must pass, and the life of a 3-member group
// through its public API, so an upgrade that changes either fails here first.
import t from 'tap'
import { readFileSync } from 'node:fs'
import {
  createApplicationMessage, createCommit, createGroup, decodeGroupState, decodeMlsMessage, defaultCapabilities,
  defaultLifetime, emptyPskIndex, encodeGroupState, encodeMlsMessage, generateKeyPackage, getCiphersuiteFromName,
  getCiphersuiteImpl, joinGroup, makePskIndex, processPrivateMessage, processPublicMessage,
  type CiphersuiteImpl, type ClientState, type KeyPackage, type PrivateKeyPackage
} from 'ts-mls'
import { defaultClientConfig } from 'ts-mls/clientConfig.js'
import { decodeRatchetTree } from 'ts-mls/ratchetTree.js'

/** The default suite (docs/mls.md): X25519, AES-128-GCM, SHA-256, Ed25519; Node 20's WebCrypto, no optional package. */
const SUITE = 'MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519'
const impl = await getCiphersuiteImpl(getCiphersuiteFromName(SUITE))

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, 'hex'))
const text = (s: string): Uint8Array => new TextEncoder().encode(s)

interface PassiveClientVector {
  cipher_suite: number
  external_psks: Array<{ psk_id: string, psk: string }>
  key_package: string
  signature_priv: string
  encryption_priv: string
  init_priv: string
  welcome: string
  ratchet_tree: string | null
  initial_epoch_authenticator: string
  epochs: Array<{ proposals: string[], commit: string, epoch_authenticator: string }>
}

const vectors = (name: string): PassiveClientVector[] =>
  JSON.parse(readFileSync(new URL(`vectors/mls/${name}.suite1.json`, import.meta.url), 'utf8')) as PassiveClientVector[]

/** A passive client joins from the vector's Welcome, applies each epoch's proposals and Commit, and must reach the vector's epoch authenticators. */
async function passiveClient (v: PassiveClientVector, cs: CiphersuiteImpl): Promise<{ initial: Uint8Array, epochs: Uint8Array[] }> {
  const kp = decodeMlsMessage(hex(v.key_package), 0)?.[0]
  const welcome = decodeMlsMessage(hex(v.welcome), 0)?.[0]
  if (kp?.wireformat !== 'mls_key_package' || welcome?.wireformat !== 'mls_welcome') throw new Error('vector does not decode')
  const keys: PrivateKeyPackage = { hpkePrivateKey: hex(v.encryption_priv), initPrivateKey: hex(v.init_priv), signaturePrivateKey: hex(v.signature_priv) }
  const tree = v.ratchet_tree === null ? undefined : decodeRatchetTree(hex(v.ratchet_tree), 0)?.[0]
  const psks = Object.fromEntries(v.external_psks.map((p) => [Buffer.from(hex(p.psk_id)).toString('base64'), hex(p.psk)]))
  let state = await joinGroup(welcome.welcome, kp.keyPackage, keys, makePskIndex(undefined, psks), cs, tree)
  const initial = state.keySchedule.epochAuthenticator
  const epochs: Uint8Array[] = []
  for (const epoch of v.epochs) {
    for (const bytes of [...epoch.proposals, epoch.commit]) {
      const m = decodeMlsMessage(hex(bytes), 0)?.[0]
      if (m?.wireformat === 'mls_private_message') state = (await processPrivateMessage(state, m.privateMessage, makePskIndex(state, psks), cs)).newState
      else if (m?.wireformat === 'mls_public_message') state = (await processPublicMessage(state, m.publicMessage, makePskIndex(state, psks), cs)).newState
      else throw new Error('not a handshake message')
    }
    epochs.push(state.keySchedule.epochAuthenticator)
  }
  return { initial, epochs }
}

for (const name of ['passive-client-welcome', 'passive-client-handling-commit']) {
  t.test(`RFC 9420 test vectors: ${name} (cipher suite 1)`, async (t) => {
    const all = vectors(name)
    t.ok(all.length > 0 && all.every((v) => v.cipher_suite === 1), `${all.length} vectors of suite 1`)
    for (const [i, v] of all.entries()) {
      const got = await passiveClient(v, impl)
      t.same(got.initial, hex(v.initial_epoch_authenticator), `#${i}: joined at the vector's epoch`)
      t.same(got.epochs, v.epochs.map((e) => hex(e.epoch_authenticator)), `#${i}: then through its ${v.epochs.length} epochs`)
    }
  })
}

t.test('a tampered vector Commit is refused', async (t) => {
  const v = vectors('passive-client-handling-commit').find((x) => x.epochs.length > 0)!
  const commit = hex(v.epochs[0]!.commit)
  commit[commit.length - 5]! ^= 1
  await t.rejects(passiveClient({ ...v, epochs: [{ ...v.epochs[0]!, commit: Buffer.from(commit).toString('hex') }] }, impl), 'one bit flipped: an error, not a new epoch')
})

// --- the API we build on: one group's life ---

interface Member { name: string, state: ClientState }

async function keyPackage (name: string): Promise<{ publicPackage: KeyPackage, privatePackage: PrivateKeyPackage }> {
  return generateKeyPackage({ credentialType: 'basic', identity: text(name) }, defaultCapabilities(), defaultLifetime, [], impl)
}

/** Over the wire and back, as the server would store and serve it. */
function wire (m: Parameters<typeof encodeMlsMessage>[0]): ReturnType<typeof decodeMlsMessage> {
  const bytes = encodeMlsMessage(m)
  return decodeMlsMessage(bytes, 0)
}

async function receive (member: Member, bytes: Uint8Array): Promise<string | undefined> {
  const m = decodeMlsMessage(bytes, 0)?.[0]
  if (m?.wireformat !== 'mls_private_message') throw new Error('expected a private message')
  const result = await processPrivateMessage(member.state, m.privateMessage, emptyPskIndex, impl)
  member.state = result.newState
  return result.kind === 'applicationMessage' ? new TextDecoder().decode(result.message) : undefined
}

async function send (member: Member, body: string): Promise<Uint8Array> {
  const { newState, privateMessage } = await createApplicationMessage(member.state, text(body), impl)
  member.state = newState
  return encodeMlsMessage({ version: 'mls10', wireformat: 'mls_private_message', privateMessage })
}

/** A device persists its group state between runs: the library's binary codec, then its client config added back (not serialised). */
function persisted (state: ClientState): ClientState {
  const decoded = decodeGroupState(encodeGroupState(state), 0)
  if (decoded === undefined) throw new Error('group state does not decode')
  return { ...decoded[0], clientConfig: state.clientConfig }
}

/** Keeps the fewest past epochs' receiving keys the library allows (0 keeps every epoch: docs/mls.md, risks). */
const leanConfig = { ...defaultClientConfig, keyRetentionConfig: { ...defaultClientConfig.keyRetentionConfig, retainKeysForEpochs: 1 } }

const leafOf = (state: ClientState, name: string): number =>
  state.ratchetTree.findIndex((n) => n?.nodeType === 'leaf' && n.leaf.credential.credentialType === 'basic' && new TextDecoder().decode(n.leaf.credential.identity) === name) / 2

t.test('3 members: add with a Welcome, messages, state saved and restored, remove', async (t) => {
  const aliceKp = await keyPackage('alice')
  const alice: Member = { name: 'alice', state: await createGroup(text('g-1'), aliceKp.publicPackage, aliceKp.privatePackage, [], impl) }
  t.equal(alice.state.groupContext.epoch, 0n, 'a new group is at epoch 0')

  // bob and carol publish KeyPackages; alice claims them and adds both in one Commit
  const [bobKp, carolKp] = [await keyPackage('bob'), await keyPackage('carol')]
  const claimed = [bobKp, carolKp].map((kp) => {
    const m = wire({ version: 'mls10', wireformat: 'mls_key_package', keyPackage: kp.publicPackage })?.[0]
    if (m?.wireformat !== 'mls_key_package') throw new Error('key package does not decode')
    return m.keyPackage
  })
  const add = await createCommit({ state: alice.state, cipherSuite: impl }, {
    extraProposals: claimed.map((keyPackage) => ({ proposalType: 'add' as const, add: { keyPackage } })),
    ratchetTreeExtension: true
  })
  alice.state = add.newState
  t.equal(alice.state.groupContext.epoch, 1n, 'the Commit moves alice to epoch 1')
  t.ok(add.welcome, 'and makes one Welcome for the new members')
  const welcome = wire({ version: 'mls10', wireformat: 'mls_welcome', welcome: add.welcome! })?.[0]
  if (welcome?.wireformat !== 'mls_welcome') throw new Error('welcome does not decode')
  const bob: Member = { name: 'bob', state: await joinGroup(welcome.welcome, bobKp.publicPackage, bobKp.privatePackage, emptyPskIndex, impl, undefined, undefined, leanConfig) }
  const carol: Member = { name: 'carol', state: await joinGroup(welcome.welcome, carolKp.publicPackage, carolKp.privatePackage, emptyPskIndex, impl) }
  t.same([bob.state.groupContext.epoch, carol.state.groupContext.epoch], [1n, 1n], 'both join at epoch 1 from the same Welcome (ratchet tree in it)')
  t.same(bob.state.keySchedule.epochAuthenticator, alice.state.keySchedule.epochAuthenticator, 'and agree with alice on the epoch')

  // every member reads every other member
  t.equal(await receive(bob, await send(alice, 'hi all')), 'hi all', 'bob reads alice')
  const fromCarol = await send(carol, 'hi from carol')
  t.same([await receive(alice, fromCarol), await receive(bob, fromCarol)], ['hi from carol', 'hi from carol'], 'alice and bob read carol')

  // bob's device stops and starts again: its state survives serialisation
  bob.state = persisted(bob.state)
  t.equal(await receive(bob, await send(alice, 'after restart')), 'after restart', 'a restored state reads the next message')
  t.equal(await receive(alice, await send(bob, 'bob again')), 'bob again', 'and sends')

  // alice removes carol; bob applies the Commit, carol keeps her old state (her old keys)
  const carolBefore = carol.state
  const remove = await createCommit({ state: alice.state, cipherSuite: impl }, {
    extraProposals: [{ proposalType: 'remove', remove: { removed: leafOf(alice.state, 'carol') } }]
  })
  alice.state = remove.newState
  t.equal(remove.welcome, undefined, 'a removal needs no Welcome')
  const commitBytes = encodeMlsMessage(remove.commit)
  t.equal(await receive(bob, commitBytes), undefined, 'bob applies the Commit')
  t.equal(bob.state.groupContext.epoch, 2n, 'bob is at epoch 2')
  t.same(bob.state.keySchedule.epochAuthenticator, alice.state.keySchedule.epochAuthenticator, 'in step with alice')
  t.equal(leafOf(bob.state, 'carol'), -0.5, 'carol is no longer in bob\'s tree')

  const secret = await send(alice, 'carol must not read this')
  t.equal(await receive(bob, secret), 'carol must not read this', 'bob reads the next message')
  await t.rejects(receive({ name: 'carol', state: carolBefore }, secret), 'carol, with the keys she had, cannot')
  await t.rejects(receive({ name: 'carol', state: carolBefore }, commitBytes).then(() => receive(carol, secret)), 'nor after applying the Commit that removed her')

  // a message of the old epoch, made by the removed member after her removal: members keep past epochs' keys
  // (for late messages; 4 by default, at least 1) and read it. So the server must refuse messages of any but
  // the current epoch (docs/mls.md, delivery service). If an upgrade changes this, revisit that design.
  const stale = await send({ name: 'carol', state: carolBefore }, 'stale')
  t.equal(await receive(alice, stale), 'stale', 'default retention: alice reads a message of epoch 1 at epoch 2')
  t.equal(await receive(bob, stale), 'stale', 'so does bob, keeping 1 past epoch')
})

t.test('tampering with an application message is detected', async (t) => {
  const [aKp, bKp] = [await keyPackage('a'), await keyPackage('b')]
  const a: Member = { name: 'a', state: await createGroup(text('g-2'), aKp.publicPackage, aKp.privatePackage, [], impl) }
  const add = await createCommit({ state: a.state, cipherSuite: impl }, { extraProposals: [{ proposalType: 'add', add: { keyPackage: bKp.publicPackage } }], ratchetTreeExtension: true })
  a.state = add.newState
  const b: Member = { name: 'b', state: await joinGroup(add.welcome!, bKp.publicPackage, bKp.privatePackage, emptyPskIndex, impl) }
  const bytes = await send(a, 'intact')
  const altered = Uint8Array.from(bytes)
  altered[altered.length - 3]! ^= 0x80
  await t.rejects(receive({ ...b }, altered), 'an altered ciphertext fails authentication')
  t.equal(await receive(b, bytes), 'intact', 'the intact one still reads')
})
