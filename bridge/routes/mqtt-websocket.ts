// MQTT over WebSocket at /mqtt on the HTTP port, for browsers and mobile
// apps behind proxies that only pass HTTPS. Each socket is handed to the
// same broker as the TCP listener.
import type { FastifyPluginAsync } from 'fastify'
import { createWebSocketStream } from 'ws'
import type { Aedes } from 'aedes'

export const mqttWebSocketRoute: FastifyPluginAsync<{ broker: Aedes }> = async (app, { broker }) => {
  app.get('/mqtt', { websocket: true }, (socket, request) => {
    const stream = createWebSocketStream(socket)
    stream.on('error', () => socket.terminate())
    broker.handle(stream, request.raw)
  })
}
