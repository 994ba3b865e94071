// Why the server closed a connection, for the one log line each disconnect
// gets (broker/connection-log.ts). The first reason given wins: a connection
// kicked while the server stops was kicked.
import type { Client } from 'aedes'

const reasons = new WeakMap<Client, string>()

/** Records why `client` is being closed by the server, unless a reason is already recorded. */
export function noteCloseReason (client: Client, reason: string): void {
  if (!reasons.has(client)) reasons.set(client, reason)
}

/** Closes `client`, recording why. */
export function closeWith (client: Client, reason: string): void {
  noteCloseReason(client, reason)
  client.close()
}

export function closeReason (client: Client): string | undefined {
  return reasons.get(client)
}
