// Users whose keys live where a cluster test needs them: every key of a user
// carries the hash tag `{u:<user>}` (storage/redis-keys.ts), so the user's
// slot, and the primary serving it, follow from the tag alone.
import { ownerKey, slotOf, userTag } from '../../storage/redis-keys.ts'
import type { OwnCluster } from './redis-cluster.ts'
import { uniqueUser } from './tokens.ts'

/** A key in `user`'s slot (the family and name do not matter: the tag decides). */
export const keyOfUser = (user: string): string => ownerKey('h', userTag(user), 'seq')
export const slotOfUser = (user: string): number => slotOf(keyOfUser(user))

/** One new user per name, all served by one primary (the first user's, or `primary`). */
export async function usersOnOnePrimary (cluster: OwnCluster, names: string[], primary?: number): Promise<{ users: string[], primary: number }> {
  const users: string[] = []
  for (const name of names) {
    for (let tries = 0; ; tries++) {
      if (tries > 200) throw new Error(`no ${name} found on ${primary ?? 'one primary'}`)
      const user = uniqueUser(name)
      const port = await cluster.primaryOf(keyOfUser(user))
      primary ??= port
      if (port === primary) { users.push(user); break }
    }
  }
  return { users, primary: primary! }
}
