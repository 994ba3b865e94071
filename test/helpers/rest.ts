// A REST client for one user, over real HTTP (fetch) to the server process.
import { token as signToken } from './tokens.ts'

export interface Response<T = any> {
  status: number
  body: T
}

export interface Api {
  get<T = any> (path: string): Promise<Response<T>>
  post<T = any> (path: string, body?: unknown): Promise<Response<T>>
  put<T = any> (path: string, body: unknown): Promise<Response<T>>
  patch<T = any> (path: string, body: unknown): Promise<Response<T>>
  delete<T = any> (path: string): Promise<Response<T>>
  /** Follows /v1/sync from `since` until hasMore is false; returns every event. */
  syncAll (since?: number, limit?: number): Promise<Array<Record<string, any>>>
}

export function apiFor (httpUrl: string, userId: string, options: { token?: string } = {}): Api {
  const authorization = `Bearer ${options.token ?? signToken(userId)}`
  async function call (method: string, path: string, body?: unknown): Promise<Response> {
    const response = await fetch(httpUrl + path, {
      method,
      headers: body === undefined ? { authorization } : { authorization, 'content-type': 'application/json' },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body)
    })
    const text = await response.text()
    return { status: response.status, body: text === '' ? undefined : JSON.parse(text) }
  }
  const api: Api = {
    get: (path) => call('GET', path),
    post: (path, body) => call('POST', path, body ?? {}),
    put: (path, body) => call('PUT', path, body),
    patch: (path, body) => call('PATCH', path, body),
    delete: (path) => call('DELETE', path),
    async syncAll (since = 0, limit = 100) {
      const events: Array<Record<string, any>> = []
      for (;;) {
        const page: Response = await api.get(`/v1/sync?since=${since}&limit=${limit}`)
        if (page.status !== 200) throw new Error(`sync answered ${page.status}: ${JSON.stringify(page.body)}`)
        events.push(...page.body.events)
        since = page.body.next
        if (!page.body.hasMore) return events
      }
    }
  }
  return api
}

/** Seqs 1..n with no gap: what a user's log must always look like. */
export function isGapless (seqs: number[]): boolean {
  return seqs.every((seq, i) => seq === i + 1)
}
