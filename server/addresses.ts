// The start's "where is everything" lines: one readable log line each for
// MQTT, MQTT over WebSocket, the web page, OpenAPI and the storage, with the
// ports actually bound (0 in the config means "any free one").
import { resolve } from 'node:path'
import { usesRedis, type Config } from '../config/config.ts'

export interface BoundPorts { mqttPort?: number, httpPort?: number, mqttsPort?: number, httpsPort?: number }

/** Without credentials: a URL's password never goes to the log. */
function withoutCredentials (url: string): string {
  try {
    const parsed = new URL(url)
    parsed.username = ''
    parsed.password = ''
    return parsed.toString()
  } catch {
    return '(unparsable URL)'
  }
}

export function describeAddresses (config: Config, ports: BoundPorts): string[] {
  // Listening on every interface: say localhost, which works from this machine.
  const host = config.host === '0.0.0.0' || config.host === '::' ? 'localhost' : config.host.includes(':') ? `[${config.host}]` : config.host
  const lines: string[] = []
  const web = (scheme: string, port: number): void => {
    const ws = scheme === 'https' ? 'wss' : 'ws'
    lines.push(`MQTT over WebSocket: ${ws}://${host}:${port}/mqtt`, `web page: ${scheme}://${host}:${port}/`, `OpenAPI: ${scheme}://${host}:${port}/openapi.json`)
  }
  if (ports.mqttPort !== undefined) lines.push(`MQTT: mqtt://${host}:${ports.mqttPort}`)
  if (ports.mqttsPort !== undefined) lines.push(`MQTT over TLS: mqtts://${host}:${ports.mqttsPort}`)
  if (ports.httpPort !== undefined) web('http', ports.httpPort)
  if (ports.httpsPort !== undefined) web('https', ports.httpsPort)
  if (config.redisClusterNodes !== undefined) lines.push(`storage: Redis Cluster, seeds ${config.redisClusterNodes.map((node) => `${node.host}:${node.port}`).join(',')}`)
  else if (usesRedis(config)) lines.push(`storage: Redis at ${withoutCredentials(config.redisUrl!)}`)
  else lines.push(`storage: embedded, DATA_DIR ${resolve(config.dataDir)}`)
  if (config.databaseUrl !== undefined) lines.push(`archive and search: PostgreSQL at ${withoutCredentials(config.databaseUrl)}`)
  else if (!usesRedis(config)) lines.push(`archive and search: embedded, in ${resolve(config.dataDir, 'archive')}`)
  return lines
}
