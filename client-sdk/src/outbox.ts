// Messages the app has sent that the server has not yet confirmed. Kept in
// the client storage, so a send survives the app being killed: on the next
// connection it is published again with the same id, and the server's
// idempotency makes the retry harmless.
import type { ClientStorage } from './storage.ts'
import type { ReplyTo } from './types.ts'

/** A send to a person (`to`) or to a group (`group`). Items saved before groups existed have `to`. */
export type OutboxItem =
  | { id: string, to: string, group?: undefined, body: unknown, replyTo?: ReplyTo, attachments?: AttachmentRequest[] }
  | { id: string, group: string, to?: undefined, body: unknown, replyTo?: ReplyTo, attachments?: AttachmentRequest[] }

/** What a message's `attachments` field names: an upload, and its thumbnail unless that travels encrypted. */
export interface AttachmentRequest { id: string, thumbnail?: string }

const KEY = 'inboxd.outbox'

export class Outbox {
  #items = new Map<string, OutboxItem>()
  #saving: Promise<void> = Promise.resolve()

  constructor (private readonly storage: ClientStorage) {}

  async load (): Promise<void> {
    const saved = await this.storage.get(KEY)
    const items = saved === undefined ? [] : JSON.parse(saved) as OutboxItem[]
    this.#items = new Map(items.map((item) => [item.id, item]))
  }

  items (): OutboxItem[] { return [...this.#items.values()] }
  has (id: string): boolean { return this.#items.has(id) }

  add (item: OutboxItem): Promise<void> {
    this.#items.set(item.id, item)
    return this.#save()
  }

  remove (id: string): Promise<void> {
    if (!this.#items.delete(id)) return this.#saving
    return this.#save()
  }

  #save (): Promise<void> {
    const snapshot = JSON.stringify(this.items())
    this.#saving = this.#saving.then(() => this.storage.set(KEY, snapshot))
    return this.#saving
  }
}
