// The index finds a run of 3+ Chinese, Japanese or Korean characters by its
// adjacent pairs, which one message can hold in two places (上海 … 海东 for a
// query 上海东). So a hit must also hold each such run of the query whole:
// checked on the hit's text, after the index, with the same normalisation.
import { normalize, scan } from './scan.ts'

/** The query's CJK runs of 3 or more characters, normalised. */
export function cjkPhrases (query: string): string[] {
  const phrases: string[] = []
  for (const piece of scan(normalize(query))) if (piece.kind === 'cjk' && piece.chars.length >= 3) phrases.push(piece.chars.join(''))
  return phrases
}

/** Does `text` hold every phrase whole? (True when there are none.) */
export function holdsPhrases (text: string, phrases: string[]): boolean {
  if (phrases.length === 0) return true
  const normalised = normalize(text)
  return phrases.every((phrase) => normalised.includes(phrase))
}
