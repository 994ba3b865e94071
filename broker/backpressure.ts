// A device that stops reading its socket must not make the server hold what
// it does not read. Durable events need no copy here (they stay in the log;
// the inbox stream waits for the socket to drain). QoS 0 events are at most
// once, so once a device is behind they are dropped rather than buffered:
// Aedes would otherwise keep every one in the socket's write buffer and park
// its delivery until a 'drain' that may never come (in embedded mode 100
// parked deliveries stall the in-process bus for every client).
import type { Client } from 'aedes'

/** Unsent bytes a connection may hold before the inbox stream stops writing a catch-up page. */
export const STREAM_BUFFER_BYTES = 1024 * 1024
/**
 * A device's own error events may queue up to this much: in embedded mode
 * waiting for them is what paces a client that floods (see publishEphemeral).
 */
export const OWN_ERRORS_BUFFER_BYTES = 1024 * 1024

interface Buffered { writableLength?: number, writableNeedDrain?: boolean }

/** Bytes written to the connection that the kernel has not taken yet. */
export function unsentBytes (client: Client): number {
  return (client.conn as unknown as Buffered).writableLength ?? 0
}

/**
 * True when a QoS 0 packet to this device should be dropped: its connection
 * already holds more than its write buffer (the kernel's buffers for it are
 * full too), or, for its own error events, more than OWN_ERRORS_BUFFER_BYTES.
 */
export function isBehind (client: Client, ownErrors: boolean): boolean {
  if (ownErrors) return unsentBytes(client) > OWN_ERRORS_BUFFER_BYTES
  return (client.conn as unknown as Buffered).writableNeedDrain === true
}
