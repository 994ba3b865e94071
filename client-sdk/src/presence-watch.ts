// Presence and typing over MQTT: the users being watched are re-subscribed on
// every connection (a persistent session does not replay retained messages),
// and typing is a QoS 0 publish, never stored.
import type { MqttClient } from 'mqtt'

export class PresenceWatch {
  readonly #watched = new Set<string>()
  readonly #mqtt: () => MqttClient | undefined

  constructor (mqtt: () => MqttClient | undefined) {
    this.#mqtt = mqtt
  }

  /** On each new connection: the current state of every watched user arrives again. */
  async resubscribe (client: MqttClient): Promise<void> {
    if (this.#watched.size > 0) await client.subscribeAsync([...this.#watched].map((user) => `presence/${user}`), { qos: 0 })
  }

  watch (user: string): () => void {
    this.#watched.add(user)
    const client = this.#mqtt()
    if (client?.connected === true) client.subscribe(`presence/${user}`, { qos: 0 })
    return () => {
      this.#watched.delete(user)
      this.#mqtt()?.unsubscribe(`presence/${user}`)
    }
  }

  typingInGroup (group: string, active: boolean): void {
    this.#mqtt()?.publish(`group/${group}`, JSON.stringify({ type: 'typing', active }), { qos: 0 })
  }

  typing (peer: string, active: boolean): void {
    this.#mqtt()?.publish(`user/${peer}/inbox`, JSON.stringify({ type: 'typing', active }), { qos: 0 })
  }
}
