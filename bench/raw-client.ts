// A minimal MQTT 3.1.1 client on mqtt-packet, for load generation: far
// lighter than mqtt.js per connection, so one load process can hold tens of
// thousands of connections and push tens of thousands of messages a second,
// and it can bind a source address (to get past the ephemeral port range).
import { createConnection, type Socket } from 'node:net'
import mqttPacket from 'mqtt-packet'

export interface RawClientOptions {
  port: number
  host?: string
  localAddress?: string
  clientId: string
  username?: string
  password?: string
  clean?: boolean
  keepalive?: number
  onMessage?: (topic: string, payload: Buffer) => void
  onClose?: () => void
}

export class RawClient {
  readonly #socket: Socket
  readonly #parser = mqttPacket.parser({ protocolVersion: 4 })
  readonly #acks = new Map<number, () => void>()
  #nextId = 1
  #connack: { resolve: () => void, reject: (error: Error) => void } | undefined
  #suback: (() => void) | undefined
  closed = false

  private constructor (readonly options: RawClientOptions) {
    this.#socket = createConnection({ port: options.port, host: options.host ?? '127.0.0.1', ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress }) })
    this.#socket.setNoDelay(true)
    this.#socket.on('data', (data: Buffer) => this.#parser.parse(data))
    this.#socket.on('error', () => {})
    this.#socket.on('close', () => {
      this.closed = true
      this.#connack?.reject(new Error('closed before CONNACK'))
      options.onClose?.()
    })
    this.#parser.on('packet', (packet) => this.#onPacket(packet))
  }

  static connect (options: RawClientOptions): Promise<RawClient> {
    const client = new RawClient(options)
    return new Promise((resolve, reject) => {
      client.#connack = { resolve: () => resolve(client), reject }
      client.#write({
        cmd: 'connect',
        protocolId: 'MQTT',
        protocolVersion: 4,
        clean: options.clean ?? false,
        keepalive: options.keepalive ?? 600,
        clientId: options.clientId,
        ...(options.username === undefined ? {} : { username: options.username }),
        ...(options.password === undefined ? {} : { password: Buffer.from(options.password) })
      })
    })
  }

  #write (packet: Record<string, unknown>): void {
    this.#socket.write(mqttPacket.generate(packet as unknown as mqttPacket.Packet))
  }

  #onPacket (packet: mqttPacket.Packet): void {
    switch (packet.cmd) {
      case 'connack':
        if (packet.returnCode === 0) this.#connack?.resolve()
        else this.#connack?.reject(new Error(`CONNACK ${packet.returnCode}`))
        this.#connack = undefined
        break
      case 'suback':
        this.#suback?.()
        break
      case 'puback':
        this.#acks.get(packet.messageId!)?.()
        this.#acks.delete(packet.messageId!)
        break
      case 'publish':
        if (packet.qos > 0) this.#write({ cmd: 'puback', messageId: packet.messageId })
        this.options.onMessage?.(packet.topic, packet.payload as Buffer)
        break
    }
  }

  subscribe (topic: string, qos: 0 | 1 = 1): Promise<void> {
    return new Promise((resolve) => {
      this.#suback = resolve
      this.#write({ cmd: 'subscribe', messageId: this.#id(), subscriptions: [{ topic, qos }] })
    })
  }

  #id (): number {
    const id = this.#nextId
    this.#nextId = this.#nextId === 65535 ? 1 : this.#nextId + 1
    return id
  }

  /** QoS 1 publish; resolves on PUBACK. */
  publish (topic: string, payload: string | Buffer): Promise<void> {
    return new Promise((resolve) => {
      const messageId = this.#id()
      this.#acks.set(messageId, resolve)
      this.#write({ cmd: 'publish', topic, payload, qos: 1, retain: false, dup: false, messageId })
    })
  }

  /** DISCONNECT and close. */
  end (): void {
    if (this.closed) return
    this.#write({ cmd: 'disconnect' })
    this.#socket.end()
  }

  /** Drop the connection without DISCONNECT (like a phone losing signal). */
  destroy (): void {
    this.#socket.destroy()
  }
}
