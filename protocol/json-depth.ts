// How deeply JSON may nest, checked on the raw bytes before anything parses
// or re-serialises it. V8's JSON.parse copes with any depth, but much that
// follows does not: JSON.stringify overflows its stack near 5,000 levels,
// Redis's Lua cjson refuses 1,000, and the recipients' own parsers give up
// far sooner (Swift's JSONSerialization at 512, Python's json near 1,000).
// A message one of them cannot read is a poison message for someone, so the
// server refuses it up front, with an answer, instead of failing later.

/** The deepest nesting any payload or REST body may have; the payload object itself is level 1. */
export const MAX_JSON_DEPTH = 64

const QUOTE = 0x22
const BACKSLASH = 0x5c
const OPEN_ARRAY = 0x5b
const OPEN_OBJECT = 0x7b
const CLOSE_ARRAY = 0x5d
const CLOSE_OBJECT = 0x7d

/**
 * True if `json` nests arrays or objects deeper than `maxDepth`. One pass,
 * no allocation, no recursion; brackets inside strings do not count. UTF-8
 * continuation bytes and UTF-16 surrogates are never ASCII, so scanning
 * bytes or code units is exact. On text
 * that is not JSON the answer is meaningless but harmless: the parser that
 * runs next refuses it.
 */
export function nestsDeeperThan (json: Uint8Array | string, maxDepth = MAX_JSON_DEPTH): boolean {
  const unitAt = typeof json === 'string' ? (i: number) => json.charCodeAt(i) : (i: number) => json[i]!
  let depth = 0
  let inString = false
  for (let i = 0; i < json.length; i++) {
    const byte = unitAt(i)
    if (inString) {
      if (byte === BACKSLASH) i++
      else if (byte === QUOTE) inString = false
    } else if (byte === QUOTE) {
      inString = true
    } else if (byte === OPEN_ARRAY || byte === OPEN_OBJECT) {
      if (++depth > maxDepth) return true
    } else if (byte === CLOSE_ARRAY || byte === CLOSE_OBJECT) {
      depth--
    }
  }
  return false
}
