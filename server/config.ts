// Reads the environment once, validates it, and returns a typed Config.
// Any invalid value throws ConfigError naming the variable, so main.ts can
// print one clear line and exit non-zero.
import { readFileSync } from 'node:fs'

export class ConfigError extends Error {
  constructor (readonly variable: string, problem: string) {
    super(`invalid configuration: ${variable} ${problem}`)
  }
}

export type JwtKey =
  | { kind: 'secret', secret: string }
  | { kind: 'public-key', publicKey: string }

export interface Config {
  mqttPort: number
  httpPort: number
  host: string
  redisUrl: string | undefined
  dataDir: string
  jwt: JwtKey
  logLevel: string
  maxPayloadBytes: number
  backlogRetentionSeconds: number
  /** Embedded mode: how often expired backlog is swept (Redis expires it by TTL). */
  retentionSweepSeconds: number
  /** How long history is kept, in ms; 0 keeps it forever. */
  historyRetentionMs: number
  /** How long after sending a sender may recall a message, in ms. */
  recallWindowMs: number
  /** A stable id for this process in a cluster; random unless NODE_ID is set. */
  nodeId: string | undefined
  /** Accepted CONNECT keepalive range, seconds. */
  keepalive: { min: number, max: number }
  push: PushConfig
}

export interface ApnsConfig {
  /** The .p8 signing key's contents. */
  signingKey: string
  keyId: string
  teamId: string
  topic: string
  production: boolean
  /** Where to send instead of Apple's host (an HTTP/2 gateway, or a test server), e.g. https://127.0.0.1:8443 */
  origin: string | undefined
  /** Extra CA certificate (PEM) to trust for `origin`. */
  ca: string | undefined
}

export interface PushConfig {
  apns: ApnsConfig | undefined
  /** The alert text; the message body never leaves the server. */
  text: string
  coalesceMs: number
  retryBaseMs: number
  maxAttempts: number
}

type Env = Record<string, string | undefined>

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

