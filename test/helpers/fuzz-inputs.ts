// fast-check arbitraries for hostile input (test/fuzz.test.ts). Each one
// generates a small *description* (a depth, a width, a few bytes) that is
// rendered to bytes only when sent: a failure's counterexample prints in a
// line, and shrinking works on the description (a 10,000-deep body shrinks
// to the smallest depth that still fails, not element by element).
import fc from 'fast-check'
import mqttPacket from 'mqtt-packet'

/** A JSON value (or something that is almost one), described. */
export type JsonSpec =
  /** JSON text as is: odd numbers, escapes, keywords, and a few things that are not JSON. */
  | { lit: string }
  /** A string: `base` repeated `times` times, written as JSON.stringify does or with every non-ASCII unit `\u`-escaped. */
  | { str: string, times: number, escape: 'json' | 'all' }
  /** A string holding raw bytes (mostly not UTF-8: overlongs, CESU surrogates, stray continuations). */
  | { bytes: number[] }
  /** Nested `depth` levels deep: `[[[...]]]`, `{"a":{"a":...}}`, or both in turn. */
  | { deep: number, of: 'array' | 'object' | 'mixed', leaf: string }
  /** One object (or array) with `width` members; `same` repeats one key, `proto` alternates `__proto__` and `constructor`. */
  | { wide: number, keys: 'distinct' | 'same' | 'proto' | 'array' }
  | { arr: JsonSpec[] }
  | { obj: Array<[string, JsonSpec]> }

/** A whole publish payload, described. */
export type PayloadSpec =
  /** An object: its members in this order (a later duplicate key wins, as in JSON.parse). */
  | { members: Array<[string, JsonSpec]> }
  /** A JSON value that is not an object, at the top. */
  | { top: JsonSpec }
  /** Bytes that are (almost surely) not JSON. */
  | { raw: number[] }
  /** Odd texts: truncated, trailing garbage, a BOM, two objects. */
  | { text: string }

type Part = string | Buffer

const hex4 = (unit: number): string => '\\u' + unit.toString(16).padStart(4, '0')

function renderString (base: string, times: number, escape: 'json' | 'all'): string {
  const value = base.repeat(times)
  if (escape === 'json') return JSON.stringify(value)
  let out = '"'
  for (let i = 0; i < value.length; i++) {
    const unit = value.charCodeAt(i)
    out += unit < 0x20 || unit > 0x7e || unit === 0x22 || unit === 0x5c ? hex4(unit) : value[i]
  }
  return out + '"'
}

function renderDeep (depth: number, of: 'array' | 'object' | 'mixed', leaf: string): string {
  const opens: string[] = []
  const closes: string[] = []
  for (let level = 0; level < depth; level++) {
    const array = of === 'array' || (of === 'mixed' && level % 2 === 0)
    opens.push(array ? '[' : '{"a":')
    closes.push(array ? ']' : '}')
  }
  return opens.join('') + leaf + closes.reverse().join('')
}

function renderWide (width: number, keys: 'distinct' | 'same' | 'proto' | 'array'): string {
  const members: string[] = []
  for (let i = 0; i < width; i++) {
    if (keys === 'array') members.push(String(i))
    else if (keys === 'distinct') members.push(`"k${i}":${i}`)
    else if (keys === 'same') members.push(`"a":${i}`)
    else members.push(i % 2 === 0 ? `"__proto__":{"polluted":${i}}` : `"constructor":{"prototype":{"polluted":${i}}}`)
  }
  return keys === 'array' ? `[${members.join(',')}]` : `{${members.join(',')}}`
}

function renderJson (spec: JsonSpec, out: Part[]): void {
  if ('lit' in spec) out.push(spec.lit)
  else if ('str' in spec) out.push(renderString(spec.str, spec.times, spec.escape))
  else if ('bytes' in spec) out.push('"', Buffer.from(spec.bytes), '"')
  else if ('deep' in spec) out.push(renderDeep(spec.deep, spec.of, spec.leaf))
  else if ('wide' in spec) out.push(renderWide(spec.wide, spec.keys))
  else if ('arr' in spec) {
    out.push('[')
    spec.arr.forEach((item, i) => { if (i > 0) out.push(','); renderJson(item, out) })
    out.push(']')
  } else {
    out.push('{')
    spec.obj.forEach(([key, value], i) => { out.push(i > 0 ? ',' : '', JSON.stringify(key), ':'); renderJson(value, out) })
    out.push('}')
  }
}

