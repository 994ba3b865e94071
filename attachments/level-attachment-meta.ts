// Embedded mode's attachment records, in a LevelDB of their own under
// DATA_DIR: `a!<id>` the record, `q!<owner>` the owner's bytes in use, `o!<owner>!<id>` what each owns,
// `x!<expiresAt, 15 digits>!<owner>!<id>` the collection index. One process, so each
// read-modify-write runs alone (a promise chain) and writes one batch.
import { ClassicLevel } from 'classic-level'
import type { AttachmentMetaStore, AttachmentRecord, CreateOutcome, Expiring, Grant, GrantOutcome, NewAttachment } from './attachment-meta.ts'

const expiryKey = (at: number, owner: string, id: string): string => `x!${String(at).padStart(15, '0')}!${owner}!${id}`

export class LevelAttachmentMeta implements AttachmentMetaStore {
  #queue: Promise<unknown> = Promise.resolve()

  constructor (private readonly db: ClassicLevel<string, string>, private readonly write: { sync: boolean }) {}

  static async open (path: string, options: { sync?: boolean } = {}): Promise<LevelAttachmentMeta> {
    const db = new ClassicLevel<string, string>(path, { valueEncoding: 'utf8' })
    await db.open()
    return new LevelAttachmentMeta(db, { sync: options.sync ?? false })
  }

  #alone<T> (work: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(work, work)
    this.#queue = run.catch(() => {})
    return run
  }

  async #record (id: string): Promise<AttachmentRecord | undefined> {
    const json = await this.db.get(`a!${id}`)
    return json === undefined ? undefined : JSON.parse(json) as AttachmentRecord
  }

  async #usage (owner: string): Promise<number> { return Number(await this.db.get(`q!${owner}`) ?? 0) }

  create (attachment: NewAttachment, quotaBytes: number): Promise<CreateOutcome> {
    return this.#alone(async () => {
      if (await this.#record(attachment.id) !== undefined) return 'exists'
      const used = await this.#usage(attachment.owner)
      if (quotaBytes > 0 && used + attachment.size > quotaBytes) return 'quota_exceeded'
      const record: AttachmentRecord = { ...attachment, complete: false, users: [], groups: [] }
      await this.db.batch()
        .put(`a!${attachment.id}`, JSON.stringify(record))
        .put(`q!${attachment.owner}`, String(used + attachment.size))
        .put(`o!${attachment.owner}!${attachment.id}`, '')
        .put(expiryKey(attachment.expiresAt, attachment.owner, attachment.id), '')
        .write(this.write)
      return 'created'
    })
  }

  get (id: string): Promise<AttachmentRecord | undefined> { return this.#record(id) }

  complete (id: string): Promise<boolean> {
    return this.#alone(async () => {
      const record = await this.#record(id)
      if (record === undefined) return false
      await this.db.put(`a!${id}`, JSON.stringify({ ...record, complete: true }), this.write)
      return true
    })
  }

  grant (id: string, grant: Grant, expiresAt: number, maxGrants: number): Promise<GrantOutcome> {
    return this.#alone(async () => {
      const record = await this.#record(id)
      if (record === undefined) return 'not_found'
      const [list, name] = 'user' in grant ? [record.users, grant.user] : [record.groups, grant.group]
      if (!list.includes(name)) {
        if (record.users.length + record.groups.length >= maxGrants) return 'too_many_grants'
        list.push(name)
      }
      const batch = this.db.batch()
      const later = record.expiresAt !== 0 && (expiresAt === 0 || expiresAt > record.expiresAt)
      if (later) {
        batch.del(expiryKey(record.expiresAt, record.owner, id))
        if (expiresAt !== 0) batch.put(expiryKey(expiresAt, record.owner, id), '')
        record.expiresAt = expiresAt
      }
      await batch.put(`a!${id}`, JSON.stringify(record)).write(this.write)
      return 'granted'
    })
  }

  expireOwner (owner: string, now: number): Promise<number> {
    return this.#alone(async () => {
      let count = 0
      for await (const key of this.db.keys({ gt: `o!${owner}!`, lt: `o!${owner}!~` })) {
        const id = key.slice(key.lastIndexOf('!') + 1)
        const record = await this.#record(id)
        if (record === undefined) continue
        const batch = this.db.batch()
        if (record.expiresAt !== 0) batch.del(expiryKey(record.expiresAt, owner, id))
        await batch.put(expiryKey(now, owner, id), '').put(`a!${id}`, JSON.stringify({ ...record, expiresAt: now })).write(this.write)
        count++
      }
      return count
    })
  }

  usage (owner: string): Promise<number> { return this.#usage(owner) }

  async expired (now: number, limit: number): Promise<Expiring[]> {
    const entries: Expiring[] = []
    for await (const key of this.db.keys({ gt: 'x!', lte: expiryKey(now, '~', '~'), limit })) {
      const [, at, owner, id] = key.split('!')
      entries.push({ id: id!, owner: owner!, at: Number(at) })
    }
    return entries
  }

  remove (entry: Expiring, now: number): Promise<'removed' | 'alive'> {
    return this.#alone(async () => {
      const record = await this.#record(entry.id)
      if (record === undefined) return 'removed'
      if (record.expiresAt === 0 || record.expiresAt > now) {
        // A grant moved it (and its index entry, in the same batch).
        if (record.expiresAt !== entry.at) await this.db.del(expiryKey(entry.at, entry.owner, entry.id), this.write)
        return 'alive'
      }
      const used = await this.#usage(record.owner)
      await this.db.batch()
        .del(`a!${entry.id}`)
        .del(`o!${record.owner}!${entry.id}`)
        .put(`q!${record.owner}`, String(Math.max(0, used - record.size)))
        .write(this.write)
      return 'removed'
    })
  }

  async unindex (entry: Expiring): Promise<void> { await this.db.del(expiryKey(entry.at, entry.owner, entry.id), this.write) }

  async close (): Promise<void> {
    await this.#queue
    await this.db.close()
  }
}
