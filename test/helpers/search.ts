// Waiting for search to find something: the archiver fills the index off the
// PUBACK path, a fraction of a second behind, so a test asks until its hits come.
import type { Api } from './rest.ts'

export interface Hit { conversation: { peer?: string, group?: string }, seq: number, gseq?: number, message: Record<string, any>, snippet: { text: string, marks: Array<[number, number]> } }

/** Searches until `found` holds, or fails after 10 s (a search answering other than 200 fails at once). */
export async function searchUntil (api: Api, query: string, found: (hits: Hit[]) => boolean): Promise<Hit[]> {
  const deadline = Date.now() + 10_000
  for (;;) {
    const response = await api.get(`/v1/search?q=${encodeURIComponent(query)}`)
    if (response.status !== 200) throw new Error(`search answered ${response.status}: ${JSON.stringify(response.body)}`)
    const hits = response.body.results as Hit[]
    if (found(hits)) return hits
    if (Date.now() > deadline) throw new Error(`no matching hits for ${query}: ${JSON.stringify(hits)}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}