const toBuffer = (parts: Part[]): Buffer => Buffer.concat(parts.map((part) => typeof part === 'string' ? Buffer.from(part, 'utf8') : part))

export function renderJsonSpec (spec: JsonSpec): Buffer {
  const parts: Part[] = []
  renderJson(spec, parts)
  return toBuffer(parts)
}

export function renderPayload (spec: PayloadSpec): Buffer {
  if ('raw' in spec) return Buffer.from(spec.raw)
  if ('text' in spec) return Buffer.from(spec.text, 'utf8')
  if ('top' in spec) return renderJsonSpec(spec.top)
  return renderJsonSpec({ obj: spec.members })
}

// ---- JSON values ----

/** Numbers and keywords JSON.parse reads oddly (or refuses): overflow, underflow, negative zero, beyond 2^53. */
const ODD_NUMBERS = ['1e400', '-1e400', '1e-400', '-0', '-0.0', '0e0', '1E+308', '2e308', '9007199254740993', '123456789012345678901234567890.5', '1e999999999', '5e-324', '-9223372036854775809']
const NOT_JSON = ['NaN', 'Infinity', '+1', '01', '1.', '.5', '0x10', 'undefined', "'a'", '"\\x41"', '"\\u12"', '"a\tb"', '"\\ud800"', '"\\udc00\\ud800"', '"\\u0000"', 'tru', 'nul', '[1,]', '{"a"}', '{"a":1,}', '//', '"\u2028"']
const LEAVES = ['1', '"x"', '[]', '{}', 'null', 'true', '1e400', '-0', '"\\ud800"', '"__proto__"']

/** Bytes that are not UTF-8, or are its edge cases. */
const ODD_BYTES: number[][] = [
  [0xff], [0xfe, 0xff], [0x80], [0xc0, 0x80], [0xc1, 0xbf], [0xe0, 0x80, 0x80], [0xed, 0xa0, 0x80], [0xed, 0xbf, 0xbf],
  [0xf4, 0x90, 0x80, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xe2, 0x82], [0xf0, 0x9f, 0x98], [0x00], [0x1b, 0x5b, 0x32, 0x4a], [0xef, 0xbb, 0xbf]
]

const LONE_SURROGATES = ['\ud800', '\udbff', '\udc00', '\udfff', 'a\ud83d', '\ude00b', '\ud800\ud800']

/** A short string of anything: printable graphemes, any code point, lone surrogates, controls. */
const oddText = (maxLength: number): fc.Arbitrary<string> => fc.oneof(
  fc.string({ maxLength }),
  fc.string({ unit: 'grapheme', maxLength }),
  fc.string({ unit: 'binary', maxLength }),
  fc.array(fc.constantFrom(...LONE_SURROGATES, 'a', '\u0000', '\u202e', '\ufeff', '😀', '/', '+', '#', ':', '"', '\\'), { maxLength }).map((units) => units.join(''))
)

const stringSpec: fc.Arbitrary<JsonSpec> = fc.record({
  str: oddText(4).filter((base) => base.length > 0),
  // Mostly short; sometimes up to ~100 KB, past MAX_PAYLOAD_BYTES and the packet limit.
  times: fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 1, max: 64 }) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 25_000 }) }),
  escape: fc.constantFrom<'json' | 'all'>('json', 'all')
})

const bytesSpec: fc.Arbitrary<JsonSpec> = fc.oneof(
  fc.constantFrom(...ODD_BYTES),
  fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: 16 })
).map((bytes) => ({ bytes }))

const deepSpec: fc.Arbitrary<JsonSpec> = fc.record({
  // Around the depth limit (64, counting the payload object) and anywhere up to 10,000.
  deep: fc.oneof({ weight: 2, arbitrary: fc.integer({ min: 55, max: 70 }) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 10_000 }) }),
  of: fc.constantFrom<'array' | 'object' | 'mixed'>('array', 'object', 'mixed'),
  leaf: fc.constantFrom(...LEAVES)
})

const wideSpec: fc.Arbitrary<JsonSpec> = fc.record({
  wide: fc.oneof({ weight: 3, arbitrary: fc.integer({ min: 1, max: 200 }) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 5_000 }) }),
  keys: fc.constantFrom<'distinct' | 'same' | 'proto' | 'array'>('distinct', 'same', 'proto', 'array')
})

