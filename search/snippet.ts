// The part of a hit's text shown in search results, with the query's matches
// marked. Matching runs on normalised text (search/scan.ts) with the same tokens
// as the index, but the marks are offsets into the original characters: each
// grapheme is normalised on its own, and every UTF-16 unit of its normalised
// form remembers the grapheme it came from (NFKC can change lengths: ﬁ → fi,
// ｶﾞ → ガ, ㈱ → (株)).
import { cut, graphemes, normalize, scan } from './scan.ts'
import { MAX_TEXT_CHARS, pieceTokens } from './tokenize.ts'

export interface Snippet {
  text: string
  /** [start, end) in UTF-16 units of `text`, in order, not overlapping. */
  marks: Array<[start: number, end: number]>
}

const ELLIPSIS = '…'

/**
 * A window of at most `maxChars` UTF-16 units of `text` (plus '…' at a cut end)
 * around the first match of `tokens` (a query's tokens), about a third of the
 * window before it; cut only between graphemes. No match: the text's start.
 */
export function snippet (text: string, tokens: string[], maxChars = 120): Snippet {
  // Only the indexed part can hold a match; a window after it may reach a little further.
  const region = cut(text, MAX_TEXT_CHARS + maxChars)
  let normal = ''
  const from: number[] = [] // for each unit of `normal`: the start of its grapheme in `text`
  const to: number[] = [] // … and its end
  const bounds: number[] = [] // grapheme starts in `text`
  for (const g of graphemes.segment(region)) {
    bounds.push(g.index)
    const n = normalize(g.segment)
    normal += n
    for (let i = 0; i < n.length; i++) { from.push(g.index); to.push(g.index + g.segment.length) }
  }
  bounds.push(region.length)

  const wanted = new Set(tokens)
  const found: Array<[number, number]> = []
  for (const piece of scan(normal)) {
    pieceTokens(piece, false, (token, start, end) => {
      if (wanted.has(token)) found.push([from[start]!, to[end - 1]!])
    })
  }
  const ranges = merge(found)

  let start = 0
  let end = text.length
  if (text.length > maxChars) {
    const first = ranges[0]?.[0] ?? 0
    start = snapDown(text, bounds, Math.max(0, Math.min(first - Math.floor(maxChars / 3), text.length - maxChars)))
    end = snapDown(text, bounds, Math.min(text.length, start + maxChars))
    if (end <= start) end = Math.min(text.length, start + maxChars) // one grapheme longer than the window
  }
  const head = start > 0 ? ELLIPSIS : ''
  const tail = end < text.length ? ELLIPSIS : ''
  const shift = head.length - start
  const marks: Array<[number, number]> = []
  for (const [s, e] of ranges) {
    if (e <= start || s >= end) continue
    marks.push([Math.max(s, start) + shift, Math.min(e, end) + shift])
  }
  return { text: head + text.slice(start, end) + tail, marks }
}

/** Sorted, overlapping or touching ranges joined. */
function merge (ranges: Array<[number, number]>): Array<[number, number]> {
  ranges.sort((a, b) => a[0] - b[0] || a[1] - b[1])
  const out: Array<[number, number]> = []
  for (const [s, e] of ranges) {
    const last = out[out.length - 1]
    if (last !== undefined && s <= last[1]) last[1] = Math.max(last[1], e)
    else out.push([s, e])
  }
  return out
}

/** The last grapheme boundary at or before `at` (past the segmented region: `at` itself, off a surrogate pair's middle). */
function snapDown (text: string, bounds: number[], at: number): number {
  const lastBound = bounds[bounds.length - 1]!
  if (at >= lastBound) {
    const code = text.charCodeAt(at)
    return code >= 0xdc00 && code <= 0xdfff ? at - 1 : at
  }
  let lo = 0
  let hi = bounds.length - 1
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1
    if (bounds[mid]! <= at) lo = mid
    else hi = mid - 1
  }
  return bounds[lo]!
}
