// Aedes buffers a whole MQTT packet before anyone can look at it, whatever
// size its header declares (up to 256 MB), even before CONNECT. This guard
// reads the declared length as soon as it is parsed and closes connections
// that announce packets larger than the limit, before the body is buffered.
import type { Aedes, Client } from 'aedes'
import type { Duplex } from 'node:stream'
import type { IncomingMessage } from 'node:http'

interface MqttParser {
  packet: { length: number }
  _list: { length: number, consume (bytes: number): void }
  _parseLength (): boolean
  _emitError (error: Error): void
}

export function limitPacketSize (broker: Aedes, maxPacketBytes: number): void {
  const handle = broker.handle
  broker.handle = (conn: Duplex, req?: IncomingMessage): Client => {
    const client = handle(conn, req as IncomingMessage)
    const parser = (client as unknown as { _parser: MqttParser })._parser
    const parseLength = parser._parseLength.bind(parser)
    parser._parseLength = () => {
      const complete = parseLength()
      if (complete && parser.packet.length > maxPacketBytes) {
        parser._list.consume(parser._list.length)
        parser._emitError(new Error(`packet of ${parser.packet.length} bytes exceeds the ${maxPacketBytes}-byte limit`))
        conn.destroy()
        return false
      }
      return complete
    }
    return client
  }
}

/** Payloads up to twice the message limit still get a payload_too_large error event; larger ones close the connection. */
export function packetLimitFor (maxPayloadBytes: number): number {
  return 2 * maxPayloadBytes + 1024
}