/** Keys that mean something to JavaScript or to the server. */
const SPECIAL_KEYS = ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'valueOf', 'toJSON', 'then', 'id', 'body', 'type', 'active', 'from', 'to', 'seq', 'gseq', 'ts', 'group', 'recalled', '', ' id', 'ID', 'id\u0000']
export const keyArb: fc.Arbitrary<string> = fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...SPECIAL_KEYS) }, { weight: 1, arbitrary: oddText(8) })

export const jsonSpec: fc.Arbitrary<JsonSpec> = fc.letrec<{ value: JsonSpec }>((tie) => ({
  value: fc.oneof(
    { maxDepth: 3, depthIdentifier: 'json' },
    { weight: 3, arbitrary: fc.json({ maxDepth: 2 }).map((lit) => ({ lit })) },
    { weight: 2, arbitrary: fc.constantFrom(...ODD_NUMBERS, ...LEAVES).map((lit) => ({ lit })) },
    { weight: 1, arbitrary: fc.constantFrom(...NOT_JSON).map((lit) => ({ lit })) },
    { weight: 2, arbitrary: stringSpec },
    { weight: 1, arbitrary: bytesSpec },
    { weight: 2, arbitrary: deepSpec },
    { weight: 1, arbitrary: wideSpec },
    { weight: 1, arbitrary: fc.array(tie('value'), { maxLength: 4, depthIdentifier: 'json' }).map((arr) => ({ arr })) },
    { weight: 1, arbitrary: fc.array(fc.tuple(keyArb, tie('value')), { maxLength: 4, depthIdentifier: 'json' }).map((obj) => ({ obj })) }
  )
})).value

// ---- message payloads ----

const ID_CHARS = [...'ABCXYZabcxyz0189._@-']
/** An id of any shape: mostly valid (1–128 of the id alphabet), or just outside the rule, or not a string at all. */
export const idSpec: fc.Arbitrary<JsonSpec> = fc.oneof(
  { weight: 12, arbitrary: fc.array(fc.constantFrom(...ID_CHARS), { minLength: 1, maxLength: 128 }).map((chars) => ({ lit: JSON.stringify(chars.join('')) })) },
  { weight: 1, arbitrary: fc.integer({ min: 129, max: 300 }).map((length) => ({ lit: JSON.stringify('a'.repeat(length)) })) },
  { weight: 1, arbitrary: fc.constantFrom('""', '" "', '"a/b"', '"a+b"', '"#"', '"a:b"', '"ü"', '"😀"', '"a\\n"', '"a\\u0000"', '"\\ud800"', '"a\\udfff"', '"..\\/.."', '"1e400"', '"__proto__"').map((lit) => ({ lit })) },
  { weight: 1, arbitrary: fc.constantFrom('1', '0', '-0', '1e400', 'null', 'true', 'false', '[]', '{}', '["a"]', '{"a":1}', '"a"').map((lit) => ({ lit })) },
  { weight: 1, arbitrary: oddText(10).map((text) => ({ str: text, times: 1, escape: 'json' as const })) },
  { weight: 1, arbitrary: fc.oneof(deepSpec, bytesSpec, stringSpec) }
)

export const typeSpec: fc.Arbitrary<JsonSpec> = fc.constantFrom('"message"', '"typing"', '"Message"', '"TYPING"', '""', '"receipt"', '"recall"', '"error"', '"typing "', '"message\\u0000"', '"__proto__"', 'null', '1', '[]', '{}', '["typing"]').map((lit) => ({ lit }))
const activeSpec: fc.Arbitrary<JsonSpec> = fc.constantFrom('true', 'false', 'null', '"true"', '0', '1', '[]', '{}', '"false"').map((lit) => ({ lit }))

/** A message object: `id`, `type`, `active`, `body`, each usually present, then extra members (which may repeat a key). */
const messageSpec: fc.Arbitrary<PayloadSpec> = fc.record({
  id: fc.option(idSpec, { nil: undefined, freq: 12 }),
  // Absent in most: an odd `type` refuses the message, so present it would hide everything else.
  type: fc.oneof({ weight: 5, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: typeSpec }),
  active: fc.option(activeSpec, { nil: undefined, freq: 2 }),
  body: fc.option(jsonSpec, { nil: undefined, freq: 12 }),
  extra: fc.oneof({ weight: 2, arbitrary: fc.constant([]) }, { weight: 1, arbitrary: fc.array(fc.tuple(keyArb, jsonSpec), { maxLength: 3 }) })
}).map(({ id, type, active, body, extra }) => {
  const members: Array<[string, JsonSpec]> = []
  if (id !== undefined) members.push(['id', id])
  // Typing is rare unless `type` is absent: keep most messages messages.
  if (type !== undefined) members.push(['type', type])
  if (active !== undefined && type !== undefined) members.push(['active', active])
  if (body !== undefined) members.push(['body', body])
  return { members: [...members, ...extra] }
})

