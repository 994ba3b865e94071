// Blocking (docs/protocol.md, Blocking): the blocker stops receiving the
// blocked user's 1:1 messages and typing, and the blocked user stops seeing
// the blocker's presence. The sender is not told: their messages are kept in
// their own log only (one tick, never delivered), as in WhatsApp or Signal,
// so blocking reveals no more than a recipient who never opens the app.
// The log store withholds a blocked sender's message where it would land.
import type { BlockStore } from '../history/history-store.ts'

/** A block refused: `blocker` already blocks the most users allowed. */
export class BlockRejected extends Error {
  readonly code = 'too_many_blocks'
}

export interface BlockServiceOptions {
  blocks: BlockStore
  /** Users one user may block (0: no limit); blocking one more is refused, unblocking makes room. */
  maxBlocks?: number
  /** A block between two users changed (presence visibility is decided again, on every server process). */
  onChange?: (blocker: string, user: string) => Promise<void>
  now?: () => number
}

export class BlockService {
  readonly #blocks: BlockStore
  readonly #onChange: (blocker: string, user: string) => Promise<void>
  readonly #now: () => number
  readonly #maxBlocks: number

  constructor ({ blocks, maxBlocks = 0, onChange = async () => {}, now = Date.now }: BlockServiceOptions) {
    this.#blocks = blocks
    this.#maxBlocks = maxBlocks
    this.#onChange = onChange
    this.#now = now
  }

  /** Blocks `user` for `blocker`; blocking again keeps the first time. Returns when it took effect. Throws BlockRejected. */
  async block (blocker: string, user: string): Promise<{ user: string, since: number }> {
    const since = await this.#blocks.setBlocked(blocker, user, this.#now(), this.#maxBlocks)
    if (since === 'limit') throw new BlockRejected(`you block ${this.#maxBlocks} users, the most allowed; unblock one first`)
    await this.#onChange(blocker, user)
    return { user, since }
  }

  /** Unblocks; false when `user` was not blocked. */
  async unblock (blocker: string, user: string): Promise<boolean> {
    const removed = await this.#blocks.setUnblocked(blocker, user)
    if (removed) await this.#onChange(blocker, user)
    return removed
  }

  list (blocker: string): Promise<Array<{ user: string, since: number }>> {
    return this.#blocks.blocked(blocker)
  }

  isBlocked (blocker: string, user: string): Promise<boolean> {
    return this.#blocks.isBlocked(blocker, user)
  }
}
