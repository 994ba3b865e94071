// A tus Locker for several server processes (Redis mode): only one request at
// a time may read or write an upload, whichever process it reaches. A phone
// that lost its network resumes (HEAD, then PATCH) on any process while the
// old PATCH may still be running on another: the newcomer asks every process
// (ClusterSignal) to end that request, which then stores what it received and
// unlocks, so the HEAD reports the true offset and the writes never overlap.
// The lock is `inboxd:att:{a:<id>}:lock` (SET NX PX with a token, renewed
// while held), so a process that dies holding it frees it within LEASE_MS.
import { randomBytes } from 'node:crypto'
import type { Lock, Locker, RequestRelease } from '@tus/utils'
import type { RedisClient } from '../storage/redis-client.ts'
import type { ClusterSignal } from '../storage/cluster-signal.ts'
import { attachmentTag, ownerKey } from '../storage/redis-keys.ts'

const LEASE_MS = 30_000
const RETRY_MS = 50
/** How long a request waits for a lock before tus answers it 500 (ERR_LOCK_TIMEOUT). */
const ACQUIRE_TIMEOUT_MS = 20_000
const UNLOCK = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`
const RENEW = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0`

const lockKey = (id: string): string => ownerKey('att', attachmentTag(id), 'lock')

export class RedisUploadLocker implements Locker {
  /** Locks this process holds: upload id → how to ask its request to end. */
  readonly held = new Map<string, RequestRelease>()

  constructor (readonly redis: RedisClient, readonly signal: ClusterSignal) {
    signal.listen((message) => {
      if (message.type !== 'upload-release' || typeof message.id !== 'string') return
      const release = this.held.get(message.id)
      if (release !== undefined) Promise.resolve(release()).catch(() => {})
    })
  }

  newLock (id: string): Lock { return new RedisUploadLock(this, id) }
}

class RedisUploadLock implements Lock {
  readonly #token = randomBytes(12).toString('base64url')
  #renew: NodeJS.Timeout | undefined

  constructor (private readonly locker: RedisUploadLocker, private readonly id: string) {}

  async lock (stop: AbortSignal, requestRelease: RequestRelease): Promise<void> {
    const key = lockKey(this.id)
    let askedAt = 0
    for (const deadline = Date.now() + ACQUIRE_TIMEOUT_MS; ;) {
      if (await this.locker.redis.set(key, this.#token, 'PX', LEASE_MS, 'NX') === 'OK') break
      if (stop.aborted || Date.now() > deadline) throw Object.assign(new Error('the upload is locked by another request'), { status_code: 500, body: 'ERR_LOCK_TIMEOUT\n' })
      // Asked again each second: the holder may have taken the lock just before it listened for this.
      if (Date.now() - askedAt > 1_000) {
        askedAt = Date.now()
        await this.locker.signal.send({ type: 'upload-release', id: this.id })
      }
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS))
    }
    this.locker.held.set(this.id, requestRelease)
    this.#renew = setInterval(() => { this.locker.redis.eval(RENEW, 1, key, this.#token, LEASE_MS).catch(() => {}) }, LEASE_MS / 3)
    this.#renew.unref()
  }

  async unlock (): Promise<void> {
    clearInterval(this.#renew)
    this.locker.held.delete(this.id)
    await this.locker.redis.eval(UNLOCK, 1, lockKey(this.id), this.#token)
  }
}
