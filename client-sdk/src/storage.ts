// Where the SDK keeps what must survive an app restart: the last seq it
// processed and the outbox of unsent messages. In memory by default; an app
// passes its own (AsyncStorage, IndexedDB, a file...) to make them durable.
export interface ClientStorage {
  get (key: string): Promise<string | undefined>
  set (key: string, value: string): Promise<void>
}

export class MemoryStorage implements ClientStorage {
  readonly #values = new Map<string, string>()
  async get (key: string): Promise<string | undefined> { return this.#values.get(key) }
  async set (key: string, value: string): Promise<void> { this.#values.set(key, value) }
}
