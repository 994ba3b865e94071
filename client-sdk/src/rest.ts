// The bridge's REST API with the current token; a 401 fetches a new token
// and retries once.
export class ApiError extends Error {
  constructor (readonly status: number, readonly code: string, message: string, readonly field?: string) {
    super(message)
  }
}

export class RestClient {
  constructor (
    private readonly baseUrl: string,
    private readonly token: (forceNew: boolean) => Promise<string>
  ) {}

  async request<T> (method: string, path: string, body?: unknown): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const response = await fetch(this.baseUrl + path, {
        method,
        headers: {
          authorization: `Bearer ${await this.token(attempt > 0)}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' })
        },
        body: body === undefined ? undefined : JSON.stringify(body)
      })
      if (response.status === 401 && attempt === 0) continue
      const text = await response.text()
      const json = text === '' ? undefined : JSON.parse(text)
      if (!response.ok) throw new ApiError(response.status, json?.error ?? 'http_error', json?.message ?? response.statusText, json?.field)
      return json as T
    }
  }

  /** Whether the server refuses this token as revoked (logout, admin): `GET /v1/sessions/current` answers 401 `token_revoked`. */
  async isRevoked (token: string): Promise<boolean> {
    const response = await fetch(`${this.baseUrl}/v1/sessions/current`, { headers: { authorization: `Bearer ${token}` } })
    if (response.status !== 401) return false
    const json = await response.json().catch(() => undefined) as { error?: string } | undefined
    return json?.error === 'token_revoked'
  }
}
