// Property-based fuzzing (fast-check) of everything a client can send, against
// the real server in both storage modes: JSON payloads (deep, wide, huge
// strings, lone surrogates and invalid UTF-8, 1e400, duplicate keys,
// `__proto__`, odd ids and types, non-JSON), odd topics, raw MQTT packets of
// every command with random fields, and REST requests (methods, paths, query
// strings, bodies, content types) on every /v1 route of the OpenAPI document.
// The same body sent over MQTT and POST /v1/messages must be stored both ways
// or refused both ways. What the fuzzing found is kept as fixed cases too.
//
// Invariants: the server process never exits; every QoS 1 publish of an
// authenticated client gets its PUBACK and the answer the contract promises
// (stored and echoed with its body intact, or an error event), and its
// connection is dropped only for a packet over the packet limit or a PUBLISH
// the MQTT spec forbids (wildcards, too many levels); every REST answer is
// JSON, never a 5xx, and an error names itself (`{"error": "snake_case"}`);
// after each property (and each raw session), normal messages still flow end
// to end.
//
// Each property is bounded by runs and by time (FUZZ_SCALE=10 fuzzes ten
// times longer). A failure prints fast-check's report (seed, path, the
// shrunk counterexample) and the command that replays it:
//   FUZZ_SEED=<seed> FUZZ_PATH=<path> FUZZ_ONLY=<property> ONLY_MODE=<mode> npx tap test/fuzz.test.ts
// FUZZ_SEED alone runs every property from that seed; FUZZ_DEBUG=1 prints every run (its input and time) to stderr.
import t, { type Test } from 'tap'
import fc from 'fast-check'
import { Agent, request as httpRequest } from 'node:http'
import { createConnection } from 'node:net'
import mqttPacket from 'mqtt-packet'
import { modesUnderTest, startServerProcess, type Mode, type ServerHandle } from './helpers/server-process.ts'
import { connectDevice, type Device } from './helpers/devices.ts'
import { apiFor } from './helpers/rest.ts'
import { token, uniqueUser } from './helpers/tokens.ts'
import {
  generatePacket, jsonSpec, keyArb, payloadSpec, rawPacketArb, renderJsonSpec, renderPayload, topicSpec,
  type JsonSpec, type PayloadSpec, type RawPacket, type TopicSpec
} from './helpers/fuzz-inputs.ts'

// Big enough for a 10,000-deep array body (20 KB); the packet limit is 2 × it + 1 KiB (broker/packet-size-guard.ts).
const MAX_PAYLOAD_BYTES = 24_576
const PACKET_LIMIT = 2 * MAX_PAYLOAD_BYTES + 1024
/** Aedes closes the connection of a PUBLISH to a topic with more levels than this (its default). */
const MAX_TOPIC_LEVELS = 100
/** JSON nested deeper than this (the payload object is level 1) is refused with invalid_message / 400 (docs/protocol.md). */
const MAX_JSON_DEPTH = 64

const SCALE = Number(process.env.FUZZ_SCALE || '1')
const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : undefined
const PATH = process.env.FUZZ_PATH || undefined
const ONLY = process.env.FUZZ_ONLY || undefined

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** `work`, or `fallback` after `ms`. */
function within<T, F> (work: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  let timer: ReturnType<typeof setTimeout> | undefined
  return Promise.race([work, new Promise<F>((resolve) => { timer = setTimeout(() => resolve(fallback), ms) })]).finally(() => clearTimeout(timer))
}

async function until (done: () => boolean, ms: number): Promise<boolean> {
  const started = Date.now()
  while (!done()) {
    if (Date.now() - started > ms) return false
    await sleep(2)
  }
  return true
}

/** The server's error-level log lines since `mark` (what a failure message should show), once they are written. */
async function serverErrors (server: ServerHandle, mark: number): Promise<string> {
  await sleep(100)
  const lines = server.output().slice(mark).split('\n').flatMap((line) => {
    try {
      const record = JSON.parse(line) as { level?: number, msg?: string, err?: { message?: string } }
      return (record.level ?? 0) >= 50 ? [`${record.msg}: ${record.err?.message ?? ''}`.slice(0, 300)] : []
    } catch { return [] }
  })
  return lines.length === 0 ? '' : `; server logged: ${lines.slice(0, 3).join(' | ')}`
}

interface Budget { runs: number, seconds: number }

/** What the runs of the current property came to (printed after it, to show what the generators reach). */
const tally = new Map<string, number>()
const count = (outcome: string): void => { tally.set(outcome, (tally.get(outcome) ?? 0) + 1) }

/** Runs one property; on failure, t.fail with fast-check's report and the replay command. */
async function fuzz<T> (t: Test, mode: Mode, name: string, arbitrary: fc.Arbitrary<T>, predicate: (value: T) => Promise<void>, budget: Budget): Promise<void> {
  if (ONLY !== undefined && ONLY !== name) return
  // An interrupted run goes on in the background: the next property waits for it.
  let running: Promise<unknown> = Promise.resolve()
  const property = fc.asyncProperty(arbitrary, async (value) => {
    const started = Date.now()
    const run = predicate(value)
    running = run.catch(() => {})
    try { await run } finally {
      if (process.env.FUZZ_DEBUG) process.stderr.write(`${name} ${Date.now() - started} ms ${fc.stringify(value).slice(0, 300)}\n`)
    }
  })
  const details = await fc.check(property, {
    numRuns: Math.ceil(budget.runs * SCALE),
    includeErrorInReport: true,
    plugins: [fc.interruptAfterTimeLimit(budget.seconds * 1000 * SCALE)],
    ...(SEED === undefined ? {} : { seed: SEED }),
    ...(SEED !== undefined && PATH !== undefined && ONLY === name ? { path: PATH } : {})
  })
  await running
  t.comment(`${name}: ${[...tally].sort(([, a], [, b]) => b - a).map(([outcome, n]) => `${outcome} ×${n}`).join(', ')}`)
  tally.clear()
  if (details.failed) {
    const replay = `FUZZ_SEED=${details.seed} FUZZ_PATH=${details.counterexamplePath} FUZZ_ONLY='${name}' ONLY_MODE=${mode} npx tap test/fuzz.test.ts`
    t.fail(`${name} (seed ${details.seed})`, { report: fc.defaultReportMessage(details) ?? 'no report', replay })
  } else {
    t.pass(`${name}: ${details.numRuns} runs, seed ${details.seed}${details.interrupted ? ' (stopped at its time limit)' : ''}`)
  }
}

