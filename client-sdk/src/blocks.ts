// Blocking over REST (docs/protocol.md, Blocking): a blocked user's 1:1
// messages and typing no longer reach you, and they no longer see your
// presence. They are not told.
import type { RestClient } from './rest.ts'

export interface Block {
  user: string
  /** When you blocked them (ms). */
  since: number
}

export class BlocksApi {
  constructor (private readonly rest: RestClient) {}

  block (user: string): Promise<Block> {
    return this.rest.request('PUT', `/v1/blocks/${user}`, {})
  }

  /** False when `user` was not blocked. */
  async unblock (user: string): Promise<boolean> {
    try {
      await this.rest.request('DELETE', `/v1/blocks/${user}`)
      return true
    } catch (error) {
      if ((error as { code?: string }).code === 'not_blocked') return false
      throw error
    }
  }

  /** Whom you blocked, most recent first. */
  async list (): Promise<Block[]> {
    return (await this.rest.request<{ blocks: Block[] }>('GET', '/v1/blocks')).blocks
  }
}
