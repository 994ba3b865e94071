// Who is connected, across every server process. Presence is derived from
// connections, never from what clients claim: a user is online while any of
// their devices has a live connection on any process.
//
// Each connection gets a token when it is authenticated; a disconnect only
// counts if its token is still the current one for that clientId. That is
// what makes a session takeover (the same clientId connecting again, here or
// on another process) never show a false offline: the new connection's token
// is recorded before Aedes closes the old one.

export interface PresenceState {
  status: 'online' | 'offline'
  /** When the status last changed (ms). */
  ts: number
  /** When the user was last connected (ms); 0 if never. */
  lastSeen: number
}

export interface PresenceChange {
  user: string
  state: PresenceState
}

export interface PresenceRegistry {
  /** Records a connection; returns the new state if the user just came online. */
  connected (user: string, clientId: string, token: string, now: number): Promise<PresenceState | undefined>
  /** Forgets a connection if it is still current; returns the new state if the user just went offline. */
  disconnected (user: string, clientId: string, token: string, now: number): Promise<PresenceState | undefined>
  /** The user's connected clientIds, on every process. */
  connectedDevices (user: string): Promise<string[]>
  /** Whether a device (clientId `<user>:<device>`) is connected to any process. */
  isConnected (user: string, clientId: string): Promise<boolean>
  /** The current state of each user, in order (offline with lastSeen 0 if never seen). */
  states (users: string[]): Promise<PresenceState[]>
  /** Periodic: forgets the connections of processes that died; returns the resulting changes. */
  sweep (now: number): Promise<PresenceChange[]>
  /** This process is stopping: forgets all its connections; returns the resulting changes. */
  leave (now: number): Promise<PresenceChange[]>
}

export const online = (now: number): PresenceState => ({ status: 'online', ts: now, lastSeen: now })
export const offline = (now: number): PresenceState => ({ status: 'offline', ts: now, lastSeen: now })
export const neverSeen: PresenceState = { status: 'offline', ts: 0, lastSeen: 0 }
