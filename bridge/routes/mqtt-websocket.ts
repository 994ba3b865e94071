// MQTT over WebSocket at /mqtt on the HTTP port, for browsers and mobile
// apps behind proxies that only pass HTTPS. Each socket is handed to the
// same broker as the TCP listener (server/server.ts passes it in; the bridge
// knows nothing else of it).
import type { FastifyPluginAsync } from 'fastify'
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { createWebSocketStream } from 'ws'

/** Whatever speaks MQTT over a byte stream: the broker's `handle`. */
export interface MqttHandler { handle (stream: Duplex, request: IncomingMessage): void }

export const mqttWebSocketRoute: FastifyPluginAsync<{ broker: MqttHandler }> = async (app, { broker }) => {
  app.get('/mqtt', { websocket: true }, (socket, request) => {
    const stream = createWebSocketStream(socket)
    stream.on('error', () => socket.terminate())
    broker.handle(stream, request.raw)
  })
}