// ---- what the contract promises for a payload ----

type Expectation =
  /** PUBACK, then one of these error events. */
  | { kind: 'error', codes: string[] }
  /** PUBACK, then the message back on the sender's own inbox, body intact. */
  | { kind: 'message', id: string, body: unknown }
  /** PUBACK and no error (typing). */
  | { kind: 'quiet' }
  /** An id this sender used before: PUBACK, and no error but id_conflict. */
  | { kind: 'repeat' }

const ID = /^[A-Za-z0-9._@-]{1,128}$/

/** How deeply the JSON text nests arrays and objects (brackets in strings do not count): what the depth limit counts. */
function textDepth (json: Buffer): number {
  let [depth, deepest, inString] = [0, 0, false]
  for (let i = 0; i < json.length; i++) {
    const byte = json[i]
    if (inString) {
      if (byte === 0x5c) i++
      else if (byte === 0x22) inString = false
    } else if (byte === 0x22) inString = true
    else if (byte === 0x5b || byte === 0x7b) deepest = Math.max(deepest, ++depth)
    else if (byte === 0x5d || byte === 0x7d) depth--
  }
  return deepest
}

/** A `__proto__` key, or a `constructor` holding `prototype`, anywhere (refused by both doors: docs/protocol.md). */
function hasPrototypeKey (value: unknown): boolean {
  if (value === null || typeof value !== 'object') return false
  const own = (object: object, key: string): boolean => Object.prototype.hasOwnProperty.call(object, key)
  if (own(value, '__proto__')) return true
  const ctor = (value as Record<string, unknown>).constructor
  if (own(value, 'constructor') && ctor !== null && typeof ctor === 'object' && own(ctor, 'prototype')) return true
  return Object.values(value).some(hasPrototypeKey)
}

/** docs/protocol.md, "Sending a message" and "Error events", as a function of the bytes. */
function expectFor (payload: Buffer, target: string, used: Map<string, string>): Expectation {
  if (payload.length > MAX_PAYLOAD_BYTES) return { kind: 'error', codes: ['payload_too_large'] }
  let parsed: unknown
  try { parsed = JSON.parse(payload.toString('utf8')) } catch { return { kind: 'error', codes: ['invalid_json'] } }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return { kind: 'error', codes: ['invalid_message'] }
  if (textDepth(payload) > MAX_JSON_DEPTH) return { kind: 'error', codes: ['invalid_message'] }
  if (hasPrototypeKey(parsed)) return { kind: 'error', codes: ['invalid_message'] }
  const object = parsed as Record<string, unknown>
  if (object.type === 'typing') {
    if (object.active !== undefined && typeof object.active !== 'boolean') return { kind: 'error', codes: ['invalid_message'] }
    return { kind: 'quiet' }
  }
  if (object.type !== undefined && object.type !== 'message') return { kind: 'error', codes: ['invalid_message'] }
  if (typeof object.id !== 'string' || !ID.test(object.id) || object.body === undefined) return { kind: 'error', codes: ['invalid_message'] }
  if (used.has(object.id)) return { kind: 'repeat' }
  used.set(object.id, target)
  return { kind: 'message', id: object.id, body: object.body }
}

/** Equal as JSON: what was sent, as JSON.parse read it, and what came back (a non-finite number is sent on as null). */
function sameJson (sent: unknown, received: unknown): string | undefined {
  const stack: Array<[unknown, unknown, string]> = [[sent, received, 'body']]
  while (stack.length > 0) {
    const [a, b, where] = stack.pop()!
    if (typeof a === 'number' && !Number.isFinite(a)) { if (b !== null) return `${where}: ${a} came back as ${JSON.stringify(b)}`; continue }
    if (a === null || typeof a !== 'object') { if (a !== b) return `${where}: ${JSON.stringify(a)?.slice(0, 80)} came back as ${JSON.stringify(b)?.slice(0, 80)}`; continue }
    if (b === null || typeof b !== 'object' || Array.isArray(a) !== Array.isArray(b)) return `${where}: a container came back as ${typeof b}`
    const [keysA, keysB] = [Object.keys(a), Object.keys(b)]
    if (keysA.join('\u0000') !== keysB.join('\u0000')) return `${where}: keys ${JSON.stringify(keysA.slice(0, 5))} came back as ${JSON.stringify(keysB.slice(0, 5))}`
    for (const key of keysA) stack.push([(a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key], `${where}.${key.slice(0, 20)}`])
  }
  return undefined
}

// ---- the fuzzing client ----

/** A connected, authenticated mqtt.js device, connected again after a close (which the property judges). */
class Connection {
  #device: Device | undefined
  #closed = true
  #close: Promise<'closed'> = Promise.resolve('closed')
  constructor (readonly url: string, readonly user: string, readonly deviceId: string) {}

