// This tab's device id, and the SDK's durable storage for it.
//
// Every device id is a persistent session on the server, which queues every
// message for it for days. A random id per page load would pile up sessions,
// so a browser reuses a few: slot N is `web-<browser>-<N>`, held by one tab at
// a time through the Web Locks API (released when the tab closes). Where Web
// Locks are missing (a plain-http page on a LAN address is not a secure
// context), the id lives in sessionStorage: one per tab, kept across reloads.
import type { ClientStorage } from '../../client-sdk/src/index.ts'

const MAX_SLOTS = 8

function randomId (): string {
  const bytes = crypto.getRandomValues(new Uint8Array(6))
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')
}

function browserId (): string {
  let id = localStorage.getItem('inboxd.browser')
  if (id === null) localStorage.setItem('inboxd.browser', id = randomId())
  return id
}

export interface DeviceClaim {
  deviceId: string
  release (): void
}

/** Claims a device id for `user` in this tab. */
export async function claimDevice (user: string): Promise<DeviceClaim> {
  const locks = (navigator as Navigator & { locks?: LockManager }).locks
  if (locks !== undefined) {
    const slotKey = `inboxd.slot.${user}`
    const claimed = (slot: number, release: () => void): DeviceClaim => {
      sessionStorage.setItem(slotKey, String(slot))
      return { deviceId: `web-${browserId()}-${slot}`, release }
    }
    // After a reload, the page before may not have let go of its lock yet: wait a moment for this tab's own slot.
    const previous = Number(sessionStorage.getItem(slotKey) ?? NaN)
    if (previous >= 0 && previous < MAX_SLOTS) {
      const release = await waitForLock(locks, `inboxd.device.${user}.${previous}`, 2_000)
      if (release !== undefined) return claimed(previous, release)
    }
    for (let slot = 0; slot < MAX_SLOTS; slot++) {
      const release = await tryLock(locks, `inboxd.device.${user}.${slot}`)
      if (release !== undefined) return claimed(slot, release)
    }
  }
  const key = `inboxd.device.${user}`
  let deviceId = sessionStorage.getItem(key)
  if (deviceId === null) sessionStorage.setItem(key, deviceId = `web-${randomId()}`)
  return { deviceId, release: () => {} }
}

/** Holds the lock until release() (or the tab closes); undefined if another tab holds it. */
function tryLock (locks: LockManager, name: string): Promise<(() => void) | undefined> {
  return new Promise((resolve) => {
    void locks.request(name, { ifAvailable: true }, (lock) => {
      if (lock === null) {
        resolve(undefined)
        return
      }
      return new Promise<void>((release) => resolve(release))
    })
  })
}

/** Like tryLock, but waits up to `ms` for the lock to be free. */
function waitForLock (locks: LockManager, name: string, ms: number): Promise<(() => void) | undefined> {
  return new Promise((resolve) => {
    locks.request(name, { signal: AbortSignal.timeout(ms) }, () => new Promise<void>((release) => resolve(release)))
      .catch(() => resolve(undefined))
  })
}

/** The SDK's last seq and outbox in localStorage, per user and device, so unsent messages survive a reload. */
export class LocalStorageStore implements ClientStorage {
  constructor (private readonly prefix: string) {}

  async get (key: string): Promise<string | undefined> {
    return localStorage.getItem(this.prefix + key) ?? undefined
  }

  async set (key: string, value: string): Promise<void> {
    localStorage.setItem(this.prefix + key, value)
  }
}
