// Logout and revocation. A token can be refused in three ways, all checked
// on every CONNECT and every REST request:
//   - this token (logout of one session): by the SHA-256 of the token, kept
//     until the token would have expired anyway;
//   - every token of a user issued until a mark (logout everywhere, or an
//     admin revoking a user): the token's `iat` (seconds) is at or below it;
//   - a device (admin): MQTT connections of `<user>:<device>` with a token
//     issued before the mark. (REST calls carry no device; revoke the user.)
// The marks live in Redis (or LevelDB embedded), so restarts and other
// processes see them; cutting live connections is broker/kick.ts's job
// (told through storage/cluster-signal.ts: classic pub/sub, which a Redis
// Cluster broadcasts to every node; a lost kick is caught at the next CONNECT).
import { createHash } from 'node:crypto'
import type { RedisClient } from '../storage/redis-client.ts'
import { ownerKey, userTag } from '../storage/redis-keys.ts'
import { isCluster } from '../storage/redis-connection.ts'
import { ClassicLevel } from 'classic-level'

/** Tokens without `exp` are remembered as revoked this long. */
const NO_EXP_KEEP_SECONDS = 30 * 24 * 3600

export interface TokenFacts {
  token: string
  sub: string
  /** Issued at, seconds; a token without it counts as issued at 0 (before any mark). */
  iat?: number
  exp?: number
}

export interface Revocations {
  /** True when the token must be refused (for `device`, if given: an MQTT connection). */
  isRevoked (facts: TokenFacts, device?: string): Promise<boolean>
  revokeToken (facts: TokenFacts): Promise<void>
  /** Refuses every token of `user` issued before `at` (seconds). */
  revokeUser (user: string, at: number): Promise<void>
  revokeDevice (user: string, device: string, at: number): Promise<void>
  close (): Promise<void>
}

export function tokenHash (token: string): string {
  return createHash('sha256').update(token).digest('base64url')
}

// `iat` has one-second resolution: a token issued in the mark's own second is
// refused too (safer than letting one issued just before the mark through).
const issuedBefore = (facts: TokenFacts, mark: string | null | undefined): boolean => mark !== null && mark !== undefined && (facts.iat ?? 0) <= Number(mark)

// Redis keys, on the user's own slot (so one MGET reads them on a cluster too):
//   inboxd:rv:{u:<user>}:t:<sha256 of the token>   a logged-out token, until it expires
//   inboxd:rv:{u:<user>}:u                         the user's mark (seconds)
//   inboxd:rv:{u:<user>}:d:<device>                a device's mark (seconds)
const tokenKey = (facts: TokenFacts): string => ownerKey('rv', userTag(facts.sub), `t:${tokenHash(facts.token)}`)
const userKey = (user: string): string => ownerKey('rv', userTag(user), 'u')
const deviceKey = (user: string, device: string): string => ownerKey('rv', userTag(user), `d:${device}`)

/** The names before #20 (one Redis): still read with `legacy`, so an upgrade revives no revoked token. */
const LEGACY = 'inboxd:rv:'
const legacyKeys = (facts: TokenFacts, device?: string): string[] =>
  [`${LEGACY}t:${tokenHash(facts.token)}`, `${LEGACY}u:${facts.sub}`, ...(device === undefined ? [] : [`${LEGACY}d:${facts.sub}:${device}`])]

export interface RedisRevocationsOptions {
  /** Also read the old names (in the same MGET): by default on one Redis, which may hold them; never on a cluster. */
  legacy?: boolean
}

export class RedisRevocations implements Revocations {
  readonly #legacy: boolean

  constructor (private readonly redis: RedisClient, options: RedisRevocationsOptions = {}) {
    this.#legacy = options.legacy ?? !isCluster(redis)
  }

  async isRevoked (facts: TokenFacts, device?: string): Promise<boolean> {
    const keys = [tokenKey(facts), userKey(facts.sub), ...(device === undefined ? [] : [deviceKey(facts.sub, device)])]
    const marks = await this.redis.mget(...keys, ...(this.#legacy ? legacyKeys(facts, device) : []))
    for (let i = 0; i < marks.length; i += keys.length) {
      const [token, user, deviceMark] = marks.slice(i, i + keys.length)
      if (token !== null || issuedBefore(facts, user) || issuedBefore(facts, deviceMark)) return true
    }
    return false
  }

  async revokeToken (facts: TokenFacts): Promise<void> {
    const ttl = facts.exp === undefined ? NO_EXP_KEEP_SECONDS : Math.max(1, facts.exp - Math.floor(Date.now() / 1000))
    await this.redis.set(tokenKey(facts), '1', 'EX', ttl)
  }

  async revokeUser (user: string, at: number): Promise<void> {
    await this.redis.set(userKey(user), String(at))
  }

  async revokeDevice (user: string, device: string, at: number): Promise<void> {
    await this.redis.set(deviceKey(user, device), String(at))
  }

  async close (): Promise<void> {}
}

export class LevelRevocations implements Revocations {
  private constructor (private readonly db: ClassicLevel<string, string>, private readonly write: { sync: boolean }) {}

  /** `sync`: fsync each revocation before it is acknowledged (DURABILITY=disk), so a power cut cannot undo it. */
  static async open (path: string, options: { sync?: boolean } = {}): Promise<LevelRevocations> {
    const db = new ClassicLevel<string, string>(path, { valueEncoding: 'utf8' })
    await db.open()
    return new LevelRevocations(db, { sync: options.sync ?? false })
  }

  async isRevoked (facts: TokenFacts, device?: string): Promise<boolean> {
    const keys = [`t!${tokenHash(facts.token)}`, `u!${facts.sub}`]
    if (device !== undefined) keys.push(`d!${facts.sub}!${device}`)
    const [until, user, deviceMark] = await this.db.getMany(keys)
    return (until !== undefined && Number(until) > Date.now()) || issuedBefore(facts, user) || issuedBefore(facts, deviceMark)
  }

  async revokeToken (facts: TokenFacts): Promise<void> {
    const until = facts.exp === undefined ? Date.now() + NO_EXP_KEEP_SECONDS * 1000 : facts.exp * 1000
    await this.db.put(`t!${tokenHash(facts.token)}`, String(until), this.write)
  }

  async revokeUser (user: string, at: number): Promise<void> {
    await this.db.put(`u!${user}`, String(at), this.write)
  }

  async revokeDevice (user: string, device: string, at: number): Promise<void> {
    await this.db.put(`d!${user}!${device}`, String(at), this.write)
  }

  async close (): Promise<void> {
    await this.db.close()
  }
}