  get closed (): boolean { return this.#closed }
  get whenClosed (): Promise<'closed'> { return this.#close }

  async device (): Promise<Device> {
    if (this.#device !== undefined && !this.#closed) return this.#device
    await this.#device?.end(true).catch(() => {})
    const device = await connectDevice({ url: this.url, userId: this.user, deviceId: this.deviceId, clean: true })
    // After CONNECT nobody listens for 'error', and an unheard 'error' would throw in this process.
    device.client.on('error', () => {})
    ;(device.client as unknown as { stream: { setNoDelay?: (on: boolean) => void } }).stream.setNoDelay?.(true)
    this.#closed = false
    this.#close = new Promise((resolve) => device.client.once('close', () => { this.#closed = true; resolve('closed') }))
    this.#device = device
    return device
  }

  /** After a publish that may close the connection (a moment later): start the next run on a new one. */
  async reset (): Promise<void> {
    await this.end()
    this.#closed = true
  }

  async end (): Promise<void> { await this.#device?.end(true).catch(() => {}) }
}

/** A QoS 1 publish: 'acked' (PUBACK), 'closed' (the connection went), 'refused' (mqtt.js would not send it) or 'no answer'. */
async function publishQos1 (connection: Connection, topic: string, payload: Buffer, retain = false): Promise<'acked' | 'closed' | 'refused' | 'no answer'> {
  const device = await connection.device()
  const sent = device.client.publishAsync(topic, payload, { qos: 1, retain }).then(() => 'acked' as const, (error: Error) => {
    if (process.env.FUZZ_DEBUG) process.stderr.write(`publish failed: ${error.message} (closed: ${connection.closed})\n`)
    // mqtt.js fails what is in flight when the socket closes, before its 'close' event.
    return connection.closed || /Connection closed/.test(error.message) ? 'closed' as const : 'refused' as const
  })
  return within(Promise.race([sent, connection.whenClosed]), 5_000, 'no answer' as const)
}

interface World {
  server: ServerHandle
  /** The fuzzing sender, a member of `group` with `peer`. */
  sender: string
  peer: string
  group: string
  connection: Connection
  /** For recipients made up by the topic fuzzer: ids no other test uses. */
  prefix: string
  /** Ids the sender has used, and to whom. */
  used: Map<string, string>
  /** A normal conversation, to show traffic still flows. */
  alice: Device
  bob: Device
  aliceId: string
  bobId: string
}

let counter = 0

async function normalTrafficFlows (world: World): Promise<string | undefined> {
  if (world.server.child.exitCode !== null || world.server.child.signalCode !== null) return 'the server process exited'
  const id = `ok-${counter++}`
  const sent = await within(world.alice.send(world.bobId, { id, body: 'still fine' }).then(() => 'acked'), 10_000, 'no PUBACK')
  if (sent !== 'acked') return `a normal MQTT message got ${sent}`
  if (!await until(() => world.bob.inbox.some((event) => event.id === id), 10_000)) return 'a normal MQTT message did not arrive'
  const response = await apiFor(world.server.httpUrl, world.aliceId).post('/v1/messages', { to: world.bobId, id: `${id}r`, body: 'over REST' })
  if (response.status !== 201) return `a normal REST send answered ${response.status} ${JSON.stringify(response.body)}`
  if (!await until(() => world.bob.inbox.some((event) => event.id === `${id}r`), 10_000)) return 'a normal REST message did not arrive'
  return undefined
}

async function setUp (server: ServerHandle): Promise<World> {
  const [sender, peer, aliceId, bobId] = [uniqueUser('fuzzer'), uniqueUser('peer'), uniqueUser('alice'), uniqueUser('bob')]
  const created = await apiFor(server.httpUrl, sender).post('/v1/groups', { name: 'fuzz', members: [peer] })
  if (created.status !== 201) throw new Error(`could not create the group: ${created.status}`)
  const bob = await connectDevice({ url: server.mqttUrl, userId: bobId, deviceId: 'phone' })
  const alice = await connectDevice({ url: server.mqttUrl, userId: aliceId, deviceId: 'phone', subscribe: false })
  return {
    server,
    sender,
    peer,
    group: created.body.group.id as string,
    connection: new Connection(server.mqttUrl, sender, 'fuzz'),
    prefix: uniqueUser('to').replace(/[^A-Za-z0-9]/g, ''),
    used: new Map(),
    alice,
    bob,
    aliceId,
    bobId
  }
}

// ---- MQTT: payloads ----

/**
 * The error events of the run that started at `errorsMark`. In Redis mode an error event goes through Redis
 * pub/sub and may arrive after its PUBACK, so a run ends with a barrier: a publish to a forbidden topic, whose
 * own error event comes after every earlier one of this connection.
 */
async function errorsOfRun (world: World, device: Device, errorsMark: number): Promise<Array<Record<string, unknown>>> {
  const barrier = `fuzz-barrier/${counter++}`
  const outcome = await publishQos1(world.connection, barrier, Buffer.from('{}'))
  if (outcome !== 'acked') throw new Error(`the barrier publish after this run got ${outcome}`)
  if (!await until(() => device.errors.slice(errorsMark).some((event) => event.topic === barrier), 5_000)) throw new Error('the barrier\'s error event never came')
  const errors = device.errors.slice(errorsMark)
  return errors.slice(0, errors.findIndex((event) => event.topic === barrier))
}

type Target = 'peer' | 'self' | 'group'

async function checkPublish (world: World, topic: string, payload: Buffer, expected: Expectation, target: { to?: string, group?: string }, retain: boolean): Promise<void> {
  const mark = world.server.output().length
  const device = await world.connection.device()
  const [inboxMark, errorsMark] = [device.inbox.length, device.errors.length]
  const outcome = await publishQos1(world.connection, topic, payload, retain)
  const packetBytes = payload.length + Buffer.byteLength(topic) + 7
  // mqtt.js refused to send it (e.g. a topic over 65,535 bytes), or the server closed the connection for an oversize packet.
  count(outcome === 'acked' ? (expected.kind === 'error' ? expected.codes.join('|') : expected.kind) : outcome)
  if (outcome === 'refused' || (outcome === 'closed' && packetBytes > PACKET_LIMIT)) return world.connection.reset()
  if (outcome !== 'acked') throw new Error(`no PUBACK (${outcome}) for a ${payload.length}-byte payload, expected ${expected.kind}${await serverErrors(world.server, mark)}`)
  const errors = await errorsOfRun(world, device, errorsMark)
  const errorsSince = (): Array<Record<string, unknown>> => errors.filter((event) => event.topic === Buffer.from(topic).toString())
  if (expected.kind === 'error') {
    const codes = errorsSince().map((event) => event.code)
    if (!codes.some((code) => expected.codes.includes(code as string))) throw new Error(`expected error ${expected.codes.join('|')}, got ${JSON.stringify(codes)}${await serverErrors(world.server, mark)}`)
    return
  }
  const refused = errorsSince()
  if (expected.kind === 'repeat') {
    if (refused.some((event) => event.code !== 'id_conflict')) throw new Error(`a repeated id got ${JSON.stringify(refused.map((event) => event.code))}`)
    return
  }
  if (refused.length > 0) {
    throw new Error(`expected ${expected.kind === 'message' ? 'the message stored' : 'no error'}, got error ${JSON.stringify(refused.map(({ code, message }) => ({ code, message })))}`)
  }
  if (expected.kind === 'quiet') return
  const arrived = await until(() => device.inbox.slice(inboxMark).some((event) => event.type === 'message' && event.id === expected.id), 5_000)
  if (!arrived) throw new Error(`PUBACKed without an error, but message ${expected.id} never came back to the sender${await serverErrors(world.server, mark)}`)
  const echo = device.inbox.slice(inboxMark).find((event) => event.type === 'message' && event.id === expected.id)!
  if (echo.from !== world.sender || (target.to !== undefined && echo.to !== target.to) || (target.group !== undefined && echo.group !== target.group) || typeof echo.seq !== 'number') {
    throw new Error(`the stored envelope is wrong: ${JSON.stringify({ ...echo, body: undefined })}`)
  }
  const difference = sameJson(expected.body, echo.body)
  if (difference !== undefined) throw new Error(`the body came back changed: ${difference}`)
}

async function fuzzPayloads (t: Test, mode: Mode, world: World, budget: Budget): Promise<void> {
  const input = fc.record({
    payload: payloadSpec,
    to: fc.constantFrom<Target>('peer', 'peer', 'group', 'self'),
    retain: fc.boolean()
  })
  await fuzz(t, mode, 'mqtt payloads', input, async ({ payload: spec, to, retain }) => {
    const payload = renderPayload(spec)
    const target = to === 'group' ? { group: world.group } : { to: to === 'self' ? world.sender : world.peer }
    const topic = to === 'group' ? `group/${world.group}` : `user/${target.to}/inbox`
    await checkPublish(world, topic, payload, expectFor(payload, topic, world.used), target, retain)
  }, budget)
}

// ---- MQTT and REST agree ----

/** "POST /v1/messages does exactly the same over HTTP": the same body, sent both ways, is stored both ways or refused both ways for the same reason. */
async function fuzzParity (t: Test, mode: Mode, world: World, budget: Budget): Promise<void> {
  const api = apiFor(world.server.httpUrl, world.sender)
  const input = fc.record({ body: jsonSpec, to: fc.constantFrom<'peer' | 'group'>('peer', 'group') })
  await fuzz(t, mode, 'mqtt and rest agree', input, async ({ body: spec, to }) => {
    const body = renderJsonSpec(spec)
    const [mqttId, restId] = [`pm${counter}`, `pr${counter++}`]
    const payload = Buffer.concat([Buffer.from(`{"id":"${mqttId}","body":`), body, Buffer.from('}')])
    // The two doors measure size differently (raw bytes, re-serialised JSON): stay clear of the limit.
    if (payload.length > MAX_PAYLOAD_BYTES / 2) return
    const mark = world.server.output().length
    const device = await world.connection.device()
    const [inboxMark, errorsMark] = [device.inbox.length, device.errors.length]
    const topic = to === 'group' ? `group/${world.group}` : `user/${world.peer}/inbox`
    const outcome = await publishQos1(world.connection, topic, payload)
    if (outcome !== 'acked') throw new Error(`no PUBACK (${outcome})${await serverErrors(world.server, mark)}`)
    let overMqtt: string
    let stored: Record<string, unknown> | undefined
    const errors = await errorsOfRun(world, device, errorsMark)
    if (errors.length > 0) overMqtt = String(errors[0]!.code)
    else {
      if (!await until(() => device.inbox.slice(inboxMark).some((event) => event.id === mqttId), 5_000)) throw new Error(`PUBACKed, no error, never came back${await serverErrors(world.server, mark)}`)
      overMqtt = 'stored'
      stored = device.inbox.slice(inboxMark).find((event) => event.id === mqttId)
    }
    const target = to === 'group' ? `"group":"${world.group}"` : `"to":"${world.peer}"`
    const response = await api.post('/v1/messages', Buffer.concat([Buffer.from(`{${target},"id":"${restId}","body":`), body, Buffer.from('}')]).toString())
    const overRest = response.status === 201 ? 'stored' : `${response.status} ${response.body?.error}`
    // Refused both ways is agreement, whatever the code: for JSON that is both invalid and too deep, MQTT
    // parses first (invalid_json) and REST measures first (invalid_request), and both are right.
    const same = overMqtt === 'stored'
      ? overRest === 'stored'
      : /^invalid_(json|message)$/.test(overMqtt) && /^400 invalid_(json|request|message)$/.test(overRest)
    if (!same) throw new Error(`over MQTT: ${overMqtt}; over REST: ${overRest} (${JSON.stringify(response.body).slice(0, 200)})`)
    count(overMqtt)
    if (stored !== undefined) {
      const difference = sameJson(stored.body, response.body.message.body)
      if (difference !== undefined) throw new Error(`stored differently: MQTT's ${difference} over REST`)
    }
  }, budget)
}

// ---- MQTT: topics ----

function renderTopic (world: World, spec: TopicSpec): string {
  if ('inboxOf' in spec) return `user/${world.prefix}${spec.inboxOf}/inbox`
  if ('groupNamed' in spec) return `group/${spec.groupNamed}`
  if ('levels' in spec) return spec.levels.join('/')
  if ('repeat' in spec) return spec.repeat.repeat(spec.times)
  switch (spec.named) {
    case 'own-inbox': return `user/${world.sender}/inbox`
    case 'peer-inbox': return `user/${world.peer}/inbox`
    case 'group': return `group/${world.group}`
    case 'own-presence': return `presence/${world.sender}`
    case 'peer-presence': return `presence/${world.peer}`
    case 'own-errors': return `user/${world.sender}/device/fuzz/errors`
    case 'sink': return '$inboxd/sink'
    case 'sys': return '$SYS/broker/clients'
  }
}

async function fuzzTopics (t: Test, mode: Mode, world: World, budget: Budget): Promise<void> {
  await fuzz(t, mode, 'mqtt topics', topicSpec, async (spec) => {
    const topic = renderTopic(world, spec)
    // What the server reads: mqtt.js writes the topic as UTF-8 (a lone surrogate becomes U+FFFD).
    const seen = Buffer.from(topic).toString()
    // The MQTT spec forbids these in a PUBLISH, and the broker closes the connection for them.
    // (An empty topic goes through the raw packets instead: mqtt.js never sends it and never calls back.)
    if (seen === '') return
    if (/[+#]/.test(seen) || seen.split('/').length > MAX_TOPIC_LEVELS) {
      const outcome = await publishQos1(world.connection, topic, Buffer.from('{"id":"x","body":1}'))
      count(`forbidden in MQTT: ${outcome}`)
      await world.connection.reset()
      if (outcome === 'no answer') throw new Error('a forbidden topic got neither a PUBACK nor a close')
      return
    }
    const id = `t${counter++}`
    const payload = Buffer.from(JSON.stringify({ id, body: 'topic fuzz' }))
    const group = /^group\/([^/]+)$/.exec(seen)?.[1]
    const recipient = /^user\/([^/]+)\/inbox$/.exec(seen)?.[1]
    let expected: Expectation
    let target: { to?: string, group?: string } = {}
    if (group !== undefined) {
      expected = group === world.group ? { kind: 'message', id, body: 'topic fuzz' } : { kind: 'error', codes: ['not_a_member'] }
      target = { group }
    } else if (recipient !== undefined) {
      expected = ID.test(recipient) ? { kind: 'message', id, body: 'topic fuzz' } : { kind: 'error', codes: ['unknown_recipient'] }
      target = { to: recipient }
    } else {
      expected = { kind: 'error', codes: ['forbidden_topic'] }
    }
    await checkPublish(world, topic, payload, expected, target, false)
  }, budget)
}

// ---- MQTT: raw packets ----

interface RawSession {
  /** A valid authenticated CONNECT first (of one of four devices), or none (the first generated packet is what the server reads). */
  connect: boolean
  device: number
  clean: boolean
  /** The protocol level mqtt-packet encodes the generated packets for. */
  version: 3 | 4 | 5
  packets: RawPacket[]
  /** Bits flipped in the generated bytes (after the valid CONNECT): [position, xor]. */
  flips: Array<[number, number]>
  /** Where the bytes are cut into separate writes. */
  cuts: number[]
}

/** Writes the session; resolves when the server answers a final PINGREQ, closes, or stays silent for 300 ms. */
function playRaw (port: number, bytes: Buffer[]): Promise<'pong' | 'closed' | 'silent'> {
  return new Promise((resolve) => {
    const socket = createConnection(port, '127.0.0.1')
    const parser = mqttPacket.parser({ protocolVersion: 5 })
    let settled = false
    const settle = (outcome: 'pong' | 'closed' | 'silent'): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.destroy()
      resolve(outcome)
    }
    const timer = setTimeout(() => settle('silent'), 300)
    parser.on('packet', (packet) => { if (packet.cmd === 'pingresp') settle('pong') })
    parser.on('error', () => {})
    socket.on('data', (chunk: Buffer) => { try { parser.parse(chunk) } catch { /* not ours to judge */ } })
    socket.on('error', () => {})
    socket.on('close', () => settle('closed'))
    socket.on('connect', async () => {
      for (const chunk of bytes) {
        if (socket.destroyed) return
        socket.write(chunk)
        await new Promise((resolve) => setImmediate(resolve))
      }
      if (!socket.destroyed) socket.write(mqttPacket.generate({ cmd: 'pingreq' }))
    })
  })
}

async function fuzzRawPackets (t: Test, mode: Mode, world: World, budget: Budget): Promise<void> {
  const rawUser = uniqueUser('raw')
  const session = fc.record({
    connect: fc.constantFrom(true, true, true, false),
    device: fc.integer({ min: 0, max: 3 }),
    clean: fc.boolean(),
    version: fc.constantFrom<3 | 4 | 5>(4, 4, 4, 3, 5),
    packets: fc.array(rawPacketArb([`user/${world.peer}/inbox`, `user/${rawUser}/inbox`, `presence/${world.peer}`, `group/${world.group}`]), { minLength: 1, maxLength: 6 }),
    // Mostly none: a flipped bit usually just ends the session.
    flips: fc.oneof({ weight: 3, arbitrary: fc.constant<Array<[number, number]>>([]) }, { weight: 1, arbitrary: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 2 }) }),
    cuts: fc.array(fc.nat(), { maxLength: 3 })
  })
  await fuzz(t, mode, 'mqtt raw packets', session, async (raw: RawSession) => {
    const mark = world.server.output().length
    const generated = Buffer.concat(raw.packets.map((packet) => generatePacket(packet, raw.version)))
    for (const [at, xor] of raw.flips) if (generated.length > 0) generated[at % generated.length]! ^= xor
    const cuts = [...new Set(raw.cuts.map((cut) => generated.length === 0 ? 0 : cut % generated.length))].sort((a, b) => a - b)
    const chunks: Buffer[] = [0, ...cuts].map((start, i, starts) => generated.subarray(start, starts[i + 1] ?? generated.length)).filter((chunk) => chunk.length > 0)
    if (raw.connect) {
      chunks.unshift(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: raw.clean, keepalive: 30, clientId: `${rawUser}:r${raw.device}`, username: rawUser, password: Buffer.from(token(rawUser)) }))
    }
    count(await playRaw(world.server.mqttPort, chunks))
    const problem = await normalTrafficFlows(world)
    if (problem !== undefined) throw new Error(`${problem}${await serverErrors(world.server, mark)}`)
  }, budget)
}