const ODD_TEXTS = ['', ' ', '{', '}', '{"id":"a","body":1', '{"id":"a","body":1}x', '\ufeff{"id":"a","body":1}', '{"id":"a","body":1}{"id":"b","body":2}', '\u0000', '{"id":"a","body":1}\u0000', '{"id":"a" "body":1}', '{"id":"a","body":1,}', '{id:"a",body:1}', '{"id":"a","body":\'x\'}']

export const payloadSpec: fc.Arbitrary<PayloadSpec> = fc.oneof(
  { weight: 12, arbitrary: messageSpec },
  { weight: 1, arbitrary: jsonSpec.map((top) => ({ top })) },
  { weight: 1, arbitrary: fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 64 }).map((raw) => ({ raw })) },
  { weight: 1, arbitrary: fc.constantFrom(...ODD_TEXTS).map((text) => ({ text })) }
)

// ---- topics ----

/** A topic level: ids near the 128 limit, unicode, wildcards, NUL, empty, dots. */
const levelArb: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom('', '+', '#', '..', '.', '$SYS', 'inbox', 'user', 'group', 'device', 'errors', 'presence', '\u0000', '😀', '\u202e', '\ufeff', 'a b', '%2F', '*'),
  fc.integer({ min: 1, max: 200 }).map((length) => 'a'.repeat(length)),
  oddText(6)
)

/** A topic spec: the peer's inbox/group with a twist, or levels of anything (up to ~150, past the broker's 100-level limit). */
export type TopicSpec =
  | { inboxOf: string }
  | { groupNamed: string }
  | { levels: string[] }
  | { named: 'own-inbox' | 'peer-inbox' | 'group' | 'own-presence' | 'peer-presence' | 'own-errors' | 'sink' | 'sys' }
  | { repeat: string, times: number }

export const topicSpec: fc.Arbitrary<TopicSpec> = fc.oneof(
  { weight: 2, arbitrary: fc.constantFrom<TopicSpec>(...(['own-inbox', 'peer-inbox', 'group', 'own-presence', 'peer-presence', 'own-errors', 'sink', 'sys'] as const).map((named) => ({ named }))) },
  { weight: 3, arbitrary: fc.tuple(levelArb, fc.array(levelArb, { maxLength: 2 })).map(([first, rest]) => ({ inboxOf: [first, ...rest].join('') })) },
  { weight: 2, arbitrary: levelArb.map((groupNamed) => ({ groupNamed })) },
  { weight: 3, arbitrary: fc.array(levelArb, { minLength: 0, maxLength: 150 }).map((levels) => ({ levels })) },
  { weight: 1, arbitrary: fc.record({ repeat: fc.constantFrom('a/', '/', 'user/', '😀', 'a'), times: fc.integer({ min: 1, max: 40_000 }) }) }
)

// ---- raw MQTT packets ----

/** What a raw packet may be addressed to, and what a random string field may hold. */
const fieldString: fc.Arbitrary<string> = fc.oneof(oddText(24), fc.constantFrom('user/x/inbox', 'presence/x', '#', '+/+', '$SYS/#', 'group/g', '$inboxd/sink', ''))
/** Bytes, described: a few of them, or `fill` of one byte (to go past the packet limit), or a valid message. */
export type BytesSpec = number[] | { fill: number } | 'message'
const bytesArb: fc.Arbitrary<BytesSpec> = fc.oneof(
  { weight: 4, arbitrary: fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 48 }) },
  { weight: 1, arbitrary: fc.record({ fill: fc.integer({ min: 0, max: 70_000 }) }) },
  { weight: 2, arbitrary: fc.constant<'message'>('message') }
)
const messageId = fc.integer({ min: 0, max: 65_535 })
const userProperties = fc.option(fc.dictionary(fc.string({ maxLength: 6 }), fc.string({ maxLength: 6 }), { maxKeys: 3 }), { nil: undefined })

/** A packet of any command, with random fields (BytesSpec where mqtt-packet wants a Buffer). */
export type RawPacket = Record<string, unknown> & { cmd: string }

