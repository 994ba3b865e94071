// The tokens of message search (issue #21). A message matches a query when its
// tokens contain every token of the query (AND), which both stores check
// directly: PostgreSQL with a GIN index over a text[] column (`tokens @> $1`),
// LevelDB by intersecting postings. So the one rule here is: whatever a user
// can see in a message and type as a query must give query tokens that are all
// among the message's tokens.
//
// - Chinese, Japanese, Korean (no spaces between words): every character and
//   every pair of adjacent characters of a run is a token, so any substring of
//   a run is found: a 1-character query by that character, a longer one by its
//   pairs (上海 in 我家在上海东边。, 鈴虫 in バッタと鈴虫, which a whole-word
//   index misses: Mattermost #22345, Synapse #901). Pairs can meet a 3+
//   character query in two places of one message (上海 … 海东 for 上海东): the
//   search service drops such hits (search/phrases.ts). Jieba's words of 3+
//   characters (会议室, 长江大桥) are added to a message's tokens, but a query
//   never asks for them, since the same characters in another sentence may be
//   cut differently: they are for ranking, never for matching.
// - Other scripts: runs of letters and digits, lowercased, with a small English
//   stemmer (search/stem.ts); an id, version, address or number joined by
//   - _ . @ / : etc. (order-8842, v2.3.1, alice@example.com) gives its parts and
//   each adjacent pair of parts with its join (v2.3, 3.1; alice@example), so it
//   is found whole (by its pairs) and by any part, and v2.3.1 does not find
//   v2.3.10. A hyphen joins without a mark (order-8842 → order8842; a query
//   asks for that alone), so wi-fi and wifi, e-mail and email find each other.
// - Emoji: each grapheme (ZWJ sequences, flags, keycaps), without VS16, and a
//   skin-toned one also as its plain base (👍 finds 👍🏽).
//
// Bounds, for the stores' sake: a message is tokenised on its first
// MAX_TEXT_CHARS characters into at most MAX_DOC_TOKENS tokens, taken in text
// order (so what is cut is the end of the message), none longer than
// MAX_TOKEN_CHARS (a GIN entry must stay far below PostgreSQL's ~2.7 kB).
import { cut, normalize, scan, type Piece } from './scan.ts'
import { stem } from './stem.ts'
import { words } from './jieba.ts'

/** A message is tokenised on its first 4,000 UTF-16 units. */
export const MAX_TEXT_CHARS = 4_000
/** At most this many tokens per message: all of a message up to ~700 CJK characters or ~1,500 English words. */
export const MAX_DOC_TOKENS = 2_048
/** A longer letter/digit run is cut to this (the same cut on both sides, so it still matches itself). */
export const MAX_TOKEN_CHARS = 64
/** A query is read up to this many UTF-16 units. */
export const MAX_QUERY_CHARS = 256
/** Longer emoji clusters are not tokens. */
const MAX_EMOJI_CHARS = 32

const SKIN_TONES = /[\u{1F3FB}-\u{1F3FF}]/gu
const HAN = /\p{scx=Han}/u

export type Emit = (token: string, start: number, end: number) => void

/**
 * Switches for measuring the design (bench/search-corpus.ts), not for the
 * stores: a message and its queries must be tokenised with the same options,
 * and the stores use the defaults.
 */
export interface TokenOptions {
  /** The English stemmer on Latin words (default true). */
  stem?: boolean
  /** Jieba's 3+ character words in a message's tokens (default true). */
  jiebaWords?: boolean
}

const same = (word: string): string => word

/**
 * The tokens of one piece, with the span each stands for. `query`: what a query
 * asks for (a CJK run of 2+ characters: its pairs only; an emoji: itself);
 * otherwise what a message holds.
 */
export function pieceTokens (piece: Piece, query: boolean, emit: Emit, options: TokenOptions = {}): void {
  if (piece.kind === 'cjk') {
    const { chars, at } = piece
    const n = chars.length
    for (let i = 0; i < n; i++) {
      const ch = chars[i] as string
      const s = at[i] as number
      if (!query || n === 1) emit(ch, s, s + ch.length)
      const next = chars[i + 1]
      if (next !== undefined) emit(ch + next, s, s + ch.length + next.length)
    }
  } else if (piece.kind === 'word') {
    const { parts, joins } = piece
    const norm = options.stem === false ? same : stem
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i]!
      // A query's part beside a hyphen is asked for as the joined word only, so wi-fi finds wifi.
      if (!query || (joins[i - 1] !== '-' && joins[i] !== '-')) emit(norm(cut(part.text, MAX_TOKEN_CHARS)), part.start, part.end)
      const next = parts[i + 1]
      if (next === undefined) continue
      const a = cut(part.text, MAX_TOKEN_CHARS)
      const b = cut(next.text, MAX_TOKEN_CHARS)
      emit(joins[i] === '-' ? norm(a + b) : a + joins[i]! + b, part.start, next.end)
    }
  } else if (piece.text.length <= MAX_EMOJI_CHARS) {
    const emoji = piece.text.replaceAll('\ufe0f', '')
    emit(emoji, piece.start, piece.end)
    if (!query) {
      const base = emoji.replace(SKIN_TONES, '')
      if (base !== emoji && base !== '') emit(base, piece.start, piece.end)
    }
  }
}

class Full extends Error {}

/** The distinct normalised tokens of a message's text (at most MAX_DOC_TOKENS, from its first MAX_TEXT_CHARS). */
export function documentTokens (text: string, options: TokenOptions = {}): string[] {
  const tokens = new Set<string>()
  const add = (token: string): void => {
    tokens.add(token)
    if (tokens.size >= MAX_DOC_TOKENS) throw new Full()
  }
  try {
    for (const piece of scan(normalize(cut(text, MAX_TEXT_CHARS)))) {
      pieceTokens(piece, false, add, options)
      if (options.jiebaWords !== false && piece.kind === 'cjk' && piece.chars.length >= 3 && HAN.test(piece.chars.join(''))) {
        for (const word of words(piece.chars.join(''))) if ([...word].length >= 3) add(word)
      }
    }
  } catch (err) {
    if (!(err instanceof Full)) throw err
  }
  return [...tokens]
}

/** The tokens a message must all hold to match `query`; [] when the query has nothing searchable. */
export function queryTokens (query: string, options: TokenOptions = {}): string[] {
  const tokens = new Set<string>()
  for (const piece of scan(normalize(cut(query, MAX_QUERY_CHARS)))) pieceTokens(piece, true, (token) => tokens.add(token), options)
  return [...tokens]
}
