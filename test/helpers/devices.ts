// Real mqtt.js clients acting as devices of a user.
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import { token as signToken } from './tokens.ts'

export interface DeviceOptions {
  url: string
  userId: string
  deviceId: string
  token?: string
  clean?: boolean
  subscribe?: boolean
  extra?: IClientOptions
}

export interface Device {
  client: MqttClient
  /** The CONNACK's session present flag: the server restored a stored session. */
  sessionPresent: boolean
  /** Everything received on the inbox, parsed. */
  inbox: Array<Record<string, unknown>>
  /** Everything received on this device's errors topic, parsed. */
  errors: Array<Record<string, unknown>>
  waitForInbox (count: number, timeoutMs?: number): Promise<Array<Record<string, unknown>>>
  waitForErrors (count: number, timeoutMs?: number): Promise<Array<Record<string, unknown>>>
  /** Waits for `count` inbox events matching `match` (e.g. one `type`); resolves with those. */
  waitForMatching (match: (event: Record<string, unknown>) => boolean, count: number, timeoutMs?: number): Promise<Array<Record<string, unknown>>>
  send (to: string, payload: unknown, qos?: 0 | 1): Promise<void>
  sendRaw (topic: string, payload: string | Buffer, qos?: 0 | 1): Promise<void>
  end (force?: boolean): Promise<void>
}

export function inboxOf (userId: string): string { return `user/${userId}/inbox` }
export function errorsOf (userId: string, deviceId: string): string { return `user/${userId}/device/${deviceId}/errors` }

function waitFor<T> (list: T[], count: number, timeoutMs: number, what: string): Promise<T[]> {
  return new Promise((resolve, reject) => {
    const started = Date.now()
    const check = (): void => {
      if (list.length >= count) return resolve(list)
      if (Date.now() - started > timeoutMs) return reject(new Error(`timed out waiting for ${count} ${what}, got ${list.length}`))
      setTimeout(check, 10)
    }
    check()
  })
}

/** Connects and (by default) subscribes to the inbox and errors topics; rejects on a refused CONNECT. */
export async function connectDevice (options: DeviceOptions): Promise<Device> {
  const client = mqtt.connect(options.url, {
    clientId: `${options.userId}:${options.deviceId}`,
    username: options.userId,
    password: options.token ?? signToken(options.userId),
    clean: options.clean ?? false,
    reconnectPeriod: 0,
    connectTimeout: 10_000,
    ...options.extra
  })
  const inbox: Array<Record<string, unknown>> = []
  const errors: Array<Record<string, unknown>> = []
  client.on('message', (topic, payload) => {
    const parsed = JSON.parse(payload.toString()) as Record<string, unknown>
    if (topic === inboxOf(options.userId)) inbox.push(parsed)
    else errors.push(parsed)
  })
  const sessionPresent = await new Promise<boolean>((resolve, reject) => {
    client.once('connect', (connack) => resolve(connack.sessionPresent))
    client.once('error', (error) => { client.end(true); reject(error) })
    client.once('close', () => reject(new Error('connection closed before CONNACK')))
  })
  if (options.subscribe ?? true) {
    await client.subscribeAsync([inboxOf(options.userId), errorsOf(options.userId, options.deviceId)], { qos: 1 })
  }
  return {
    client,
    sessionPresent,
    inbox,
    errors,
    waitForInbox: (count, timeoutMs = 10_000) => waitFor(inbox, count, timeoutMs, 'inbox messages'),
    waitForErrors: (count, timeoutMs = 10_000) => waitFor(errors, count, timeoutMs, 'error events'),
    async waitForMatching (match, count, timeoutMs = 10_000) {
      const started = Date.now()
      for (;;) {
        const matching = inbox.filter(match)
        if (matching.length >= count) return matching
        if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${count} matching inbox events, got ${matching.length}`)
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
    },
    async send (to, payload, qos = 1) {
      await client.publishAsync(inboxOf(to), JSON.stringify(payload), { qos })
    },
    async sendRaw (topic, payload, qos = 1) {
      await client.publishAsync(topic, payload, { qos })
    },
    async end (force = false) {
      await client.endAsync(force)
    }
  }
}

/** SUBSCRIBE: the SUBACK's granted QoS per topic, 128 for a refused one (mqtt.js rejects a SUBACK with any 128). */
export async function granted (client: MqttClient, topics: string[], qos: 0 | 1 | 2 = 2): Promise<number[]> {
  try {
    return (await client.subscribeAsync(topics, { qos })).map((grant) => grant.qos)
  } catch (error) {
    const packet = (error as { packet?: { granted?: number[] } }).packet
    if (packet?.granted === undefined) throw error
    return packet.granted
  }
}

/** The CONNACK return code a device gets when it tries to connect (undefined: it was accepted, and is closed again). */
export async function connackRefusal (options: DeviceOptions): Promise<number | undefined> {
  try {
    const device = await connectDevice({ subscribe: false, ...options })
    await device.end(true)
    return undefined
  } catch (error) {
    return (error as { code?: number }).code
  }
}