// ---- REST ----

interface Route { method: string, path: string, query: string[], body: string[] }

async function routesOf (server: ServerHandle): Promise<Route[]> {
  const document = await (await fetch(`${server.httpUrl}/openapi.json`)).json() as { paths: Record<string, Record<string, { parameters?: Array<{ in: string, name: string }>, requestBody?: { content?: Record<string, { schema?: { properties?: Record<string, unknown> } }> } }>> }
  return Object.entries(document.paths).filter(([path]) => path.startsWith('/v1/')).flatMap(([path, operations]) =>
    Object.entries(operations).map(([method, operation]) => ({
      method: method.toUpperCase(),
      path,
      query: (operation.parameters ?? []).filter((parameter) => parameter.in === 'query').map((parameter) => parameter.name),
      body: Object.keys(operation.requestBody?.content?.['application/json']?.schema?.properties ?? {})
    })))
}

/** Percent-encodes every byte of `text`'s UTF-8 but the unreserved ones. */
const percent = (text: string): string => [...Buffer.from(text)].map((byte) => /[A-Za-z0-9._~-]/.test(String.fromCharCode(byte)) ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`).join('')

const oddSegments = fc.oneof(
  fc.constantFrom('..', '.', '%2e%2e', '%2F', '%00', '%ff', '%', '%zz', '%E2%80%AE', ';', '~', '*', '%F0%9F%92%A9', '%ED%A0%80', 'a%20b', '-1', '1e400', '9007199254740993', '0x10', 'null', '__proto__', 'constructor'),
  fc.integer({ min: 1, max: 6_000 }).map((length) => 'a'.repeat(length)),
  fc.string({ unit: 'binary', maxLength: 12 }).map(percent)
)
const oddValues = fc.oneof(
  fc.constantFrom('', '1', '0', '-1', '-0', '1e400', '1e-400', 'NaN', 'Infinity', '9007199254740993', '99999999999999999999', '1.5', 'true', 'null', 'a,b', ',,,', '%', '%zz', '%00', '%ED%A0%80', '[]', '{}'),
  fc.integer({ min: 1, max: 5_000 }).map((count) => 'a,'.repeat(count)),
  fc.string({ unit: 'binary', maxLength: 12 }).map(percent)
)
const CONTENT_TYPES = [undefined, 'application/json', 'application/json', 'application/json; charset=utf-8', 'application/json; charset=utf-16', 'application/json;charset=latin1', 'APPLICATION/JSON', 'application/json; foo', 'text/plain', 'text/plain; charset=utf-8', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/octet-stream', 'application/vnd.api+json', '*/*', '', 'json', 'application/json, text/plain']
const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS', 'PROPFIND']

type BodySpec = { none: true } | { json: JsonSpec } | { text: string }

interface RestRequest {
  route: number
  method: string | undefined
  params: string[]
  query: Array<[string, string]>
  body: BodySpec
  contentType: string | undefined
  auth: 'user' | 'stranger' | 'none' | 'garbage'
}

function restRequestArb (routes: Route[], real: string[]): fc.Arbitrary<RestRequest> {
  const value = fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...real) }, { weight: 2, arbitrary: oddSegments })
  return fc.nat({ max: routes.length - 1 }).chain((index) => {
    const route = routes[index]!
    const keys = fc.oneof(fc.constantFrom(...route.query, ...route.body, 'limit', 'since', '__proto__'), keyArb)
    // A body object with the route's own fields (real values or anything) and others; or any JSON; or text.
    const realJson = fc.constantFrom(...real).map((text): JsonSpec => ({ lit: JSON.stringify(text) }))
    const fields = fc.array(fc.tuple(keys, fc.oneof(realJson, jsonSpec)), { maxLength: 5 })
    // The route's own fields only, each maybe there, with values that may well pass (a fresh id, a real user, a small number).
    const fieldValue = fc.oneof(
      { weight: 3, arbitrary: realJson },
      { weight: 2, arbitrary: fc.stringMatching(/^[a-z0-9]{1,12}$/).map((id): JsonSpec => ({ lit: JSON.stringify(`f${id}`) })) },
      { weight: 1, arbitrary: fc.constantFrom('1', '0', '2', 'true', 'false', 'null', '[]', '{}', '"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="', '["' + real[0] + '"]').map((lit): JsonSpec => ({ lit })) },
      { weight: 1, arbitrary: jsonSpec }
    )
    const plausible = fc.tuple(...route.body.map((key) => fc.option(fieldValue, { nil: undefined, freq: 4 }).map((value) => [key, value] as const)))
      .map((members) => members.flatMap(([key, value]): Array<[string, JsonSpec]> => value === undefined ? [] : [[key, value]]))
    return fc.record({
      route: fc.constant(index),
      // Mostly the route's own method.
      method: fc.oneof({ weight: 5, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.constantFrom(...METHODS) }),
      params: fc.array(value, { minLength: 4, maxLength: 4 }),
      query: fc.array(fc.tuple(keys.map(percent), fc.oneof(value, oddValues)), { maxLength: 4 }),
      body: fc.oneof<Array<fc.Arbitrary<BodySpec> | fc.WeightedArbitrary<BodySpec>>>(
        { weight: 1, arbitrary: fc.constant({ none: true }) },
        { weight: 3, arbitrary: fields.map((obj) => ({ json: { obj } })) },
        { weight: 3, arbitrary: plausible.map((obj) => ({ json: { obj } })) },
        { weight: 2, arbitrary: jsonSpec.map((json) => ({ json })) },
        { weight: 1, arbitrary: fc.constantFrom('', ' ', '{', 'null', '{"a":1}x', '\ufeff{}', 'a=1&b=2').map((text) => ({ text })) }
      ),
      contentType: fc.oneof({ weight: 3, arbitrary: fc.constant('application/json') }, { weight: 2, arbitrary: fc.constantFrom(...CONTENT_TYPES) }),
      auth: fc.oneof({ weight: 8, arbitrary: fc.constant<RestRequest['auth']>('user') }, { weight: 1, arbitrary: fc.constantFrom<RestRequest['auth']>('stranger', 'none', 'garbage') })
    })
  })
}

function send (agent: Agent, port: number, method: string, path: string, headers: Record<string, string>, body: Buffer | undefined): Promise<{ status: number, contentType: string, text: string }> {
  return new Promise((resolve, reject) => {
    const request = httpRequest({ agent, host: '127.0.0.1', port, method, path, headers: { ...headers, ...(body === undefined ? {} : { 'content-length': String(body.length) }) } }, (response) => {
      const chunks: Buffer[] = []
      response.on('data', (chunk: Buffer) => chunks.push(chunk))
      response.on('end', () => resolve({ status: response.statusCode!, contentType: String(response.headers['content-type'] ?? ''), text: Buffer.concat(chunks).toString() }))
      response.on('error', reject)
    })
    request.on('error', reject)
    request.setTimeout(10_000, () => request.destroy(new Error('no answer in 10 s')))
    request.end(body)
  })
}

async function fuzzRest (t: Test, mode: Mode, world: World, budget: Budget): Promise<void> {
  const routes = await routesOf(world.server)
  t.ok(routes.length >= 30, `the OpenAPI document lists ${routes.length} /v1 operations to fuzz`)
  const [user, peer] = [uniqueUser('rest'), uniqueUser('restpeer')]
  const api = apiFor(world.server.httpUrl, user)
  const group = (await api.post('/v1/groups', { name: 'rest fuzz', members: [peer] })).body.group.id as string
  await api.post('/v1/messages', { to: peer, id: 'rest-1', body: 'hi' })
  const real = [peer, user, group, 'rest-1', '1', '2', 'ios', 'android', 'member', 'admin', 'owner']
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())
  await fuzz(t, mode, 'rest', restRequestArb(routes, real), async (request) => {
    const route = routes[request.route]!
    const method = request.method ?? route.method
    let index = 0
    const path = route.path.replace(/\{[^}]+\}/g, () => request.params[index++] ?? 'x') +
      (request.query.length === 0 ? '' : '?' + request.query.map(([key, value]) => `${key}=${value}`).join('&'))
    // Logging out would end the fuzzing user's token: a stranger (a fresh user) does it.
    const caller = request.auth === 'stranger' || route.path.startsWith('/v1/sessions/logout') ? uniqueUser('stranger') : user
    const headers: Record<string, string> = {}
    if (request.auth === 'garbage') headers.authorization = 'Bearer not.a.token'
    else if (request.auth !== 'none') headers.authorization = `Bearer ${token(caller)}`
    if (request.contentType !== undefined) headers['content-type'] = request.contentType
    const body = 'none' in request.body ? undefined : 'json' in request.body ? renderJsonSpec(request.body.json) : Buffer.from(request.body.text)
    const mark = world.server.output().length
    // A request line and headers over Node's 16 KiB get 431 headers_too_large; to HEAD, that answer's body is
    // (rightly) more than the client's parser takes, so there the request failing is all one can check.
    const headerBytes = method.length + path.length + Object.entries(headers).reduce((sum, [name, value]) => sum + name.length + value.length + 4, 64)
    const response = await send(agent, world.server.httpPort, method, path, headers, body).catch((error: Error) => {
      if (method === 'HEAD' && headerBytes > 16_000) return undefined
      throw new Error(`${method} ${path.slice(0, 120)}: ${error.message}`)
    })
    count(String(response?.status ?? 'no answer to HEAD'))
    if (process.env.FUZZ_DEBUG) process.stderr.write(`REST ${response?.status} ${method} ${route.method} ${path.slice(0, 100)} ${response?.text.slice(0, 100)}\n`)
    if (response === undefined) return
    const what = `${method} ${path.slice(0, 120)} (${body?.length ?? 0}-byte body) answered ${response.status} ${response.text.slice(0, 200)}`
    // The documented 5xx that are not failures: Redis mode without DATABASE_URL has no search index, without S3 no attachment storage.
    // (A HEAD answer has no body to say which.)
    const says = (code: string): boolean => method === 'HEAD' || response.text.includes(`"error":"${code}"`)
    const notConfigured = response.status === 501 && ((route.path === '/v1/search' && says('search_not_configured')) ||
      (/^\/v1\/(attachments|uploads)/.test(route.path) && says('attachments_not_configured')))
    if (response.status >= 500 && !notConfigured) throw new Error(`${what}${await serverErrors(world.server, mark)}`)
    if (method === 'HEAD' || response.status === 204 || response.status === 304) return
    let answer: unknown
    try { answer = JSON.parse(response.text) } catch { throw new Error(`not JSON: ${what}`) }
    if (!/^application\/json/.test(response.contentType)) throw new Error(`content-type ${response.contentType}: ${what}`)
    if (response.status >= 400 && !/^[a-z][a-z_]*$/.test(String((answer as { error?: unknown })?.error))) throw new Error(`an error without a machine-readable {error}: ${what}`)
  }, budget)
}

// ---- what the fuzzing found, kept as fixed cases ----

async function foundBefore (t: Test, world: World): Promise<void> {
  const authorization = `Bearer ${token(uniqueUser('found'))}`
  const get = async (path: string): Promise<{ status: number, body: any }> => {
    const response = await fetch(world.server.httpUrl + path, { headers: { authorization } })
    return { status: response.status, body: await response.json() }
  }
  // Fastify's default maxParamLength (100) answered 414 for valid ids of 101-128 characters.
  t.equal((await get(`/v1/presence/${'a'.repeat(128)}`)).status, 200, 'a 128-character user id in a path is a user id')
  t.match(await get(`/v1/presence/${'a'.repeat(129)}`), { status: 400, body: { error: 'invalid_request', field: 'params' } }, 'a longer path parameter: 400 invalid_request')
  // Router errors came in Fastify's shape: {"error":"Bad Request","code":"FST_ERR_BAD_URL"}.
  t.match(await get('/v1/groups/%E2%80'), { status: 400, body: { error: 'invalid_request', field: 'params' } }, 'a malformed percent-encoding: 400 invalid_request')
  // Node's parser refuses more than 16 KiB of request line and headers: the answer was {"error":"Request Header Fields Too Large"}, or a reset.
  const huge = await new Promise<{ status: number, body: string }>((resolve, reject) => {
    const request = httpRequest({ host: '127.0.0.1', port: world.server.httpPort, path: `/v1/presence/${'a'.repeat(70_000)}`, headers: { authorization } }, (response) => {
      let body = ''
      response.on('data', (chunk: Buffer) => { body += chunk.toString() })
      response.on('end', () => resolve({ status: response.statusCode!, body }))
    })
    request.on('error', reject)
    request.end()
  })
  t.match({ status: huge.status, body: JSON.parse(huge.body) }, { status: 431, body: { error: 'headers_too_large' } }, 'a 70 KB URL: 431 headers_too_large, which the client reads')
}

// ---- both modes ----

for (const mode of modesUnderTest()) {
  t.test(`${mode}: fuzzing MQTT and REST input`, async (t) => {
    const server = await startServerProcess({
      mode,
      env: { MAX_PAYLOAD_BYTES: String(MAX_PAYLOAD_BYTES), CONNECT_RATE: '0', PUBLISH_RATE: '0', REST_RATE_PER_MINUTE: '0', WORKERS: '1' }
    })
    t.teardown(() => server.stop())
    const world = await setUp(server)
    t.teardown(async () => { await world.connection.end(); await world.alice.end(true); await world.bob.end(true) })
    const flows = async (after: string): Promise<void> => {
      t.equal(await normalTrafficFlows(world), undefined, `after ${after}: normal messages still flow, over MQTT and REST`)
    }

    await t.test('what the fuzzing found, as fixed cases', (t) => foundBefore(t, world))
    await fuzzPayloads(t, mode, world, { runs: 500, seconds: 10 })
    await flows('the payloads')
    await fuzzParity(t, mode, world, { runs: 200, seconds: 4 })
    await flows('the MQTT and REST sends')
    await fuzzTopics(t, mode, world, { runs: 200, seconds: 4 })
    await flows('the topics')
    await fuzzRawPackets(t, mode, world, { runs: 150, seconds: 6 })
    await flows('the raw packets')
    await fuzzRest(t, mode, world, { runs: 500, seconds: 7 })
    await flows('the REST requests')
    t.equal(server.child.exitCode, null, 'the server process is still running')
  })
}
