// A device that rides out a storage outage, as a real app does: mqtt.js
// reconnecting with the same clientId and a persistent session (so it sends
// again every QoS 1 publish that got no PUBACK, and the server resends what
// it did not acknowledge), keeping what it received by seq (a redelivery
// after a failover is deduped there, as docs/protocol.md tells clients to).
import mqtt, { type MqttClient } from 'mqtt'
import { token as signToken } from './tokens.ts'
import { errorsOf, inboxOf } from './devices.ts'

export interface SteadyDevice {
  client: MqttClient
  /** Inbox events with a seq, the first copy of each. */
  bySeq: Map<number, Record<string, unknown>>
  /** Every inbox delivery, redeliveries included. */
  deliveries: number
  /** Seqs delivered again as a different event (a log that lost writes and numbered new ones the same). */
  seqConflicts: Array<{ seq: number, first: unknown, later: unknown }>
  errors: Array<Record<string, unknown>>
  /** CONNACKs accepted so far (1 after the first connect). */
  connects: number
  /** Resolves once `done()` holds; rejects after `timeoutMs` with `what()` in the message. */
  until (done: () => boolean, timeoutMs: number, what: () => string): Promise<void>
  /** Publishes `{id, body}` to `to`'s inbox at QoS 1 once connected; resolves at its PUBACK (after any number of resends). */
  send (to: string, id: string): Promise<void>
  end (): Promise<void>
}

/** `inbox: false`: only the device's errors topic (a sender that need not receive its own copies). */
export async function connectSteady (url: string, userId: string, deviceId: string, options: { inbox?: boolean } = {}): Promise<SteadyDevice> {
  const client = mqtt.connect(url, {
    clientId: `${userId}:${deviceId}`,
    username: userId,
    password: signToken(userId),
    clean: false,
    reconnectPeriod: 200,
    // CONNACK 3 while storage fails over: keep trying, as the SDK does.
    reconnectOnConnackError: true,
    connectTimeout: 5_000,
    keepalive: 30
  })
  const device: SteadyDevice = {
    client,
    bySeq: new Map(),
    deliveries: 0,
    seqConflicts: [],
    errors: [],
    connects: 0,
    async until (done, timeoutMs, what) {
      const deadline = Date.now() + timeoutMs
      while (!done()) {
        if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${what()}`)
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
    },
    async send (to, id) {
      for (;;) {
        while (!client.connected) await new Promise((resolve) => client.once('connect', resolve))
        try {
          await client.publishAsync(inboxOf(to), JSON.stringify({ id, body: `body of ${id}` }), { qos: 1 })
          return
        } catch {
          // The connection closed before mqtt.js had stored the publish for a resend ("Connection
          // closed"): send it again, as an app's outbox does; the server stores an id once.
        }
      }
    },
    async end () {
      await client.endAsync(true)
    }
  }
  // Errors while reconnecting are expected here; mqtt.js keeps trying.
  client.on('error', () => {})
  client.on('connect', () => { device.connects++ })
  client.on('message', (topic, payload) => {
    const event = JSON.parse(payload.toString()) as Record<string, unknown>
    if (topic !== inboxOf(userId)) { device.errors.push(event); return }
    device.deliveries++
    if (typeof event.seq !== 'number') return
    const first = device.bySeq.get(event.seq)
    if (first === undefined) device.bySeq.set(event.seq, event)
    else if (first.id !== event.id || first.type !== event.type) device.seqConflicts.push({ seq: event.seq, first: first.id, later: event.id })
  })
  await new Promise<void>((resolve) => client.once('connect', () => resolve()))
  await client.subscribeAsync([...options.inbox === false ? [] : [inboxOf(userId)], errorsOf(userId, deviceId)], { qos: 1 })
  return device
}
