// Who may see whose presence (docs/protocol.md, Presence):
//  - never someone who blocked you;
//  - with PRESENCE_VISIBILITY=contacts (the default), only users who share a
//    conversation with you: 1:1 history, or a group;
//  - with PRESENCE_VISIBILITY=all, everyone else.
// The broker must decide synchronously for each presence packet it forwards
// (Aedes' authorizeForward), so decisions are cached per (viewer, subject):
// computed when the viewer subscribes, refreshed in the background once
// older than `ttlMs`, and decided again at once when a block changes or two
// users first talk (a cluster-wide signal). Only pairs that a connection of
// this process watches are cached, and only while it does (`watch`), so the
// cache is bounded by the connections' presence subscriptions.

export type PresenceVisibilityMode = 'all' | 'contacts'

export interface VisibilityFacts {
  /** Has `blocker` blocked `user`? */
  isBlocked (blocker: string, user: string): Promise<boolean>
  /** Do the two share a 1:1 conversation or a group? */
  shareConversation (a: string, b: string): Promise<boolean>
}

interface Decision { visible: boolean, at: number, refreshing?: boolean }

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
  /** viewer → subject → decision, for watched pairs only. */
  readonly #decisions = new Map<string, Map<string, Decision>>()
  /** viewer → subject → how many connections here watch it. */
  readonly #watchers = new Map<string, Map<string, number>>()
  readonly #mode: PresenceVisibilityMode
  readonly #facts: VisibilityFacts
  readonly #becameVisible: (viewer: string, subject: string) => void
  readonly #ttlMs: number
  readonly #now: () => number

  constructor ({ mode, facts, becameVisible = () => {}, ttlMs = 30_000, now = Date.now }: PresenceVisibilityOptions) {
    this.#mode = mode
    this.#facts = facts
    this.#becameVisible = becameVisible
    this.#ttlMs = ttlMs
    this.#now = now
  }

  /** A connection here subscribed to `subject`'s presence: its decision is kept from now on. */
  watch (viewer: string, subject: string): void {
    let subjects = this.#watchers.get(viewer)
    if (subjects === undefined) this.#watchers.set(viewer, subjects = new Map())
    subjects.set(subject, (subjects.get(subject) ?? 0) + 1)
  }

  /** That subscription ended (unsubscribed, or the connection closed): the last one drops the decision. */
  unwatch (viewer: string, subject: string): void {
    const subjects = this.#watchers.get(viewer)
    const count = subjects?.get(subject)
    if (subjects === undefined || count === undefined) return
    if (count > 1) return void subjects.set(subject, count - 1)
    subjects.delete(subject)
    if (subjects.size === 0) this.#watchers.delete(viewer)
    const decisions = this.#decisions.get(viewer)
    decisions?.delete(subject)
    if (decisions?.size === 0) this.#decisions.delete(viewer)
  }

  /** Decides now: the subscribe path (after `watch`, so it is cached), and REST (not cached). */
  async check (viewer: string, subject: string): Promise<boolean> {
    if (viewer === subject) return true
    let visible = !(await this.#facts.isBlocked(subject, viewer))
    if (visible && this.#mode === 'contacts') visible = await this.#facts.shareConversation(viewer, subject)
    // Watched now, not just when asked: an unwatch meanwhile leaves nothing behind.
    if (this.#watchers.get(viewer)?.has(subject) !== true) return visible
    let subjects = this.#decisions.get(viewer)
    if (subjects === undefined) this.#decisions.set(viewer, subjects = new Map())
    subjects.set(subject, { visible, at: this.#now() })
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

  close (): void {
    this.#decisions.clear()
    this.#watchers.clear()
  }
}
