// Attachments, independent of HTTP and MQTT: who may upload how much, who may
// reference and read what, links that expire, and collection. A message names
// its attachments by id; at send the sender must be able to read each one (their
// own upload, or one shared with them: forwarding), and the conversation is
// granted read access (the 1:1 peer, or the group's current members).
// Uploads nothing references within the orphan age, unfinished ones included,
// are collected; referenced ones are kept for the history's retention after
// their last reference (and forever when history is).
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { PublishRejected } from '../protocol/errors.ts'
import type { AttachmentRef, AttachmentRequest } from '../protocol/attachments.ts'
import type { AttachmentMetaStore, AttachmentRecord, Grant } from './attachment-meta.ts'
import type { AttachmentBytes } from './attachment-bytes.ts'
import type { Locker } from '@tus/utils'

export interface AttachmentLimits {
  /** Largest upload, bytes. */
  maxUploadBytes: number
  /** Bytes of attachments one user may hold, collected ones excluded (0: no quota). */
  quotaBytes: number
  /** How long a download link works. */
  linkTtlSeconds: number
  /** Uploads (finished or not) that no message references by this age are collected. */
  orphanMs: number
  /** Referenced attachments are kept this long after their last reference (0: forever). */
  retentionMs: number
  /** Conversations (users and groups) one attachment may be shared with. */
  maxGrants: number
  /** How often this process collects (0: never). */
  sweepMs: number
}

export type UploadRefusal = { code: 'upload_too_large' | 'quota_exceeded', message: string }

export type Download =
  | { kind: 'link', url: string, expiresAt: number, record: AttachmentRecord }

export interface AttachmentServiceOptions {
  meta: AttachmentMetaStore
  bytes: AttachmentBytes
  /** Several server processes (Redis mode): one upload's requests one at a time across them. Unset: tus' in-process locker. */
  locker?: Locker
  limits: AttachmentLimits
  /** Whether the user is a current member of the group. */
  isMember: (user: string, group: string) => Promise<boolean>
  now?: () => number
  onError?: (error: unknown) => void
}

/** Attachments per sweep round. */
const SWEEP_BATCH = 100

export class AttachmentService {
  readonly limits: AttachmentLimits
  readonly bytes: AttachmentBytes
  readonly locker: Locker | undefined
  readonly #meta: AttachmentMetaStore
  readonly #isMember: AttachmentServiceOptions['isMember']
  readonly #now: () => number
  readonly #onError: (error: unknown) => void
  /** Signs the server's own download links (disk): a restart ends the links it gave. */
  readonly #linkKey = randomBytes(32)
  #sweeper: NodeJS.Timeout | undefined
  #sweeping: Promise<unknown> = Promise.resolve()

  constructor ({ meta, bytes, locker, limits, isMember, now = Date.now, onError = () => {} }: AttachmentServiceOptions) {
    this.#meta = meta
    this.locker = locker
    this.bytes = bytes
    this.limits = limits
    this.#isMember = isMember
    this.#now = now
    this.#onError = onError
  }

  /** Before an upload is created: refuses what is over the size limit or, at this moment, the quota. */
  async checkUpload (owner: string, size: number): Promise<UploadRefusal | undefined> {
    if (size > this.limits.maxUploadBytes) return { code: 'upload_too_large', message: `the upload is ${size} bytes; the limit is ${this.limits.maxUploadBytes}` }
    if (this.limits.quotaBytes > 0) {
      const used = await this.#meta.usage(owner)
      if (used + size > this.limits.quotaBytes) return quotaRefusal(used, size, this.limits.quotaBytes)
    }
    return undefined
  }

