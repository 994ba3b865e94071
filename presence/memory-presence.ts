// Presence for embedded mode: one process, so memory is the truth. (Stale
// retained "online" states left by a crash are corrected at start by the
// tracker.)
import { offline, online, neverSeen, type PresenceChange, type PresenceRegistry, type PresenceState } from './presence-registry.ts'

export class MemoryPresence implements PresenceRegistry {
  /** user → clientId → connection token */
  readonly #connections = new Map<string, Map<string, string>>()
  readonly #states = new Map<string, PresenceState>()

  async connected (user: string, clientId: string, token: string, now: number): Promise<PresenceState | undefined> {
    let devices = this.#connections.get(user)
    if (devices === undefined) this.#connections.set(user, devices = new Map())
    const first = devices.size === 0
    devices.set(clientId, token)
    if (!first) return undefined
    const state = online(now)
    this.#states.set(user, state)
    return state
  }

  async disconnected (user: string, clientId: string, token: string, now: number): Promise<PresenceState | undefined> {
    const devices = this.#connections.get(user)
    if (devices?.get(clientId) !== token) return undefined
    devices.delete(clientId)
    if (devices.size > 0) return undefined
    this.#connections.delete(user)
    const state = offline(now)
    this.#states.set(user, state)
    return state
  }

  async connectedDevices (user: string): Promise<string[]> {
    return [...this.#connections.get(user)?.keys() ?? []]
  }

  async isConnected (user: string, clientId: string): Promise<boolean> {
    return this.connectedNow(user, clientId)
  }

  /** Synchronous: for a LevelDB transaction that must not evict a connected device's session. */
  connectedNow (user: string, clientId: string): boolean {
    return this.#connections.get(user)?.has(clientId) ?? false
  }

  async states (users: string[]): Promise<PresenceState[]> {
    const now = Date.now()
    return users.map((user) => {
      const state = this.#states.get(user) ?? neverSeen
      return this.#connections.has(user) ? { ...state, lastSeen: now } : state
    })
  }

  /** Restores a last-known state (from the retained presence message) after a restart. */
  seed (user: string, state: PresenceState): void {
    if (!this.#states.has(user)) this.#states.set(user, state)
  }

  async sweep (): Promise<PresenceChange[]> {
    return []
  }

  async leave (now: number): Promise<PresenceChange[]> {
    const changes = [...this.#connections.keys()].map((user) => ({ user, state: offline(now) }))
    this.#connections.clear()
    for (const { user, state } of changes) this.#states.set(user, state)
    return changes
  }
}
