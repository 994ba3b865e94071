// The pieces of a normalised text that search cares about, with their places
// (UTF-16 offsets into that text): runs of Chinese/Japanese/Korean characters,
// words of other scripts with what joins them (order-8842, v2.3.1,
// alice@example.com), and emoji. search/tokenize.ts makes tokens of them, and
// search/snippet.ts uses the same places to mark matches.

/** A Han, kana or Hangul letter (scx: also the marks and iteration signs those scripts share), never their punctuation. */
const CJK = String.raw`(?:(?=[\p{L}\p{M}\p{Nl}])[\p{scx=Han}\p{scx=Hiragana}\p{scx=Katakana}\p{scx=Hangul}])`
/** A letter or digit of any other script (not the variation selectors, ZWJ and keycap mark of emoji, which are marks too). */
const WORD_CHAR = String.raw`(?:(?!${CJK}|[\ufe00-\ufe0f\u200d\u20e3])[\p{L}\p{M}\p{N}])`
/** What may join the parts of one id, version, address or number (at most 3 characters: `://`). */
const JOIN = String.raw`[\-_.@/:+#'’,&=?%~]{1,3}`
const EMOJI_CHAR = String.raw`[\p{Extended_Pictographic}\p{Regional_Indicator}]`
/** What may follow inside an emoji cluster: more pictographs (ZWJ sequences, flags), ZWJ, VS16, skin tones, keycap, tags. */
const EMOJI_TAIL = String.raw`[\p{Extended_Pictographic}\p{Regional_Indicator}\p{Emoji_Modifier}\u200d\ufe0f\u20e3\u{E0020}-\u{E007F}]*`

const PIECES = new RegExp(`(${CJK}+)|(${WORD_CHAR}+(?:${JOIN}${WORD_CHAR}+)*)|(${EMOJI_CHAR}${EMOJI_TAIL})`, 'gu')
const PARTS = new RegExp(`${WORD_CHAR}+`, 'gu')
const IS_EMOJI = new RegExp(EMOJI_CHAR, 'u')

export const graphemes = new Intl.Segmenter(undefined, { granularity: 'grapheme' })

/** What a run of text means for search. Offsets are into the normalised text. */
export type Piece =
  /** CJK letters; `at[i]` is where code point `chars[i]` starts. */
  | { kind: 'cjk', chars: string[], at: number[] }
  /** Letters/digits of other scripts, with the exact joins between consecutive parts (`joins[i]` between parts i and i+1). */
  | { kind: 'word', parts: Array<{ text: string, start: number, end: number }>, joins: string[] }
  | { kind: 'emoji', text: string, start: number, end: number }

/** NFKC (full-width Ａ→A, half-width ｶ→カ, ligatures) and lowercase: the one normalisation of documents and queries alike. */
export function normalize (text: string): string {
  return text.normalize('NFKC').toLowerCase()
}

/** Cuts `text` to at most `max` UTF-16 units without splitting a surrogate pair. */
export function cut (text: string, max: number): string {
  if (text.length <= max) return text
  const code = text.charCodeAt(max - 1)
  return text.slice(0, code >= 0xd800 && code <= 0xdbff ? max - 1 : max)
}

/** The pieces of an already normalised text, in text order. */
export function * scan (text: string): Generator<Piece> {
  for (const m of text.matchAll(PIECES)) {
    const start = m.index
    if (m[1] !== undefined) {
      const chars: string[] = []
      const at: number[] = []
      let i = start
      for (const ch of m[1]) { chars.push(ch); at.push(i); i += ch.length }
      yield { kind: 'cjk', chars, at }
    } else if (m[2] !== undefined) {
      const parts: Array<{ text: string, start: number, end: number }> = []
      const joins: string[] = []
      for (const p of m[2].matchAll(PARTS)) {
        const s = start + p.index
        const last = parts[parts.length - 1]
        if (last !== undefined) joins.push(text.slice(last.end, s))
        parts.push({ text: p[0], start: s, end: s + p[0].length })
      }
      yield { kind: 'word', parts, joins }
    } else if (m[3] !== undefined) {
      // The regex finds the stretch; the segmenter says where one emoji ends and the next begins.
      for (const g of graphemes.segment(m[3])) {
        if (IS_EMOJI.test(g.segment)) yield { kind: 'emoji', text: g.segment, start: start + g.index, end: start + g.index + g.segment.length }
      }
    }
  }
}
