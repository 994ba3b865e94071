// What the server knows about each uploaded file (not its bytes: those are
// in an AttachmentBytes): its owner, size, type, whether the upload finished,
// which conversations may read it, and when it may be collected. One
// interface, one conformance suite (test/attachment-store.conformance.test.ts),
// kept where the mode keeps its data: LevelDB, or Redis on the attachment's
// own keys (`{a:<id>}`) and its owner's quota on theirs (`{u:<user>}`).

export interface NewAttachment {
  id: string
  owner: string
  size: number
  type: string
  createdAt: number
  /** When it may be collected if nothing references it by then (an orphan, or an upload never finished). */
  expiresAt: number
}

export interface AttachmentRecord extends NewAttachment {
  complete: boolean
  /** Users granted read access (1:1 peers); the owner always may. */
  users: string[]
  /** Groups whose current members may read it. */
  groups: string[]
}

/** A read grant: to a 1:1 peer, or to a group's current members. */
export type Grant = { user: string } | { group: string }

/** An entry of the collection index. */
export interface Expiring { id: string, owner: string, at: number }

export type CreateOutcome = 'created' | 'exists' | 'quota_exceeded'
export type GrantOutcome = 'granted' | 'not_found' | 'too_many_grants'

export interface AttachmentMetaStore {
  /** Records a new upload and counts its size against the owner's quota (0: no quota), in one step: over it, nothing is written. */
  create (attachment: NewAttachment, quotaBytes: number): Promise<CreateOutcome>
  get (id: string): Promise<AttachmentRecord | undefined>
  /** The upload finished: every byte is stored. False when there is no such attachment. */
  complete (id: string): Promise<boolean>
  /**
   * Grants read access and moves the expiry to `expiresAt` (0: never) if that
   * is later. At most `maxGrants` users and groups per attachment.
   */
  grant (id: string, grant: Grant, expiresAt: number, maxGrants: number): Promise<GrantOutcome>
  /** Makes every attachment of the owner expire at `now` (account deletion: the sweep collects them). Returns how many. */
  expireOwner (owner: string, now: number): Promise<number>
  /** Bytes of the owner's attachments not collected yet (finished or not). */
  usage (owner: string): Promise<number>
  /** Up to `limit` entries of the collection index whose expiry is at or before `now` (candidates: `remove` decides). */
  expired (now: number, limit: number): Promise<Expiring[]>
  /**
   * Removes the record if its expiry is still at or before `now` and releases
   * its bytes from the owner's quota: `removed` (also when it was gone
   * already: a collection cut short is finished by the next). `alive` when a
   * grant moved its expiry (the index entry is moved too). The index entry of
   * a removed one stays until `unindex`, once its bytes are gone.
   */
  remove (entry: Expiring, now: number): Promise<'removed' | 'alive'>
  unindex (entry: Expiring): Promise<void>
  close (): Promise<void>
}
