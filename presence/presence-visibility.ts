// Who may see whose presence (docs/protocol.md, Presence):
//  - never someone who blocked you;
//  - with PRESENCE_VISIBILITY=contacts (the default), only users who share a
//    conversation with you: 1:1 history, or a group;
//  - with PRESENCE_VISIBILITY=all, everyone else.
// The broker must decide synchronously for each presence packet it forwards
// (Aedes' authorizeForward), so decisions are cached per (viewer, subject):
// computed when the viewer subscribes, refreshed in the background once
// older than `ttlMs`, and decided again at once when a block changes or two
// users first talk (a cluster-wide signal).

export type PresenceVisibilityMode = 'all' | 'contacts'

export interface VisibilityFacts {
  /** Has `blocker` blocked `user`? */
  isBlocked (blocker: string, user: string): Promise<boolean>
  /** Do the two share a 1:1 conversation or a group? */
  shareConversation (a: string, b: string): Promise<boolean>
}

interface Decision { visible: boolean, at: number, usedAt: number, refreshing?: boolean }

export interface PresenceVisibilityOptions {
  mode: PresenceVisibilityMode
  facts: VisibilityFacts
  /** A pair went from hidden (or unknown) to visible: send the subject's current presence again. */
  becameVisible?: (viewer: string, subject: string) => void
  /** How long a decision is used before it is checked again in the background. */
  ttlMs?: number
  now?: () => number
}

export class PresenceVisibility {
  /** viewer → subject → decision. */
  readonly #decisions = new Map<string, Map<string, Decision>>()
  readonly #mode: PresenceVisibilityMode
  readonly #facts: VisibilityFacts
  readonly #becameVisible: (viewer: string, subject: string) => void
  readonly #ttlMs: number
  readonly #now: () => number
  readonly #sweeper: NodeJS.Timeout

  constructor ({ mode, facts, becameVisible = () => {}, ttlMs = 30_000, now = Date.now }: PresenceVisibilityOptions) {
    this.#mode = mode
    this.#facts = facts
    this.#becameVisible = becameVisible
    this.#ttlMs = ttlMs
    this.#now = now
    // Decisions nobody used for a while go (bounded memory); one needed again is decided again.
    this.#sweeper = setInterval(() => this.#sweep(), 10 * ttlMs)
    this.#sweeper.unref()
  }

  /** Decides now (and caches it): the subscribe path, and REST. */
  async check (viewer: string, subject: string): Promise<boolean> {
    if (viewer === subject) return true
    let visible = !(await this.#facts.isBlocked(subject, viewer))
    if (visible && this.#mode === 'contacts') visible = await this.#facts.shareConversation(viewer, subject)
    let subjects = this.#decisions.get(viewer)
    if (subjects === undefined) this.#decisions.set(viewer, subjects = new Map())
    const now = this.#now()
    subjects.set(subject, { visible, at: now, usedAt: now })
    return visible
  }

  /**
   * The cached decision, for the forwarding path (synchronous). An unknown or
   * stale pair answers as before (unknown: hidden) while it is decided again;
   * if that makes it visible, `becameVisible` sends the presence it missed.
   */
  visible (viewer: string, subject: string): boolean {
    if (viewer === subject) return true
    const decision = this.#decisions.get(viewer)?.get(subject)
    const now = this.#now()
    if (decision !== undefined) decision.usedAt = now
    if (decision === undefined || (now - decision.at > this.#ttlMs && decision.refreshing !== true)) {
      if (decision !== undefined) decision.refreshing = true
      void this.#decideAgain(viewer, subject, decision?.visible ?? false)
    }
    return decision?.visible ?? false
  }

  /**
   * A block changed, or two users first talked: decides again, both ways, for
   * the pairs known here (a device here watches).
   */
  async reconsider (a: string, b: string): Promise<void> {
    for (const [viewer, subject] of [[a, b], [b, a]] as const) {
      const before = this.#decisions.get(viewer)?.get(subject)
      if (before !== undefined) await this.#decideAgain(viewer, subject, before.visible)
    }
  }

  async #decideAgain (viewer: string, subject: string, wasVisible: boolean): Promise<void> {
    try {
      if (await this.check(viewer, subject) && !wasVisible) this.#becameVisible(viewer, subject)
    } catch {
      // Storage unreachable: the old decision stays, and is tried again on next use.
      const decision = this.#decisions.get(viewer)?.get(subject)
      if (decision !== undefined) decision.refreshing = false
    }
  }

  #sweep (): void {
    const cutoff = this.#now() - 10 * this.#ttlMs
    for (const [viewer, subjects] of this.#decisions) {
      for (const [subject, decision] of subjects) if (decision.usedAt < cutoff) subjects.delete(subject)
      if (subjects.size === 0) this.#decisions.delete(viewer)
    }
  }

  close (): void {
    clearInterval(this.#sweeper)
  }
}
