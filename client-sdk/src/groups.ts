// Groups over REST: create, read, membership, roles, history by gseq, read
// marks, receipts, recall and mute (docs/protocol.md, Groups). Sending and
// typing go over MQTT through the client (sendToGroup, typingInGroup).
import type { RestClient } from './rest.ts'
import type { Group, Role } from './types.ts'

export class GroupsApi {
  constructor (private readonly rest: RestClient) {}

  async create (name: string, members: string[] = [], meta?: Record<string, unknown>): Promise<Group> {
    return (await this.rest.request<{ group: Group }>('POST', '/v1/groups', { name, members, ...(meta === undefined ? {} : { meta }) })).group
  }

  async get (id: string): Promise<Group> {
    return (await this.rest.request<{ group: Group }>('GET', `/v1/groups/${id}`)).group
  }

  async list (): Promise<Group[]> {
    return (await this.rest.request<{ groups: Group[] }>('GET', '/v1/groups')).groups
  }

  async update (id: string, changes: { name?: string, meta?: Record<string, unknown> | null }): Promise<Group> {
    return (await this.rest.request<{ group: Group }>('PATCH', `/v1/groups/${id}`, changes)).group
  }

  async addMembers (id: string, users: string[]): Promise<Group> {
    return (await this.rest.request<{ group: Group }>('POST', `/v1/groups/${id}/members`, { users })).group
  }

  async removeMember (id: string, user: string): Promise<Group> {
    return (await this.rest.request<{ group: Group }>('DELETE', `/v1/groups/${id}/members/${user}`)).group
  }

  async leave (id: string): Promise<void> {
    await this.rest.request('POST', `/v1/groups/${id}/leave`)
  }

  async setRole (id: string, user: string, role: Role): Promise<Group> {
    return (await this.rest.request<{ group: Group }>('PUT', `/v1/groups/${id}/members/${user}/role`, { role })).group
  }

  /** The group's events you may read, by gseq, oldest first: after `after`, or the newest before `before`. */
  async history (id: string, range: { after?: number, before?: number, limit?: number } = {}): Promise<{ events: Array<Record<string, unknown>>, hasMore: boolean }> {
    const query = new URLSearchParams()
    for (const [key, value] of Object.entries(range)) if (value !== undefined) query.set(key, String(value))
    return this.rest.request('GET', `/v1/groups/${id}/messages?${query}`)
  }

  markRead (id: string, gseq: number): Promise<{ readUpTo: number, unread: number }> {
    return this.rest.request('POST', `/v1/groups/${id}/read`, { gseq })
  }

  receipts (id: string, gseq: number): Promise<{ read: string[], delivered: string[] }> {
    return this.rest.request('GET', `/v1/groups/${id}/messages/${gseq}/receipts`)
  }

  /** Replaces the body of your group message `gseq` (within the edit window); every member gets an `edit` event. */
  async edit (id: string, gseq: number, body: unknown): Promise<Record<string, unknown>> {
    return (await this.rest.request<{ message: Record<string, unknown> }>('POST', `/v1/groups/${id}/messages/${gseq}/edit`, { body })).message
  }

  async recall (id: string, gseq: number): Promise<Record<string, unknown>> {
    return (await this.rest.request<{ message: Record<string, unknown> }>('POST', `/v1/groups/${id}/messages/${gseq}/recall`)).message
  }

  /** Mutes push alerts until a time (ms), until unmuted (no argument), or unmutes (null). */
  mute (id: string, until?: number | null): Promise<{ mutedUntil: number | null }> {
    return this.rest.request('POST', `/v1/groups/${id}/mute`, until === undefined ? {} : { until })
  }
}
