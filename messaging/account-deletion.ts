// Account deletion (issue #21: "DELETE of a user's data removes it from both
// tiers"). In order:
//   1. refused, with nothing done, while the user owns a group with other
//      members (the owner hands over first, as for a leave);
//   2. every token of the user issued until now is revoked and their live
//      connections are cut (POST /v1/admin/revoke's semantics: a token issued
//      after this second works, for a new, empty account of that name);
//   3. the user leaves each of their groups (a `member_removed` event, reason
//      `left`, as if they had left themselves); the group logs keep what they
//      sent there: that is the group's history, as a peer's copy of a 1:1
//      message is the peer's;
//   4. their push registrations, published key and uploads (attachments) go;
//   5. their own log goes from the hot tier, then from the archive.
//
// The archiver could undo 5: a batch that read the user's events before the
// hot log lost them writes them back to the archive after the archive lost
// them, and moves the archive mark of the new, empty log past events it never
// archived. So 5 runs with this process's archiver paused: pause() returns
// once its round (and any batch in flight) is done, and it resumes after.
// In embedded mode that is the only archiver: the deletion is then exact. In
// Redis mode another process may hold the lease; a batch of its, in flight at
// the deletion, has landed `settleMs` later (a batch is one read and one
// write). Then the archive must hold nothing past the new log's head, nor the
// mark point past it; if it does, 5 runs again (which also takes what the new
// log received in between: it only happens when a stale batch landed).
import type { HotLogStore } from '../history/history-store.ts'
import type { GroupStore } from '../history/group-store.ts'
import type { ArchiveSource } from '../history/archive-source.ts'
import type { ArchiveStore } from '../archive/archive-store.ts'
import type { Revocations } from '../auth/revocations.ts'
import type { KeyDirectory } from '../keys/key-directory.ts'
import type { MlsKeyPackageStore } from '../keys/mls-key-packages.ts'
import type { DeviceRegistry } from '../push/device-registry.ts'
import { GroupRejected, type GroupService } from './group-service.ts'

/** Redis mode: how long after a deletion it is checked for a stale archiver batch of another process. */
export const SETTLE_MS = 15_000

/** Refused before anything was done: the user owns these groups, which have other members. */
export class AccountDeletionRefused extends Error {
  readonly code = 'owner_must_hand_over'
  constructor (readonly groups: string[]) {
    super(`the user owns groups with other members (${groups.join(', ')}): make another member the owner of each first`)
  }
}

export interface AccountDeletionOptions {
  /** The hot tier's log store (not the tiered view: each tier is reached itself). */
  hot: Pick<HotLogStore, 'deleteUser' | 'head' | 'relayed'>
  /** The long-term tier, when there is one. */
  archive?: Pick<ArchiveStore, 'deleteUser' | 'archivedSeq'>
  /** The archive marks the hot tier keeps (what a stale batch would move). */
  archiveMarks?: Pick<ArchiveSource, 'archivedUpTo'>
  /** This process's archiver, stopped while a log is deleted. */
  archiver?: { pause (): Promise<void>, resume (): void }
  /** 0: no later check (embedded mode: this process's archiver is the only one). */
  settleMs?: number
  groups: Pick<GroupStore, 'groupsOf' | 'getGroup'>
  groupService: Pick<GroupService, 'removeMember'>
  revocations: Pick<Revocations, 'revokeUser'>
  /** Cuts the user's live connections on every process. */
  kick: (user: string) => Promise<void>
  devices?: Pick<DeviceRegistry, 'list' | 'remove'>
  /** The published end-to-end key (keys/key-directory.ts). */
  keys?: Pick<KeyDirectory, 'remove'>
  /** The user's MLS KeyPackages (keys/mls-key-packages.ts). */
  mlsKeyPackages?: Pick<MlsKeyPackageStore, 'removeUser'>
  /** The user's uploads (attachments/attachment-service.ts), collected whoever they were shared with. */
  attachments?: { forgetOwner (user: string): Promise<number> }
  /** The later check deleted the logs again (a stale archiver batch had landed), or failed. */
  onSettled?: (user: string, outcome: 'clean' | 'deleted_again') => void
  onError?: (error: unknown) => void
  now?: () => number
}

