// A small, conservative English suffix stemmer, applied to the Latin words of
// both a message and a query (search/tokenize.ts), so "messages" finds
// "message" and "running" finds "run". It only ever strips: a word it does not
// know stays as it is. Conservative on purpose: two different words made equal
// are wrong hits for ever; a missed inflection is only a miss.

/** Words a plain-s rule would break. */
const KEEP = new Set(['news', 'series', 'species', 'always', 'perhaps', 'yes', 'thus', 'evening', 'lens', 'chaos', 'bias', 'alias', 'canvas', 'atlas', 'gas', 'plus', 'minus', 'status', 'virus', 'focus', 'bonus', 'campus', 'corpus', 'census', 'analysis', 'basis', 'axis', 'crisis', 'thesis', 'redis', 'kubernetes', 'postgres', 'ios', 'macos', 'windows', 'jenkins', 'ops', 'devops', 'aws', 'sms', 'dns', 'https', 'tls', 'ssl'])

const ASCII_WORD = /^[a-z]+$/
const VOWEL = /[aeiouy]/

/** Drops one letter of a final double consonant left by -ing/-ed (running → run), not ll/ss/zz/ff (calling → call). */
function undouble (base: string): string {
  const last = base[base.length - 1]
  return base.length >= 3 && last === base[base.length - 2] && !'lszfaeiou'.includes(last ?? '') ? base.slice(0, -1) : base
}

/** The stem of a lowercased word; anything but a plain a–z word of 4+ letters is returned as it is. */
export function stem (word: string): string {
  if (word.length < 4 || !ASCII_WORD.test(word) || KEEP.has(word)) return word
  let w = word
  // Plurals and third person.
  if (w.endsWith('ies') && w.length > 4) w = w.slice(0, -3) + 'y'
  else if (/(?:ch|sh|x|ss|zz)es$/.test(w)) w = w.slice(0, -2)
  else if (w.endsWith('s') && !/(?:ss|us|is|os|as)$/.test(w)) w = w.slice(0, -1)
  // -ied, -ing, -ed: only when a real stem (4+ letters with a vowel) is left.
  if (w.endsWith('ied') && w.length > 4) w = w.slice(0, -3) + 'y'
  else if (w.endsWith('ing') && w.length >= 7 && VOWEL.test(w.slice(0, -3))) w = undouble(w.slice(0, -3))
  else if (w.endsWith('ed') && w.length >= 6 && VOWEL.test(w.slice(0, -2))) w = undouble(w.slice(0, -2))
  // A final silent e, so base/based/basing and update/updated/updating meet.
  if (w.length >= 5 && w.endsWith('e') && !w.endsWith('ee')) w = w.slice(0, -1)
  return w
}
