// Connections at scale, from several 127.0.0.x source addresses (one source
// address allows only ~28k connections to one port).
import { RawClient } from '../raw-client.ts'
import type { Profile } from '../profile.ts'

export const SOURCE_ADDRESSES = Array.from({ length: 8 }, (_, i) => `127.0.0.${i + 1}`)

/** Connects and subscribes `count` persistent clients, `parallel` at a time; failures are counted, not thrown. */
export async function connectMany (port: number, profile: Profile, users: string[], parallel = 500,
  onMessage?: (index: number) => void): Promise<{ clients: Array<RawClient | undefined>, failed: number }> {
  const clients: Array<RawClient | undefined> = new Array(users.length)
  let failed = 0
  let next = 0
  await Promise.all(Array.from({ length: parallel }, async () => {
    while (next < users.length) {
      const i = next++
      try {
        const client = await RawClient.connect({
          port,
          localAddress: SOURCE_ADDRESSES[i % SOURCE_ADDRESSES.length],
          ...profile.credentials(users[i]!, 'd'),
          ...(onMessage === undefined ? {} : { onMessage: () => onMessage(i) })
        })
        await client.subscribe(profile.inbox(users[i]!))
        clients[i] = client
      } catch {
        failed++
      }
    }
  }))
  return { clients, failed }
}