export interface DeletedAccount {
  user: string
  /** The groups the user left. */
  groupsLeft: string[]
  devicesRemoved: number
}

export class AccountDeletion {
  readonly #options: AccountDeletionOptions
  readonly #timers = new Set<NodeJS.Timeout>()
  /** Deletions running with the archiver stopped; it starts again when the last ends. */
  #pausers = 0
  #stopped: Promise<void> = Promise.resolve()
  #closed = false

  constructor (options: AccountDeletionOptions) {
    this.#options = options
  }

  async deleteAccount (user: string): Promise<DeletedAccount> {
    const { groups, groupService, revocations, kick, devices, hot, now = Date.now } = this.#options
    const memberOf = await groups.groupsOf(user)
    const owned: string[] = []
    for (const id of memberOf) {
      const group = await groups.getGroup(id)
      if (group?.members.get(user) === 'owner' && group.members.size > 1) owned.push(id)
    }
    if (owned.length > 0) throw new AccountDeletionRefused(owned)

    // Tokens issued in this very second are refused too (as for every revocation).
    await revocations.revokeUser(user, Math.floor(now() / 1000))
    await kick(user)

    const groupsLeft: string[] = []
    for (const id of memberOf) {
      try {
        await groupService.removeMember(user, id, user)
        groupsLeft.push(id)
      } catch (error) {
        // Left or removed meanwhile: nothing to do.
        if (!(error instanceof GroupRejected && (error.code === 'member_not_found' || error.code === 'group_not_found'))) throw error
      }
    }

    let devicesRemoved = 0
    for (const device of await devices?.list(user) ?? []) {
      if (await devices!.remove(user, device.deviceId)) devicesRemoved++
    }

    await this.#options.keys?.remove(user)
    await this.#options.mlsKeyPackages?.removeUser(user)
    await this.#options.attachments?.forgetOwner(user)

    // What this process still relays from the user's outbox lands before the outbox goes.
    await hot.relayed()
    await this.#deleteLogs(user)
    this.#settleLater(user)
    return { user, groupsLeft, devicesRemoved }
  }

  /** Both tiers, the hot one first (the archiver reads it), with this process's archiver stopped. */
  async #deleteLogs (user: string): Promise<void> {
    const { hot, archive, archiver } = this.#options
    if (archiver !== undefined && this.#pausers++ === 0) this.#stopped = archiver.pause()
    try {
      await this.#stopped
      await hot.deleteUser(user)
      await archive?.deleteUser(user)
    } finally {
      if (archiver !== undefined && --this.#pausers === 0 && !this.#closed) archiver.resume()
    }
  }

  #settleLater (user: string): void {
    const { settleMs = 0, archive, onError = () => {} } = this.#options
    if (settleMs <= 0 || archive === undefined || this.#closed) return
    const timer = setTimeout(() => {
      this.#timers.delete(timer)
      this.settle(user).catch(onError)
    }, settleMs)
    timer.unref()
    this.#timers.add(timer)
  }

  /**
   * The check after a deletion: the archive holds nothing past the user's head and the
   * mark points at most at it, unless a stale archiver batch landed: then the logs go again.
   */
  async settle (user: string): Promise<'clean' | 'deleted_again'> {
    const { hot, archive, archiveMarks, onSettled = () => {} } = this.#options
    const head = await hot.head(user)
    const [archived, marked] = await Promise.all([archive?.archivedSeq(user) ?? 0, archiveMarks?.archivedUpTo(`u:${user}`) ?? 0])
    const outcome = archived > head || marked > head ? 'deleted_again' : 'clean'
    if (outcome === 'deleted_again') await this.#deleteLogs(user)
    onSettled(user, outcome)
    return outcome
  }

  /** Later checks are dropped, and the archiver is not started again. */
  close (): void {
    this.#closed = true
    for (const timer of this.#timers) clearTimeout(timer)
    this.#timers.clear()
  }
}
