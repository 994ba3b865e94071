// End-to-end encryption as the client uses it: your key pair from the
// options, peers' public keys from the key directory (cached), bodies sealed
// before they enter the outbox and opened when they arrive. Without a key
// pair, bodies pass through and sealed ones are marked undecryptable.
import { associatedData, fromBase64, isSealed, open, seal, toBase64, type KeyPair } from './e2ee.ts'
import type { RestClient } from './rest.ts'
import type { Attachment, MessageEvent } from './types.ts'

export class Encryption {
  readonly #keyPair: KeyPair | undefined
  readonly #rest: RestClient
  readonly #publicKeys = new Map<string, Uint8Array>()

  constructor (keyPair: KeyPair | undefined, rest: RestClient) {
    this.#keyPair = keyPair
    this.#rest = rest
  }

  get enabled (): boolean { return this.#keyPair !== undefined }

  /** Publishes this client's public key, so others can encrypt to you. */
  async publishKey (): Promise<void> {
    await this.#rest.request('PUT', '/v1/keys', { publicKey: toBase64(this.#require().publicKey) })
  }

  async seal (from: string, to: string, id: string, body: unknown): Promise<unknown> {
    return seal(body, this.#require(), await this.#publicKeyOf(to), associatedData(from, to, id))
  }

  /** Opens a message's body, or an edit event's (sealed for the same sender, recipient and id). */
  open<T extends Pick<MessageEvent, 'from' | 'to' | 'id' | 'body' | 'decryptError'> & { attachments?: MessageEvent['attachments'] }> (message: T): T {
    if (!isSealed(message.body)) return message
    if (this.#keyPair === undefined) return { ...message, decryptError: 'no key pair configured' }
    try {
      const plain = open(message.body, this.#keyPair, associatedData(message.from, message.to ?? '', message.id))
      if (message.attachments === undefined) return { ...message, body: plain }
      // With attachments the plaintext is {body, files}: each file's key, digest, real type and size.
      const { body, files } = plain as { body: unknown, files?: Attachment[] }
      const granted = new Set(message.attachments.map((attachment) => attachment.id))
      return { ...message, body, attachments: (files ?? []).filter((file) => granted.has(file.id)) }
    } catch (error) {
      return { ...message, decryptError: (error as Error).message }
    }
  }

  async #publicKeyOf (user: string): Promise<Uint8Array> {
    let key = this.#publicKeys.get(user)
    if (key === undefined) {
      const published = await this.#rest.request<{ publicKey: string }>('GET', `/v1/keys/${user}`)
      key = fromBase64(published.publicKey)
      this.#publicKeys.set(user, key)
    }
    return key
  }

  #require (): KeyPair {
    if (this.#keyPair === undefined) throw new Error('end-to-end encryption is not configured (options.e2ee)')
    return this.#keyPair
  }
}