  /** Records the upload and counts it against the quota (atomically: a concurrent upload cannot both fit). */
  async beginUpload (owner: string, id: string, size: number, type: string): Promise<UploadRefusal | undefined> {
    const now = this.#now()
    const outcome = await this.#meta.create({ id, owner, size, type, createdAt: now, expiresAt: now + this.limits.orphanMs }, this.limits.quotaBytes)
    if (outcome === 'quota_exceeded') return quotaRefusal(await this.#meta.usage(owner), size, this.limits.quotaBytes)
    if (outcome === 'exists') throw new Error(`upload id ${id} exists`)
    return undefined
  }

  async finishUpload (id: string): Promise<void> { await this.#meta.complete(id) }

  /** Only the uploader may resume (HEAD, PATCH) an upload. */
  async isOwnUpload (user: string, id: string): Promise<boolean> {
    return (await this.#meta.get(id))?.owner === user
  }

  /**
   * Checks a message's attachments and grants its conversation read access;
   * returns the references as the envelope carries them (size and type from
   * the upload). Throws PublishRejected('invalid_attachment').
   */
  async reference (from: string, to: Grant, requests: AttachmentRequest[], messageId: string): Promise<AttachmentRef[]> {
    const refs: AttachmentRef[] = []
    const expiresAt = this.limits.retentionMs === 0 ? 0 : this.#now() + this.limits.retentionMs
    for (const { id, thumbnail } of requests) {
      const record = await this.readable(from, id)
      if (record === undefined) throw new PublishRejected('invalid_attachment', `attachment "${id}" is not an upload of yours or one shared with you, or its upload has not finished`, messageId)
      const outcome = await this.#meta.grant(id, to, expiresAt, this.limits.maxGrants)
      if (outcome === 'not_found') throw new PublishRejected('invalid_attachment', `attachment "${id}" is gone`, messageId)
      if (outcome === 'too_many_grants') throw new PublishRejected('invalid_attachment', `attachment "${id}" is already shared in ${this.limits.maxGrants} conversations; upload it again`, messageId)
      refs.push(thumbnail === undefined ? { id, size: record.size, type: record.type } : { id, size: record.size, type: record.type, thumbnail })
    }
    return refs
  }

  /** The attachment if `user` may read it (its uploader, a peer it was sent to, a current member of a group it was sent to) and it is complete. */
  async readable (user: string, id: string): Promise<AttachmentRecord | undefined> {
    const record = await this.#meta.get(id)
    if (record?.complete !== true) return undefined
    if (record.owner === user || record.users.includes(user)) return record
    for (const group of record.groups) if (await this.#isMember(user, group)) return record
    return undefined
  }

  /** A link to the bytes for `user`, which expires; undefined for anyone who may not read it (never saying whether it exists). */
  async download (user: string, id: string): Promise<Download | undefined> {
    const record = await this.readable(user, id)
    if (record === undefined) return undefined
    const ttl = this.limits.linkTtlSeconds
    // A presigned URL counts from its signing time in whole seconds: the expiry said is never later than the real one.
    const expiresAt = Math.floor(this.#now() / 1000) * 1000 + ttl * 1000
    const url = await this.bytes.link(id, ttl, record.type) ?? `/files/${id}?expires=${expiresAt}&sig=${this.#sign(id, expiresAt)}`
    return { kind: 'link', url, expiresAt, record }
  }

  /** The bytes behind one of this server's own links, while it is valid. */
  async content (id: string, expires: number, signature: string): Promise<{ record: AttachmentRecord, bytes: NonNullable<Awaited<ReturnType<AttachmentBytes['read']>>> } | 'expired' | undefined> {
    const expected = Buffer.from(this.#sign(id, expires))
    const given = Buffer.from(signature)
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) return undefined
    if (expires < this.#now()) return 'expired'
    const record = await this.#meta.get(id)
    if (record?.complete !== true) return undefined
    const bytes = await this.bytes.read(id)
    return bytes === undefined ? undefined : { record, bytes }
  }

  #sign (id: string, expires: number): string {
    return createHmac('sha256', this.#linkKey).update(`${id}.${expires}`).digest('base64url')
  }

  /** Account deletion: every upload of the user goes at the next sweep (started now), whoever it was shared with. */
  async forgetOwner (user: string): Promise<number> {
    const count = await this.#meta.expireOwner(user, this.#now())
    this.sweep().catch(this.#onError)
    return count
  }

  /** Collects what expired: bytes first gone from the quota, then from storage, then from the index. Returns how many. */
  async sweep (): Promise<number> {
    const run = this.#sweeping.then(async () => {
      let removed = 0
      for (const entry of await this.#meta.expired(this.#now(), SWEEP_BATCH)) {
        if (await this.#meta.remove(entry, this.#now()) === 'alive') continue
        await this.bytes.remove(entry.id)
        await this.#meta.unindex(entry)
        removed++
      }
      return removed
    })
    this.#sweeping = run.catch(() => {})
    return await run
  }

  start (): void {
    if (this.limits.sweepMs <= 0) return
    this.#sweeper = setInterval(() => { this.sweep().catch(this.#onError) }, this.limits.sweepMs)
    this.#sweeper.unref()
  }

  async close (): Promise<void> {
    clearInterval(this.#sweeper)
    await this.#sweeping
    await this.#meta.close()
    this.bytes.close()
  }
}

function quotaRefusal (used: number, size: number, quota: number): UploadRefusal {
  return { code: 'quota_exceeded', message: `the upload is ${size} bytes and you hold ${used} of your ${quota}; wait for unused uploads to be collected, or upload less` }
}
