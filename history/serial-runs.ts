// One run per key at a time in this process, for work that drains a queue
// kept in storage (a group's fan-out, a writer's relay outbox). A call while
// a run is going shares the next run, so every caller's promise settles after
// a run that started after its call: whatever it asked for is then done.
export interface SerialRun<S> {
  /** Settles when a run that started after this call has ended. */
  done: Promise<void>
  /** The key's state while runs go on (one object for the key until it is idle again). */
  state: S
}

interface Entry<S> {
  state: S
  current: Promise<void>
  again: { promise: Promise<void>, resolve: () => void, reject: (error: unknown) => void } | undefined
}

export class SerialRuns<S> {
  readonly #entries = new Map<string, Entry<S>>()
  readonly #work: (key: string, state: S) => Promise<void>
  readonly #ended: (key: string, state: S) => void

  /** `ended`: the key has no run going nor queued (its state is dropped). */
  constructor (work: (key: string, state: S) => Promise<void>, ended: (key: string, state: S) => void = () => {}) {
    this.#work = work
    this.#ended = ended
  }

  /** `fresh`: the state of a key with no run; `after`: what the first run waits for. */
  run (key: string, fresh: () => S, after: Promise<void> = Promise.resolve()): SerialRun<S> {
    const entry = this.#entries.get(key)
    if (entry === undefined) {
      const created: Entry<S> = { state: fresh(), current: Promise.resolve(), again: undefined }
      this.#entries.set(key, created)
      created.current = after.then(() => this.#work(key, created.state)).finally(() => this.#next(key))
      return { done: created.current, state: created.state }
    }
    if (entry.again === undefined) {
      let resolve!: () => void
      let reject!: (error: unknown) => void
      const promise = new Promise<void>((res, rej) => { resolve = res; reject = rej })
      promise.catch(() => {})
      entry.again = { promise, resolve, reject }
    }
    return { done: entry.again.promise, state: entry.state }
  }

  has (key: string): boolean {
    return this.#entries.has(key)
  }

  get size (): number {
    return this.#entries.size
  }

  /** Resolves once no key has a run going or queued. */
  async idle (): Promise<void> {
    while (this.#entries.size > 0) await Promise.allSettled([...this.#entries.values()].map((entry) => entry.again?.promise ?? entry.current))
  }

  #next (key: string): void {
    const entry = this.#entries.get(key)!
    const again = entry.again
    if (again === undefined) {
      this.#entries.delete(key)
      this.#ended(key, entry.state)
      return
    }
    entry.again = undefined
    entry.current = this.#work(key, entry.state).finally(() => this.#next(key))
    entry.current.then(again.resolve, again.reject)
  }
}
