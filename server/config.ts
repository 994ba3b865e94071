// Reads the environment once, validates it, and returns a typed Config.
// Any invalid value throws ConfigError naming the variable, so main.ts can
// print one clear line and exit non-zero.

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
    nodeId: env.NODE_ID || undefined
  }
}
