// Search over the caller's own history (GET /v1/search): their 1:1 messages
// and the group messages their log holds (only while they were a member),
// newest first, each with a snippet of its text with the matches marked. The
// index is filled by the archiver, so a message is found once it is archived
// (the archive lag: a fraction of a second unless the machine is saturated); a recalled one is not
// found from the moment of the recall (hits are checked against the hot log). While the index cannot be
// reached (PostgreSQL not open yet, or failing) search is unavailable, never
// anything else: sending and delivery do not depend on it.
import type { ArchiveStore, SearchHit } from './archive-store.ts'
import type { LogStore } from '../history/history-store.ts'
import type { GroupStore } from '../history/group-store.ts'
import { queryTokens } from '../search/tokenize.ts'
import { snippet } from '../search/snippet.ts'
import { relevance } from '../search/relevance.ts'
import { cjkPhrases, holdsPhrases } from '../search/phrases.ts'
import { searchableText } from '../search/searchable-text.ts'

/**
 * Whether the hot log's copy no longer says what the index found: recalled, or edited to
 * another text since it was indexed (the archiver's next round indexes the new text).
 */
function outdated (json: string, indexed: string): boolean {
  if (json.includes('"recalled":true')) return true
  if (!json.includes('"edited":true')) return false
  return searchableText((JSON.parse(json) as { body?: unknown }).body) !== indexed
}

/** `order=relevance` ranks the newest this many matches. */
export const RELEVANCE_POOL = 200

/** Longest query taken (characters); the tokenizer bounds its work further. */
export const MAX_QUERY_LENGTH = 200
/** Longest wait for the index before answering search_unavailable. */
const SEARCH_TIMEOUT_MS = 10_000

export class SearchQueryError extends Error {
  constructor (readonly code: 'invalid_query', message: string) {
    super(message)
  }
}

/** The index is not open yet or did not answer: 503 search_unavailable. */
export class SearchUnavailableError extends Error {
  readonly code = 'search_unavailable'
}

export interface SearchRequest {
  q: string
  /** Only the 1:1 conversation with this user. */
  peer?: string
  /** Only this group. */
  group?: string
  /** A cursor: only messages with a seq below it (the `next` of a previous page). */
  before?: number
  limit: number
  /** `newest` (default): by seq, newest first, paged with `before`. `relevance`: the best `limit` of the newest RELEVANCE_POOL matches, one page. */
  order?: 'newest' | 'relevance'
}

export interface SearchResult {
  conversation: { peer: string } | { group: string }
  seq: number
  gseq?: number
  ts: number
  /** The message as history holds it (with the caller's seq). */
  message: unknown
  snippet: { text: string, marks: Array<[number, number]> }
}

export class SearchService {
  readonly #archive: () => ArchiveStore | undefined
  readonly #retentionMs: number
  #hot: Pick<LogStore, 'readLog' | 'floor'> | undefined
  #groups: Pick<GroupStore, 'groupEvent'> | undefined

  /**
   * `archive`: the store, or a getter of it (undefined while it is being opened). `retentionMs`:
   * HISTORY_RETENTION_SECONDS (0: forever); older messages are not found even before the archive's trim removes them.
   */
  constructor (archive: ArchiveStore | (() => ArchiveStore | undefined), retentionMs = 0) {
    this.#archive = typeof archive === 'function' ? archive : () => archive
    this.#retentionMs = retentionMs
  }

  /**
   * The hot log, the truth for what it still holds: a hit it holds is shown as it is there now,
   * so a message recalled a moment ago is not found even before the archiver reaches the recall.
   */
  checkAgainst (hot: Pick<LogStore, 'readLog' | 'floor'>, groups?: Pick<GroupStore, 'groupEvent'>): void {
    this.#hot = hot
    this.#groups = groups
  }

  /** Hits as the hot log holds them now (dropping the recalled, and the edited away from the text found); below its floor the archive is the truth. */
  async #current (user: string, hits: SearchHit[]): Promise<SearchHit[]> {
    const hot = this.#hot
    if (hot === undefined || hits.length === 0) return hits
    const floor = await hot.floor(user)
    const checked = await Promise.all(hits.map(async (hit) => {
      // A group message: its one stored copy is the truth, wherever the member's reference is.
      if (hit.group !== undefined && hit.gseq !== undefined && this.#groups !== undefined) {
        const tail = await this.#groups.groupEvent(hit.group, hit.gseq)
        return tail !== undefined && outdated(`{${tail}`, hit.text) ? undefined : hit
      }
      if (hit.seq < floor) return hit
      const [entry] = await hot.readLog(user, hit.seq - 1, 1)
      if (entry?.seq !== hit.seq || entry.event === undefined) return hit
      return outdated(entry.event, hit.text) ? undefined : { ...hit, event: entry.event }
    }))
    return checked.filter((hit): hit is SearchHit => hit !== undefined)
  }

  async search (user: string, request: SearchRequest): Promise<{ results: SearchResult[], next: number | undefined }> {
    const tokens = queryTokens(request.q.slice(0, MAX_QUERY_LENGTH))
    if (tokens.length === 0) throw new SearchQueryError('invalid_query', 'the query has no word, character, number or emoji to search for')
    const conversation = request.group !== undefined ? `g:${request.group}` : request.peer
    const byRelevance = request.order === 'relevance'
    const archive = this.#archive()
    if (archive === undefined) throw new SearchUnavailableError('the search index is not reachable yet; try again later')
    let found: Awaited<ReturnType<ArchiveStore['search']>>
    let timer: ReturnType<typeof setTimeout> | undefined
    try {
      found = await Promise.race([
        archive.search(user, {
          tokens,
          ...(conversation === undefined ? {} : { conversation }),
          ...(request.before === undefined ? {} : { beforeSeq: request.before }),
          limit: byRelevance ? RELEVANCE_POOL : request.limit
        }),
        // A stalled index (PostgreSQL frozen, a connection that never opens) still gets the caller an answer.
        new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`no answer in ${SEARCH_TIMEOUT_MS} ms`)), SEARCH_TIMEOUT_MS) })
      ])
    } catch (error) {
      throw new SearchUnavailableError('the search index is not reachable; try again later', { cause: error })
    } finally {
      clearTimeout(timer)
    }
    const { hits, hasMore } = found
    const cutoff = this.#retentionMs > 0 ? Date.now() - this.#retentionMs : 0
    const phrases = cjkPhrases(request.q.slice(0, MAX_QUERY_LENGTH))
    let shown = hits.filter((hit) => hit.ts >= cutoff && holdsPhrases(hit.text, phrases))
    if (byRelevance) {
      const scores = new Map(shown.map((hit) => [hit, relevance(hit.text, request.q, tokens)]))
      // Ties keep the newest first (the archive's order; sort is stable).
      shown = shown.sort((a, b) => scores.get(b)! - scores.get(a)!).slice(0, request.limit)
    }
    const results = (await this.#current(user, shown)).map((hit): SearchResult => ({
      conversation: hit.group !== undefined ? { group: hit.group } : { peer: hit.conversation },
      seq: hit.seq,
      ...(hit.gseq === undefined ? {} : { gseq: hit.gseq }),
      ts: hit.ts,
      message: JSON.parse(hit.event) as unknown,
      snippet: snippet(hit.text, tokens)
    }))
    // The cursor is the last hit the archive gave, even if this page shows fewer.
    return { results, next: hasMore && !byRelevance ? hits.at(-1)?.seq : undefined }
  }
}