/** `topics`: topics worth hitting often (the peer's inbox, the raw client's own topics). */
export function rawPacketArb (topics: string[]): fc.Arbitrary<RawPacket> {
  const topic = fc.oneof(fieldString, fc.constantFrom(...topics))
  const connect = fc.record({
    cmd: fc.constant('connect'),
    protocolId: fc.constantFrom('MQTT', 'MQIsdp'),
    protocolVersion: fc.constantFrom(3, 4, 5),
    clean: fc.boolean(),
    keepalive: fc.integer({ min: 0, max: 65_535 }),
    clientId: fieldString,
    username: fc.option(fieldString, { nil: undefined }),
    password: fc.option(bytesArb, { nil: undefined }),
    will: fc.option(fc.record({ topic, payload: bytesArb, qos: fc.constantFrom(0, 1, 2), retain: fc.boolean() }), { nil: undefined })
  })
  const publish = fc.record({
    cmd: fc.constant('publish'),
    qos: fc.constantFrom(0, 1, 2),
    dup: fc.boolean(),
    retain: fc.boolean(),
    topic,
    payload: bytesArb,
    messageId,
    properties: fc.option(fc.record({ userProperties, contentType: fc.option(fc.string({ maxLength: 8 }), { nil: undefined }), topicAlias: fc.option(fc.integer({ min: 0, max: 65_535 }), { nil: undefined }) }, { requiredKeys: [] }), { nil: undefined })
  })
  const acks = fc.constantFrom('puback', 'pubrec', 'pubrel', 'pubcomp').chain((cmd) => fc.record({ cmd: fc.constant(cmd), messageId, reasonCode: fc.option(fc.integer({ min: 0, max: 255 }), { nil: undefined }) }))
  const subscribe = fc.record({ cmd: fc.constant('subscribe'), messageId, subscriptions: fc.array(fc.record({ topic, qos: fc.constantFrom(0, 1, 2), nl: fc.boolean(), rap: fc.boolean(), rh: fc.integer({ min: 0, max: 2 }) }), { maxLength: 6 }) })
  const unsubscribe = fc.record({ cmd: fc.constant('unsubscribe'), messageId, unsubscriptions: fc.array(topic, { maxLength: 6 }) })
  // What only a server sends, and MQTT 5's AUTH: a protocol violation from a client.
  const serverOnly = fc.oneof(
    fc.record({ cmd: fc.constant('connack'), returnCode: fc.integer({ min: 0, max: 255 }), sessionPresent: fc.boolean() }),
    fc.record({ cmd: fc.constant('suback'), messageId, granted: fc.array(fc.constantFrom(0, 1, 2, 128), { maxLength: 4 }) }),
    fc.record({ cmd: fc.constant('unsuback'), messageId }),
    fc.constant({ cmd: 'pingresp' }),
    fc.record({ cmd: fc.constant('auth'), reasonCode: fc.integer({ min: 0, max: 255 }), properties: fc.record({ authenticationMethod: fc.string({ maxLength: 8 }) }) })
  )
  // Weighted towards what a client may send, so sessions get past their first packet.
  return fc.oneof(
    { weight: 6, arbitrary: publish },
    { weight: 3, arbitrary: subscribe },
    { weight: 2, arbitrary: unsubscribe },
    { weight: 3, arbitrary: acks },
    { weight: 1, arbitrary: fc.constant({ cmd: 'pingreq' }) },
    { weight: 1, arbitrary: fc.constant({ cmd: 'disconnect' }) },
    { weight: 1, arbitrary: connect },
    { weight: 1, arbitrary: serverOnly }
  ) as fc.Arbitrary<RawPacket>
}

function renderBytes (spec: BytesSpec): Buffer {
  if (spec === 'message') return Buffer.from(JSON.stringify({ id: `raw-${Math.random().toString(36).slice(2)}`, body: 'raw' }))
  return Array.isArray(spec) ? Buffer.from(spec) : Buffer.alloc(spec.fill, 0x61)
}

/** The packet's bytes; mqtt-packet refuses some field combinations, and then nothing is sent for it. */
export function generatePacket (packet: RawPacket, protocolVersion: number): Buffer {
  const fields: Record<string, unknown> = { ...packet }
  if (fields.payload !== undefined) fields.payload = renderBytes(fields.payload as BytesSpec)
  if (fields.password !== undefined) fields.password = renderBytes(fields.password as BytesSpec)
  if (fields.will !== undefined) {
    const will = fields.will as Record<string, unknown>
    fields.will = { ...will, payload: renderBytes(will.payload as BytesSpec) }
  }
  try {
    return mqttPacket.generate(fields as never, { protocolVersion })
  } catch {
    return Buffer.alloc(0)
  }
}