function integer (env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name]
  if (raw === undefined || raw === '') return fallback
  if (!/^\d+$/.test(raw.trim())) throw new ConfigError(name, `must be a whole number, got "${raw}"`)
  const value = Number(raw)
  if (value < min || value > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${value}`)
  return value
}

function jwtKey (env: Env): JwtKey {
  const secret = env.JWT_SECRET
  const publicKey = env.JWT_PUBLIC_KEY
  if (secret && publicKey) throw new ConfigError('JWT_SECRET', 'and JWT_PUBLIC_KEY are both set; set exactly one')
  if (publicKey) {
    if (!publicKey.includes('-----BEGIN')) throw new ConfigError('JWT_PUBLIC_KEY', 'must be a PEM public key')
    return { kind: 'public-key', publicKey: publicKey.replace(/\\n/g, '\n') }
  }
  if (!secret) throw new ConfigError('JWT_SECRET', 'is required (or set JWT_PUBLIC_KEY for RS256/ES256 tokens)')
  if (secret.length < 32) throw new ConfigError('JWT_SECRET', 'must be at least 32 characters')
  return { kind: 'secret', secret }
}

function redisUrl (env: Env): string | undefined {
  const raw = env.REDIS_URL
  if (raw === undefined || raw === '') return undefined
  let url: URL
  try { url = new URL(raw) } catch { throw new ConfigError('REDIS_URL', `is not a URL: "${raw}"`) }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') throw new ConfigError('REDIS_URL', 'must start with redis:// or rediss://')
  return raw
}

function readFile (name: string, path: string): string {
  try {
    return readFileSync(path, 'utf8')
  } catch (error) {
    throw new ConfigError(name, `cannot be read: ${(error as Error).message}`)
  }
}

const APNS_VARIABLES = ['APNS_KEY', 'APNS_KEY_ID', 'APNS_TEAM_ID', 'APNS_TOPIC'] as const

function apnsConfig (env: Env): ApnsConfig | undefined {
  const set = APNS_VARIABLES.filter((name) => env[name])
  if (set.length === 0) return undefined
  const missing = APNS_VARIABLES.find((name) => !env[name])
  if (missing !== undefined) throw new ConfigError(missing, `is required when ${set.join(', ')} ${set.length === 1 ? 'is' : 'are'} set`)
  const environment = env.APNS_ENV || 'production'
  if (environment !== 'production' && environment !== 'sandbox') throw new ConfigError('APNS_ENV', `must be production or sandbox, got "${environment}"`)
  const signingKey = readFile('APNS_KEY', env.APNS_KEY!)
  if (!signingKey.includes('-----BEGIN PRIVATE KEY-----')) throw new ConfigError('APNS_KEY', 'must be a .p8 file (PEM "BEGIN PRIVATE KEY")')
  const origin = env.APNS_ORIGIN || undefined
  if (origin !== undefined && !/^https:\/\/[^/]+$/.test(origin)) throw new ConfigError('APNS_ORIGIN', 'must be https://host[:port]')
  return {
    signingKey,
    keyId: env.APNS_KEY_ID!,
    teamId: env.APNS_TEAM_ID!,
    topic: env.APNS_TOPIC!,
    production: environment === 'production',
    origin,
    ca: env.APNS_CA ? readFile('APNS_CA', env.APNS_CA) : undefined
  }
}

function keepaliveBounds (env: Env): { min: number, max: number } {
  const min = integer(env, 'KEEPALIVE_MIN_SECONDS', 5, 1, 65535)
  const max = integer(env, 'KEEPALIVE_MAX_SECONDS', 1200, 1, 65535)
  if (min > max) throw new ConfigError('KEEPALIVE_MIN_SECONDS', `must not exceed KEEPALIVE_MAX_SECONDS (${max})`)
  return { min, max }
}

export function loadConfig (env: Env = process.env): Config {
  const logLevel = env.LOG_LEVEL || 'info'
  if (!LOG_LEVELS.includes(logLevel)) throw new ConfigError('LOG_LEVEL', `must be one of ${LOG_LEVELS.join(', ')}`)
  return {
    mqttPort: integer(env, 'MQTT_PORT', 1883, 0, 65535),
    httpPort: integer(env, 'HTTP_PORT', 8080, 0, 65535),
    host: env.HOST || '0.0.0.0',
    redisUrl: redisUrl(env),
    dataDir: env.DATA_DIR || './data',
    jwt: jwtKey(env),
    logLevel,
    maxPayloadBytes: integer(env, 'MAX_PAYLOAD_BYTES', 64 * 1024, 256, 16 * 1024 * 1024),
    backlogRetentionSeconds: integer(env, 'BACKLOG_RETENTION_SECONDS', 7 * 24 * 3600, 1, 10 * 365 * 24 * 3600),
    retentionSweepSeconds: integer(env, 'RETENTION_SWEEP_SECONDS', 300, 1, 24 * 3600),
    historyRetentionMs: integer(env, 'HISTORY_RETENTION_SECONDS', 30 * 24 * 3600, 0, 100 * 365 * 24 * 3600) * 1000,
    recallWindowMs: integer(env, 'RECALL_WINDOW_SECONDS', 24 * 3600, 0, 365 * 24 * 3600) * 1000,
    nodeId: env.NODE_ID || undefined,
    keepalive: keepaliveBounds(env),
    push: {
      apns: apnsConfig(env),
      text: env.PUSH_TEXT || 'New message',
      coalesceMs: integer(env, 'PUSH_COALESCE_SECONDS', 10, 0, 3600) * 1000,
      retryBaseMs: integer(env, 'PUSH_RETRY_BASE_MS', 1000, 1, 60_000),
      maxAttempts: integer(env, 'PUSH_MAX_ATTEMPTS', 4, 1, 10)
    }
  }
}
