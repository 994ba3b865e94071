// TLS built in: MQTT over TLS (mqtts) and HTTPS + WSS on their own ports,
// serving the same broker and the same Fastify routes as the plain
// listeners. Certificates are read again on SIGHUP and when the certificate
// file changes, and swapped into the running servers (setSecureContext), so
// a Let's Encrypt renewal needs no restart. TLS 1.2 and later only.
import { createServer as createTlsServer, type SecureContextOptions, type Server as TlsServer } from 'node:tls'
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https'
import { readFileSync, unwatchFile, watchFile } from 'node:fs'
import type { AddressInfo, Socket } from 'node:net'
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import type { TlsConfig } from '../config/config.ts'

export interface TlsListeners {
  mqttsPort: number
  httpsPort: number
  /** Reads the certificate and key again and serves them to new connections. */
  reload (): void
  close (): Promise<void>
}

function secureOptions (tls: TlsConfig): SecureContextOptions {
  return { cert: readFileSync(tls.certPath), key: readFileSync(tls.keyPath), minVersion: 'TLSv1.2' }
}

function listen (server: TlsServer | HttpsServer, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => resolve((server.address() as AddressInfo).port))
  })
}

export async function startTlsListeners (tls: TlsConfig, host: string, handleMqtt: (socket: Socket) => void, app: FastifyInstance, log: Logger): Promise<TlsListeners> {
  const mqtts = createTlsServer({ ...secureOptions(tls), noDelay: true }, (socket) => handleMqtt(socket))
  mqtts.on('tlsClientError', (error) => log.debug({ err: error.message }, 'mqtts handshake failed'))
  // The same Fastify app answers HTTPS requests, and its WebSocket upgrade handler takes WSS.
  const https = createHttpsServer(secureOptions(tls), (request, response) => app.routing(request, response))
  https.on('upgrade', (request, socket, head) => app.server.emit('upgrade', request, socket, head))
  https.on('tlsClientError', (error) => log.debug({ err: error.message }, 'https handshake failed'))
  const mqttsPort = await listen(mqtts, tls.mqttsPort, host)
  const httpsPort = await listen(https, tls.httpsPort, host)

  const reload = (): void => {
    try {
      const options = secureOptions(tls)
      mqtts.setSecureContext(options)
      https.setSecureContext(options)
      log.info({ cert: tls.certPath }, 'TLS certificate reloaded')
    } catch (error) {
      // A half-written renewal must not take the listeners down: keep serving the old one.
      log.error({ err: error }, 'could not reload the TLS certificate; still serving the previous one')
    }
  }
  const onHup = (): void => reload()
  process.on('SIGHUP', onHup)
  watchFile(tls.certPath, { interval: 1_000 }, (current, previous) => { if (current.mtimeMs !== previous.mtimeMs) reload() })

  return {
    mqttsPort,
    httpsPort,
    reload,
    async close () {
      process.off('SIGHUP', onHup)
      unwatchFile(tls.certPath)
      https.closeAllConnections()
      await Promise.all([
        new Promise<void>((resolve) => mqtts.close(() => resolve())),
        new Promise<void>((resolve) => https.close(() => resolve()))
      ])
    }
  }
}
