// The text side of message search (issue #21): search/tokenize.ts alone, by set
// containment as the stores check it (a message matches when its tokens hold
// every query token), against the corpus of test/fixtures/search-corpus.json;
// search/searchable-text.ts and search/snippet.ts; and properties with
// fast-check (any part of a CJK run finds its message).
import t from 'tap'
import fc from 'fast-check'
import { readFileSync } from 'node:fs'
import { documentTokens, queryTokens, MAX_DOC_TOKENS, MAX_TEXT_CHARS, MAX_TOKEN_CHARS } from '../search/tokenize.ts'
import { searchableText } from '../search/searchable-text.ts'
import { snippet } from '../search/snippet.ts'
import { stem } from '../search/stem.ts'

interface Corpus {
  messages: Array<{ id: string, body: unknown }>
  queries: Array<{ q: string, means: string[][], expected: string[], nonHits: string[], knownMisses?: string[], knownFalsePositives?: string[] }>
}
const corpus = JSON.parse(readFileSync(new URL('fixtures/search-corpus.json', import.meta.url), 'utf8')) as Corpus

const CJK_CHAR = /[\p{scx=Han}\p{scx=Hira}\p{scx=Kana}\p{scx=Hang}]/gu
const fold = (s: string): string => s.normalize('NFKC').toLowerCase().replaceAll('\ufe0f', '')
/** The fixture's own rule for a hit, independent of the tokenizer: a Latin alternative as a whole word, anything else anywhere. */
function holds (text: string, alt: string): boolean {
  const a = fold(alt)
  if (!/^[\p{L}\p{N}][\p{L}\p{N}\-.@_+#:]*$/u.test(a) || /[\p{scx=Han}\p{scx=Hira}\p{scx=Kana}\p{scx=Hang}]/u.test(a)) return fold(text).includes(a)
  const escaped = a.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
  return new RegExp(`(?<![\\p{L}\\p{N}])${escaped}(?![\\p{L}\\p{N}])`, 'u').test(fold(text).replace(CJK_CHAR, ' '))
}
const sorted = (ids: Iterable<string>): string[] => [...ids].sort()

t.test('corpus: every query finds exactly its hits by token containment', async (t) => {
  const docs = corpus.messages.map((m) => {
    const text = searchableText(m.body)
    return { id: m.id, text, tokens: new Set(text === undefined ? [] : documentTokens(text)) }
  })
  t.ok(corpus.messages.length >= 150 && corpus.queries.length >= 40, `${corpus.messages.length} messages, ${corpus.queries.length} queries`)
  for (const q of corpus.queries) {
    // The fixture says what it means: its expected hits follow from `means`.
    const meant = docs.filter((d) => d.text !== undefined && q.means.every((alts) => alts.some((a) => holds(d.text!, a)))).map((d) => d.id)
    t.same(sorted(meant), sorted(q.expected), `fixture: ${q.q}'s expected hits are what its means say`)
    const qt = queryTokens(q.q)
    t.ok(qt.length > 0, `${q.q} has tokens`)
    const hits = docs.filter((d) => qt.every((token) => d.tokens.has(token))).map((d) => d.id)
    const known = new Set(q.knownMisses ?? [])
    const want = [...q.expected.filter((id) => !known.has(id)), ...(q.knownFalsePositives ?? [])]
    t.same(sorted(hits), sorted(want), `${q.q} → ${JSON.stringify(qt)}`)
    for (const id of q.nonHits) t.notOk(hits.includes(id), `${q.q} does not find ${id}`)
  }
})

t.test('the cases of issue #21 by name', async (t) => {
  const finds = (text: string, query: string): boolean => {
    const doc = new Set(documentTokens(text))
    const qt = queryTokens(query)
    return qt.length > 0 && qt.every((token) => doc.has(token))
  }
  t.ok(finds('我家在上海东边。', '上海'), 'Mattermost #22345')
  t.ok(finds('バッタと鈴虫', '鈴虫'), 'Synapse #901: not only at the start of a run')
  t.ok(finds('バッタと鈴虫', 'と'), 'one kana')
  t.ok(finds('我们用 React 写前端', '用 React 写'))
  t.ok(finds('用React写的页面', '用 react 写'), 'without spaces in the message')
  t.ok(finds('用 React 写的', '用React写'), 'without spaces in the query')
  t.ok(finds('Ｒｅａｃｔ的文档', 'REACT'), 'full width, other case')
  t.ok(finds('ｶﾀｶﾅ', 'カタカナ'), 'half-width kana')
  t.ok(finds('She replied to all the messages', 'reply message'))
  t.ok(finds('I am running late', 'run'))
  t.notOk(finds('Debugging the login', 'bug'))
  t.ok(finds('see order-8842 please', 'order-8842'))
  t.ok(finds('see order-8842 please', '8842'))
  t.notOk(finds('see order-88421 please', 'order-8842'))
  t.ok(finds('upgraded to v2.3.1', 'v2.3.1'))
  t.notOk(finds('upgraded to v2.3.10', 'v2.3.1'))
  t.ok(finds('mail alice@example.com', 'alice@example.com'))
  t.ok(finds('mail alice@example.com', 'example.com'))
  t.notOk(finds('alice, ask bob@example.com', 'alice@example.com'))
  t.ok(finds('我的手机号是13800138000，有事打给我', '13800138000'))
  t.ok(finds('Is the Wi-Fi down?', 'wifi'))
  t.ok(finds('the wifi is down', 'Wi-Fi'))
  t.ok(finds('looks good 👍🏽', '👍'), 'a skin tone finds the plain emoji')
  t.notOk(finds('looks good 👍', '👍🏽'), 'but not the other way')
  t.ok(finds('love ❤', '❤️'), 'VS16 ignored')
  t.ok(finds('our family 👨‍👩‍👧', '👨‍👩‍👧'))
  t.notOk(finds('go 🇯🇵', '🇨🇳'))
  t.ok(finds('모든 인간은 존엄과 권리에 있어', '권리'))
})

t.test('a query with nothing searchable has no tokens', async (t) => {
  for (const q of ['', '   ', '？！。', '...', '---', '\u200d\ufe0f', '#️⃣']) t.same(queryTokens(q), [], JSON.stringify(q))
})

t.test('bounds: text, token count and token length', async (t) => {
  const text = 'a'.repeat(10) + ' ' + 'x '.repeat(MAX_TEXT_CHARS) + 'zebra'
  t.notOk(documentTokens(text).includes('zebra'), `only the first ${MAX_TEXT_CHARS} characters are read`)
  // Many distinct CJK pairs: the tokens stop at the bound, from the start of the text.
  let cjk = ''
  for (let i = 0; i < 3_000; i++) cjk += String.fromCodePoint(0x4e00 + ((i * 7919) % 20_000))
  const tokens = documentTokens(cjk)
  t.ok(tokens.length <= MAX_DOC_TOKENS, `${tokens.length} tokens`)
  t.ok(queryTokens(cjk.slice(0, 100)).every((tok) => tokens.includes(tok)), 'the beginning is indexed')
  const long = 'q'.repeat(5_000)
  const [only] = documentTokens(long)
  t.equal(only?.length, MAX_TOKEN_CHARS, 'a long word is cut')
  t.same(queryTokens(long), [only], '…and still finds itself')
  t.ok(documentTokens(`${'好'.repeat(3999)}😂`).every((tok) => !tok.includes('\ud83d') || tok === '😂'), 'no half of a surrogate pair at the cut')
})

t.test('stemmer: regular inflections meet, short and unknown words stay', async (t) => {
  const same = [['messages', 'message', 'messaging'], ['running', 'run', 'runs'], ['deployed', 'deploy', 'deploying', 'deploys'], ['replies', 'reply', 'replied'], ['updated', 'update', 'updates', 'updating'], ['stopped', 'stop'], ['classes', 'class'], ['called', 'call', 'calling']]
  for (const words of same) t.equal(new Set(words.map(stem)).size, 1, words.join('/'))
  for (const [a, b] of [['news', 'new'], ['bus', 'bu'], ['debugging', 'bug'], ['evening', 'even'], ['status', 'statu']]) t.not(stem(a!), stem(b!), `${a} ≠ ${b}`)
  t.equal(stem('ok'), 'ok')
  t.equal(stem('résumés'), 'résumés', 'only a–z words')
})

t.test('searchableText: strings and text fields, never an encrypted body', async (t) => {
  t.equal(searchableText('hello 上海'), 'hello 上海')
  t.equal(searchableText(''), '')
  t.equal(searchableText({ text: '周五见', mentions: ['bob'] }), '周五见')
  t.equal(searchableText({ e2ee: 'x25519-xchacha20poly1305-v1', ciphertext: 'AAAA', text: 'leaked' }), undefined)
  t.equal(searchableText({ e2ee: 'some-future-scheme', text: 'x' }), undefined)
  for (const body of [undefined, null, 42, true, ['text'], { text: 5 }, { caption: 'x' }]) t.equal(searchableText(body), undefined, JSON.stringify(body))
})

/** The marked parts of a snippet. */
const marked = (s: { text: string, marks: Array<[number, number]> }): string[] => s.marks.map(([a, b]) => s.text.slice(a, b))

t.test('snippet: marks in UTF-16 offsets of the returned text', async (t) => {
  t.same(snippet('我家在上海东边。', queryTokens('上海')), { text: '我家在上海东边。', marks: [[3, 5]] })
  t.same(snippet('我家在上海东边。', queryTokens('东边 上海')), { text: '我家在上海东边。', marks: [[3, 7]] }, 'touching matches are one mark')
  t.same(marked(snippet('猫粮快吃完了，熊猫也饿了', queryTokens('猫'))), ['猫', '猫'])
  t.same(marked(snippet('Messages were RUNNING late', queryTokens('message run'))), ['Messages', 'RUNNING'])
  const emoji = snippet('ok 👍🏽 then 👨‍👩‍👧 and 👍', queryTokens('👍 👨‍👩‍👧'))
  t.same(emoji.marks, [[3, 7], [13, 21], [26, 28]], 'surrogate pairs, skin tone and ZWJ counted in UTF-16 units')
  t.same(marked(emoji), ['👍🏽', '👨‍👩‍👧', '👍'])
  t.same(marked(snippet('ﬁle ｶﾞｲﾄﾞ ＲＥＡＣＴ', queryTokens('file ガイド react'))), ['ﬁle', 'ｶﾞｲﾄﾞ', 'ＲＥＡＣＴ'], 'NFKC changes lengths; marks cover the original characters')
  t.same(marked(snippet('用React写的，order-8842 和 v2.3.1', queryTokens('用 React 写 order-8842 v2.3.1'))), ['用React写', 'order-8842', 'v2.3.1'])
  t.same(snippet('nothing here', queryTokens('上海')), { text: 'nothing here', marks: [] })
})

t.test('snippet: a window around the first match, cut with …', async (t) => {
  const text = '开头'.repeat(100) + '我家在上海东边。' + '结尾'.repeat(100)
  const s = snippet(text, queryTokens('上海'), 40)
  t.ok(s.text.startsWith('…') && s.text.endsWith('…'))
  t.equal(s.text.length, 42, 'maxChars plus the two ellipses')
  t.same(marked(s), ['上海'])
  t.ok(s.marks[0]![0] > 5 && s.marks[0]![0] < 20, 'with context before the match')
  const start = snippet('上海' + 'x'.repeat(300), queryTokens('上海'), 40)
  t.ok(!start.text.startsWith('…') && start.text.endsWith('…'))
  t.same(start.marks, [[0, 2]])
  const end = snippet('x'.repeat(300) + '上海', queryTokens('上海'), 40)
  t.ok(end.text.startsWith('…') && !end.text.endsWith('…'))
  t.equal(end.text.length, 41)
  const noMatch = snippet('y'.repeat(300), queryTokens('上海'), 40)
  t.same(noMatch, { text: 'y'.repeat(40) + '…', marks: [] })
  const emoji = snippet('👨‍👩‍👧'.repeat(50), queryTokens('上海'), 40)
  t.equal(emoji.text, '👨‍👩‍👧'.repeat(5) + '…', 'cut between graphemes only (8 units each)')
})

// Characters of the three scripts, some outside the BMP (surrogate pairs), and what may stand between runs.
const CJK_UNITS = [...'的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极交受联什认六共权收证改清己美再采转更单风切打白教速花带安场身车例真务具万每目至达走积示议声报斗完类八离华名确才科张信马节话米整空元况今集温传土许步群广石记需段研界拉林律叫且究观越织装影算低持音众书布复容儿须际商非验连断深难近矿千周委素技备半办青省列习响约支般史感劳便团往酸历市克何除消构府称太准精值号率族维划选标写存候毛亲快效斯院查江型眼王按格养易置派层片始却专状育厂京识适属圆包火住调满县局照参红细引听该铁价严𠀀𠀁𡈽あいうえおかがきくけこさしすせそたちつてとアイウエオカキクケコサシスセソタチツテトーㄱ가나다라마바사아자차카타파하한국어말글']
const OTHER = [' ', '，', '。', '！', 'a', 'b', 'Z', '1', '-', '.', '😂', '\n']

t.test('property: any substring of a CJK run finds its message', async (t) => {
  const run = fc.array(fc.constantFrom(...CJK_UNITS), { minLength: 1, maxLength: 40 })
  const doc = fc.array(fc.tuple(run, fc.array(fc.constantFrom(...OTHER), { minLength: 1, maxLength: 3 })), { minLength: 1, maxLength: 6 })
  fc.assert(fc.property(doc, fc.nat(), fc.nat(), fc.nat(), (pieces, pick, from, len) => {
    const text = pieces.map(([r, o]) => r.join('') + o.join('')).join('')
    const [chars] = pieces[pick % pieces.length]!
    const start = from % chars.length
    const sub = chars.slice(start, start + 1 + (len % (chars.length - start))).join('')
    const qt = queryTokens(sub)
    const tokens = new Set(documentTokens(text))
    if (qt.length === 0 || !qt.every((tok) => tokens.has(tok))) throw new Error(`${JSON.stringify(sub)} not found in ${JSON.stringify(text)}: ${JSON.stringify(qt)}`)
    // …and the snippet marks it.
    const s = snippet(text, qt, 500)
    if (s.marks.length === 0) throw new Error(`no mark for ${JSON.stringify(sub)} in ${JSON.stringify(text)}`)
  }), { numRuns: 500 })
  t.pass('500 random messages')
})

t.test('property: snippet marks are ordered, apart and inside the text', async (t) => {
  const unit = fc.constantFrom(...CJK_UNITS, ...OTHER, 'ﬁ', 'ｶﾞ', '👍🏽', '👨‍👩‍👧', 'Ａ', 'run', 'running ')
  fc.assert(fc.property(fc.array(unit, { maxLength: 200 }), fc.array(unit, { minLength: 1, maxLength: 4 }), fc.integer({ min: 10, max: 200 }), (parts, query, max) => {
    const s = snippet(parts.join(''), queryTokens(query.join('')), max)
    let last = -1
    for (const [a, b] of s.marks) {
      if (!(a > last && b > a && b <= s.text.length)) throw new Error(`bad marks ${JSON.stringify(s)}`)
      last = b
    }
    const body = s.text.replace(/^…/, '').replace(/…$/, '')
    if (body.length > max) throw new Error(`window of ${body.length} > ${max}`)
  }), { numRuns: 500 })
  t.pass('500 random snippets')
})
