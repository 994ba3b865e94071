// Relevance of a hit to a query, for `order=relevance`: every hit holds all of
// the query's tokens (that is what matched), so what ranks them is how much of
// the text is the query: the whole query as written (normalised) counts most,
// then how often its tokens occur, in a shorter text more than in a long one.
import { normalize } from './scan.ts'

/** Higher is more relevant. */
export function relevance (text: string, query: string, tokens: string[]): number {
  const haystack = normalize(text)
  const phrase = normalize(query).trim()
  let score = phrase.length > 0 && haystack.includes(phrase) ? 4 : 0
  for (const token of tokens) score += Math.min(3, occurrences(haystack, token))
  // Length damping: a word in a short message says more about it than one in a long message.
  return score / Math.log2(2 + haystack.length / 40)
}

function occurrences (haystack: string, needle: string): number {
  if (needle === '') return 0
  let count = 0
  for (let at = haystack.indexOf(needle); at >= 0; at = haystack.indexOf(needle, at + needle.length)) count++
  return count
}
