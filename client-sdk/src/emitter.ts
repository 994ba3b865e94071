// A minimal typed event emitter that works in browsers and Node alike.
export class Emitter<Events extends Record<string, (...args: any[]) => void>> {
  readonly #listeners = new Map<keyof Events, Set<Events[keyof Events]>>()

  on<K extends keyof Events> (event: K, listener: Events[K]): () => void {
    let set = this.#listeners.get(event)
    if (set === undefined) this.#listeners.set(event, set = new Set())
    set.add(listener)
    return () => { set.delete(listener) }
  }

  protected emit<K extends keyof Events> (event: K, ...args: Parameters<Events[K]>): void {
    for (const listener of this.#listeners.get(event) ?? []) {
      try {
        listener(...args)
      } catch (error) {
        // A failing app handler must not break delivery to the others.
        if (event !== 'error') this.emit('error' as K, ...([error] as Parameters<Events[K]>))
      }
    }
  }
}
