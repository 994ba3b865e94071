// Reads the environment once, validates it, and returns a typed Config.
// Any invalid value throws ConfigError naming the variable, so main.ts can
// print one clear line and exit non-zero.
import { createPrivateKey } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { createSecureContext } from 'node:tls'

export class ConfigError extends Error {
  constructor (readonly variable: string, problem: string) {
    super(`invalid configuration: ${variable} ${problem}`)
  }
}

export type JwtKey =
  | { kind: 'secret', secret: string }
  | { kind: 'public-key', publicKey: string }
  /** Keys fetched from an identity provider's JWKS; unknown `kid`s refetch it at most once per cooldown. */
  | { kind: 'jwks', url: string, cooldownMs: number }

/** JWT_ISSUER / JWT_AUDIENCE: when set, every token must carry this `iss` / `aud`, whatever the key. */
export interface JwtClaims {
  issuer: string | undefined
  audience: string | undefined
}

export interface Config {
  mqttPort: number
  httpPort: number
  host: string
  /** REDIS_URL: Redis mode on one Redis (or a primary with replicas). */
  redisUrl: string | undefined
  /** REDIS_CLUSTER_NODES: Redis mode on a Redis Cluster, reached through these seed nodes. */
  redisClusterNodes: RedisNode[] | undefined
  /** DATABASE_URL: PostgreSQL as the long-term store and search index (issue #21), in either mode. */
  databaseUrl: string | undefined
  /** Redis mode: WAIT for replicas before an acknowledged write counts (0: off). */
  replication: Replication
  dataDir: string
  jwt: JwtKey
  jwtClaims: JwtClaims
  logLevel: string
  maxPayloadBytes: number
  backlogRetentionSeconds: number
  /** Embedded mode: how often expired backlog is swept (Redis expires it by TTL). */
  retentionSweepSeconds: number
  /** How long history is kept, in ms; 0 keeps it forever. */
  historyRetentionMs: number
  /** HOT_RETENTION_SECONDS: with an archive, how long the hot log (Redis, or the embedded log) keeps events (never longer than history). */
  hotRetentionMs: number
  /** How long after sending a sender may recall a message, in ms. */
  recallWindowMs: number
  /** How long after sending a sender may edit a message, in ms. */
  editWindowMs: number
  /** A stable id for this process in a cluster; random unless NODE_ID is set. */
  nodeId: string | undefined
  /** Redis mode: server processes behind the same ports (node:cluster); embedded mode always runs one. */
  workers: number
  maxGroupMembers: number
  /** PRESENCE_VISIBILITY: `contacts` (users who share a conversation or group) or `all`; blocks hide it either way. */
  presenceVisibility: 'all' | 'contacts'
  /** TLS_CERT and TLS_KEY set: mqtts and HTTPS/WSS listeners. */
  tls: TlsConfig | undefined
  /** TLS_ONLY=1: no plain MQTT or HTTP listener. */
  tlsOnly: boolean
  limits: Limits
  /** When set, POST /v1/admin/revoke takes `Authorization: Bearer <adminToken>`. */
  adminToken: string | undefined
  /** When set, GET /metrics requires `Authorization: Bearer <metricsToken>`. */
  metricsToken: string | undefined
  /** Accepted CONNECT keepalive range, seconds. */
  keepalive: { min: number, max: number }
  push: PushConfig
  /** Browser origins allowed to call the REST API (CORS); empty: no CORS headers. `['*']` allows any. */
  corsOrigins: string[]
  /** Development only: POST /v1/demo/token mints a token for any user (refused in production). */
  demoLogin: boolean
  /**
   * DURABILITY: what a PUBACK (or 2xx) promises. `process`: the write survives
   * a crash of the server process. `disk`: it was also fsynced (embedded mode:
   * LevelDB `sync`; Redis mode: the server starts only on a Redis with
   * `appendonly yes` and `appendfsync always`), so it survives a power cut.
   */
  durability: Durability
  attachments: AttachmentConfig
}

/** Attachments (issue #24): limits, and S3 when S3_BUCKET is set (else the disk, in embedded mode only). */
export interface AttachmentConfig {
  s3: { bucket: string, endpoint: string | undefined, region: string, forcePathStyle: boolean } | undefined
  maxUploadBytes: number
  /** Per user (0: off). */
  quotaBytes: number
  linkTtlSeconds: number
  orphanSeconds: number
  sweepSeconds: number
}

export type Durability = 'process' | 'disk'

export interface RedisNode { host: string, port: number }

export interface Replication {
  /** REDIS_WAIT_REPLICAS: replicas that must hold a write before it is acknowledged (0: do not wait). */
  replicas: number
  /** REDIS_WAIT_TIMEOUT_MS: how long to wait for them; fewer in time is a storage outage (no PUBACK, 503). */
  timeoutMs: number
}

export interface Limits {
  /** Per user and process, MQTT and REST together: publishes per second (0: off) and burst. */
  publish: { perSecond: number, burst: number }
  /** PUBLISH_RATE_EXEMPT: users never counted (servers and devices that send in bulk). */
  publishExempt: string[]
  /** Per source address and process: CONNECTs per second (0: off) and burst. */
  connect: { perSecond: number, burst: number }
  /** Devices of one user connected at once, across processes (0: off). */
  devicesPerUser: number
  /** Persistent sessions (inbox cursors) kept per user; beyond it the one furthest behind is evicted (0: off). */
  sessionsPerUser: number
  /** Presence topics one connection may be subscribed to at once (MAX_PRESENCE_WATCHES). */
  presenceWatches: number
  /** REST requests per minute per token (or address), across processes in Redis mode (0: off). */
  restPerMinute: number
  /** Push registrations (POST /v1/devices) one user may hold at once (0: off). */
  pushDevicesPerUser: number
  /** Users one user may block (0: off). */
  blocksPerUser: number
  /** Groups one user may be a member of, created or added to (0: off). */
  groupsPerUser: number
  /** MLS KeyPackage uploads per user and process: per second after a burst (0: off). Checking one costs CPU. */
  keyPackageUploads: { perSecond: number, burst: number }
}

export interface TlsConfig {
  certPath: string
  keyPath: string
  mqttsPort: number
  httpsPort: number
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

/** From a Firebase service-account JSON key. */
export interface FcmConfig {
  projectId: string
  clientEmail: string
  /** PEM (PKCS#8) RSA key that signs the OAuth2 assertion. */
  privateKey: string
  /** The key's token_uri: the assertion's audience. */
  tokenUri: string
  /** Where the assertion is posted: FCM_TOKEN_URL (a proxy, a test server), else tokenUri. */
  tokenUrl: string
  /** FCM_ORIGIN, else https://fcm.googleapis.com */
  origin: string
  /** Extra CA certificate (PEM) to trust for both. */
  ca: string | undefined
}

export interface PushConfig {
  apns: ApnsConfig | undefined
  fcm: FcmConfig | undefined
  /** The alert text; the message body never leaves the server. */
  text: string
  coalesceMs: number
  retryBaseMs: number
  maxAttempts: number
}

type Env = Record<string, string | undefined>

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

function presenceVisibility (env: Env): 'all' | 'contacts' {
  const value = env.PRESENCE_VISIBILITY || 'contacts'
  if (value !== 'all' && value !== 'contacts') throw new ConfigError('PRESENCE_VISIBILITY', `must be "contacts" or "all", got "${value}"`)
  return value
}

function durability (env: Env): Durability {
  const value = env.DURABILITY || 'process'
  if (value !== 'process' && value !== 'disk') throw new ConfigError('DURABILITY', `must be "process" or "disk", got "${value}"`)
  return value
}

function integer (env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name]
  if (raw === undefined || raw === '') return fallback
  if (!/^\d+$/.test(raw.trim())) throw new ConfigError(name, `must be a whole number, got "${raw}"`)
  const value = Number(raw)
  if (value < min || value > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${value}`)
  return value
}

const JWT_KEY_VARIABLES = ['JWT_SECRET', 'JWT_PUBLIC_KEY', 'JWT_JWKS_URL'] as const

function jwtKey (env: Env): JwtKey {
  const set = JWT_KEY_VARIABLES.filter((name) => env[name])
  if (set.length > 1) throw new ConfigError(set[0]!, `and ${set.slice(1).join(' and ')} are set together; set exactly one of ${JWT_KEY_VARIABLES.join(', ')}`)
  const publicKey = env.JWT_PUBLIC_KEY
  if (publicKey) {
    if (!publicKey.includes('-----BEGIN')) throw new ConfigError('JWT_PUBLIC_KEY', 'must be a PEM public key')
    return { kind: 'public-key', publicKey: publicKey.replace(/\\n/g, '\n') }
  }
  if (env.JWT_JWKS_URL) return jwks(env, env.JWT_JWKS_URL)
  const secret = env.JWT_SECRET
  if (!secret) throw new ConfigError('JWT_SECRET', 'is required (or set JWT_PUBLIC_KEY or JWT_JWKS_URL for RS256/ES256 tokens)')
  if (secret.length < 32) throw new ConfigError('JWT_SECRET', 'must be at least 32 characters')
  return { kind: 'secret', secret }
}

function jwks (env: Env, raw: string): JwtKey {
  let url: URL
  try { url = new URL(raw) } catch { throw new ConfigError('JWT_JWKS_URL', `is not a URL: "${raw}"`) }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new ConfigError('JWT_JWKS_URL', 'must be an https:// (or http://) URL')
  // fetch() refuses URLs with credentials: say so now rather than at the first token.
  if (url.username !== '' || url.password !== '') throw new ConfigError('JWT_JWKS_URL', 'must not contain a user name or password')
  return { kind: 'jwks', url: url.href, cooldownMs: integer(env, 'JWT_JWKS_COOLDOWN_SECONDS', 30, 1, 3600) * 1000 }
}

function jwtClaims (env: Env): JwtClaims {
  return { issuer: env.JWT_ISSUER || undefined, audience: env.JWT_AUDIENCE || undefined }
}

function databaseUrl (env: Env): string | undefined {
  const raw = env.DATABASE_URL
  if (raw === undefined || raw === '') return undefined
  let url: URL
  try { url = new URL(raw) } catch { throw new ConfigError('DATABASE_URL', 'is not a URL') }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') throw new ConfigError('DATABASE_URL', 'must start with postgres:// or postgresql://')
  return raw
}

function redisUrl (env: Env): string | undefined {
  const raw = env.REDIS_URL
  if (raw === undefined || raw === '') return undefined
  let url: URL
  try { url = new URL(raw) } catch { throw new ConfigError('REDIS_URL', `is not a URL: "${raw}"`) }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') throw new ConfigError('REDIS_URL', 'must start with redis:// or rediss://')
  return raw
}

/** `host:port,host:port,…` (IPv6 as `[addr]:port`): seed nodes; the client learns the rest of the cluster from them. */
function redisClusterNodes (env: Env): RedisNode[] | undefined {
  const raw = (env.REDIS_CLUSTER_NODES ?? '').trim()
  if (raw === '') return undefined
  if (env.REDIS_URL) throw new ConfigError('REDIS_CLUSTER_NODES', 'and REDIS_URL are set together; set REDIS_URL for one Redis or REDIS_CLUSTER_NODES for a Redis Cluster, not both')
  const nodes = raw.split(',').map((entry) => entry.trim()).filter((entry) => entry !== '').map((entry) => {
    const match = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(entry)
    const port = Number(match?.[2])
    if (match === null || port < 1 || port > 65535) throw new ConfigError('REDIS_CLUSTER_NODES', `has "${entry}", which is not host:port`)
    return { host: match[1]!.replace(/^\[|\]$/g, ''), port }
  })
  return nodes
}

function replication (env: Env): Replication {
  return {
    replicas: integer(env, 'REDIS_WAIT_REPLICAS', 0, 0, 100),
    timeoutMs: integer(env, 'REDIS_WAIT_TIMEOUT_MS', 1_000, 1, 60_000)
  }
}

/** Redis mode, on one Redis or on a cluster. */
export function usesRedis (config: Pick<Config, 'redisUrl' | 'redisClusterNodes'>): boolean {
  return config.redisUrl !== undefined || config.redisClusterNodes !== undefined
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

function httpsUrl (name: string, raw: string, originOnly: boolean): string {
  let url: URL
  try { url = new URL(raw) } catch { throw new ConfigError(name, `is not a URL: "${raw}"`) }
  if (url.protocol !== 'https:') throw new ConfigError(name, 'must be an https:// URL')
  if (originOnly && !/^https:\/\/[^/]+$/.test(raw)) throw new ConfigError(name, 'must be https://host[:port]')
  return raw
}

function fcmConfig (env: Env): FcmConfig | undefined {
  const path = env.FCM_SERVICE_ACCOUNT
  if (!path) return undefined
  let key: Record<string, unknown>
  try {
    key = JSON.parse(readFile('FCM_SERVICE_ACCOUNT', path)) as Record<string, unknown>
  } catch (error) {
    if (error instanceof ConfigError) throw error
    throw new ConfigError('FCM_SERVICE_ACCOUNT', `is not a JSON service-account key: ${(error as Error).message}`)
  }
  for (const field of ['project_id', 'client_email', 'private_key', 'token_uri']) {
    if (typeof key?.[field] !== 'string' || key[field] === '') throw new ConfigError('FCM_SERVICE_ACCOUNT', `has no "${field}" (is it a service-account key?)`)
  }
  const privateKey = key.private_key as string
  const tokenUri = httpsUrl('FCM_SERVICE_ACCOUNT', key.token_uri as string, false)
  try {
    if (createPrivateKey(privateKey).asymmetricKeyType !== 'rsa') throw new Error('not an RSA key')
  } catch (error) {
    throw new ConfigError('FCM_SERVICE_ACCOUNT', `has an unusable private_key: ${(error as Error).message}`)
  }
  return {
    projectId: key.project_id as string,
    clientEmail: key.client_email as string,
    privateKey,
    tokenUri,
    tokenUrl: env.FCM_TOKEN_URL ? httpsUrl('FCM_TOKEN_URL', env.FCM_TOKEN_URL, false) : tokenUri,
    origin: env.FCM_ORIGIN ? httpsUrl('FCM_ORIGIN', env.FCM_ORIGIN, true) : 'https://fcm.googleapis.com',
    ca: env.FCM_CA ? readFile('FCM_CA', env.FCM_CA) : undefined
  }
}

function tlsConfig (env: Env): TlsConfig | undefined {
  const certPath = env.TLS_CERT || undefined
  const keyPath = env.TLS_KEY || undefined
  if (certPath === undefined && keyPath === undefined) return undefined
  if (certPath === undefined) throw new ConfigError('TLS_CERT', 'is required when TLS_KEY is set')
  if (keyPath === undefined) throw new ConfigError('TLS_KEY', 'is required when TLS_CERT is set')
  const cert = readFile('TLS_CERT', certPath)
  const key = readFile('TLS_KEY', keyPath)
  try {
    createSecureContext({ cert, key })
  } catch (error) {
    throw new ConfigError('TLS_KEY', `does not fit TLS_CERT or is not a PEM key: ${(error as Error).message}`)
  }
  return { certPath, keyPath, mqttsPort: integer(env, 'MQTTS_PORT', 8883, 0, 65535), httpsPort: integer(env, 'HTTPS_PORT', 8443, 0, 65535) }
}

function tlsOnly (env: Env): boolean {
  const value = env.TLS_ONLY
  if (value === undefined || value === '' || value === '0') return false
  if (value !== '1') throw new ConfigError('TLS_ONLY', `must be 1 or 0, got "${value}"`)
  if (!env.TLS_CERT) throw new ConfigError('TLS_ONLY', 'needs TLS_CERT and TLS_KEY')
  return true
}

function adminToken (env: Env): string | undefined {
  const token = env.ADMIN_TOKEN
  if (token === undefined || token === '') return undefined
  if (token.length < 32) throw new ConfigError('ADMIN_TOKEN', 'must be at least 32 characters')
  return token
}

function metricsToken (env: Env): string | undefined {
  const token = env.METRICS_TOKEN
  if (token === undefined || token === '') return undefined
  if (token.length < 16) throw new ConfigError('METRICS_TOKEN', 'must be at least 16 characters')
  return token
}

function keepaliveBounds (env: Env): { min: number, max: number } {
  const min = integer(env, 'KEEPALIVE_MIN_SECONDS', 5, 1, 65535)
  const max = integer(env, 'KEEPALIVE_MAX_SECONDS', 1200, 1, 65535)
  if (min > max) throw new ConfigError('KEEPALIVE_MIN_SECONDS', `must not exceed KEEPALIVE_MAX_SECONDS (${max})`)
  return { min, max }
}

// Exact origins only (scheme://host[:port], no path or trailing slash): the
// browser's Origin header is compared as a string. `*` must be set on purpose.
function corsOrigins (env: Env): string[] {
  const raw = (env.CORS_ORIGINS ?? '').trim()
  if (raw === '') return []
  const origins = raw.split(',').map((origin) => origin.trim()).filter((origin) => origin !== '')
  if (origins.includes('*')) {
    if (origins.length > 1) throw new ConfigError('CORS_ORIGINS', 'may be "*" or a list of origins, not both')
    return ['*']
  }
  for (const origin of origins) {
    let url: URL | undefined
    try { url = new URL(origin) } catch { url = undefined }
    if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.origin !== origin) {
      throw new ConfigError('CORS_ORIGINS', `has "${origin}", which is not an origin like https://app.example.com[:port]`)
    }
  }
  return origins
}

// The id rule of protocol/identity.ts (isValidId), repeated: config is a leaf and imports nothing of ours.
const USER_ID = /^[A-Za-z0-9._@-]{1,128}$/

/** A comma-separated list of user ids (spaces around them allowed); each must be a valid id. */
function userIdList (env: Env, name: string): string[] {
  const ids = (env[name] ?? '').split(',').map((id) => id.trim()).filter((id) => id !== '')
  const bad = ids.find((id) => !USER_ID.test(id))
  if (bad !== undefined) throw new ConfigError(name, `has "${bad}", which is not a user id (1-128 characters of A-Z a-z 0-9 . _ @ -)`)
  return [...new Set(ids)]
}

function demoLogin (env: Env, jwt: JwtKey): boolean {
  const raw = env.DEMO_LOGIN ?? ''
  if (raw !== '' && raw !== '0' && raw !== '1') throw new ConfigError('DEMO_LOGIN', `must be 1 or 0, got "${raw}"`)
  if (raw !== '1') return false
  // It hands out a token for any user name: never on a production server.
  if (env.NODE_ENV === 'production') throw new ConfigError('DEMO_LOGIN', 'must not be set when NODE_ENV=production (it lets anyone sign in as anyone)')
  if (jwt.kind !== 'secret') throw new ConfigError('DEMO_LOGIN', 'needs JWT_SECRET (the server cannot sign tokens with JWT_PUBLIC_KEY or JWT_JWKS_URL)')
  return true
}

// Every connected device may hold a session, and a connected device's session is
// never evicted: so the session bound must leave room for all of them.
function sessionsPerUser (env: Env): number {
  const sessions = integer(env, 'MAX_SESSIONS_PER_USER', 100, 0, 100_000)
  const devices = integer(env, 'MAX_DEVICES_PER_USER', 50, 0, 100_000)
  if (sessions > 0 && devices > sessions) throw new ConfigError('MAX_SESSIONS_PER_USER', `must be at least MAX_DEVICES_PER_USER (${devices}), got ${sessions}`)
  return sessions
}

function attachmentConfig (env: Env): AttachmentConfig {
  const bucket = env.S3_BUCKET || undefined
  const endpoint = env.S3_ENDPOINT || undefined
  if (bucket === undefined && endpoint !== undefined) throw new ConfigError('S3_ENDPOINT', 'is set without S3_BUCKET')
  if (endpoint !== undefined && !/^https?:\/\/[^\s/]+/.test(endpoint)) throw new ConfigError('S3_ENDPOINT', `must be an http(s) URL, got "${endpoint}"`)
  const pathStyle = env.S3_FORCE_PATH_STYLE ?? ''
  if (pathStyle !== '' && pathStyle !== '0' && pathStyle !== '1') throw new ConfigError('S3_FORCE_PATH_STYLE', `must be 1 or 0, got "${pathStyle}"`)
  const mib = 1024 * 1024
  return {
    s3: bucket === undefined ? undefined : { bucket, endpoint, region: env.S3_REGION || env.AWS_REGION || 'us-east-1', forcePathStyle: pathStyle === '1' },
    maxUploadBytes: integer(env, 'MAX_UPLOAD_BYTES', 100 * mib, 1, 5 * 1024 * 1024 * mib),
    quotaBytes: integer(env, 'UPLOAD_QUOTA_BYTES', 1024 * mib, 0, Number.MAX_SAFE_INTEGER),
    linkTtlSeconds: integer(env, 'ATTACHMENT_LINK_TTL_SECONDS', 300, 1, 7 * 24 * 3600),
    orphanSeconds: integer(env, 'ATTACHMENT_ORPHAN_SECONDS', 24 * 3600, 1, 365 * 24 * 3600),
    sweepSeconds: integer(env, 'ATTACHMENT_SWEEP_SECONDS', 60, 1, 24 * 3600)
  }
}

export function loadConfig (env: Env = process.env): Config {
  const logLevel = env.LOG_LEVEL || 'info'
  if (!LOG_LEVELS.includes(logLevel)) throw new ConfigError('LOG_LEVEL', `must be one of ${LOG_LEVELS.join(', ')}`)
  return {
    mqttPort: integer(env, 'MQTT_PORT', 1883, 0, 65535),
    httpPort: integer(env, 'HTTP_PORT', 8080, 0, 65535),
    host: env.HOST || '0.0.0.0',
    redisUrl: redisUrl(env),
    redisClusterNodes: redisClusterNodes(env),
    databaseUrl: databaseUrl(env),
    replication: replication(env),
    dataDir: env.DATA_DIR || './data',
    jwt: jwtKey(env),
    jwtClaims: jwtClaims(env),
    logLevel,
    maxPayloadBytes: integer(env, 'MAX_PAYLOAD_BYTES', 64 * 1024, 256, 16 * 1024 * 1024),
    backlogRetentionSeconds: integer(env, 'BACKLOG_RETENTION_SECONDS', 7 * 24 * 3600, 1, 10 * 365 * 24 * 3600),
    retentionSweepSeconds: integer(env, 'RETENTION_SWEEP_SECONDS', 300, 1, 24 * 3600),
    historyRetentionMs: integer(env, 'HISTORY_RETENTION_SECONDS', 30 * 24 * 3600, 0, 100 * 365 * 24 * 3600) * 1000,
    hotRetentionMs: integer(env, 'HOT_RETENTION_SECONDS', 7 * 24 * 3600, 1, 100 * 365 * 24 * 3600) * 1000,
    recallWindowMs: integer(env, 'RECALL_WINDOW_SECONDS', 24 * 3600, 0, 365 * 24 * 3600) * 1000,
    editWindowMs: integer(env, 'EDIT_WINDOW_SECONDS', 24 * 3600, 0, 365 * 24 * 3600) * 1000,
    nodeId: env.NODE_ID || undefined,
    workers: integer(env, 'WORKERS', availableParallelism(), 1, 256),
    maxGroupMembers: integer(env, 'MAX_GROUP_MEMBERS', 1000, 2, 100_000),
    presenceVisibility: presenceVisibility(env),
    metricsToken: metricsToken(env),
    adminToken: adminToken(env),
    limits: {
      // On by default, generous for people (a person types far slower; a phone back online
      // sends its backlog in bursts); servers that send in bulk are listed in PUBLISH_RATE_EXEMPT.
      publish: { perSecond: integer(env, 'PUBLISH_RATE', 20, 0, 1_000_000), burst: integer(env, 'PUBLISH_BURST', 200, 1, 10_000_000) },
      publishExempt: userIdList(env, 'PUBLISH_RATE_EXEMPT'),
      connect: { perSecond: integer(env, 'CONNECT_RATE', 500, 0, 1_000_000), burst: integer(env, 'CONNECT_BURST', 2_000, 1, 10_000_000) },
      devicesPerUser: integer(env, 'MAX_DEVICES_PER_USER', 50, 0, 100_000),
      sessionsPerUser: sessionsPerUser(env),
      // A chat app watches its contact list; never off (each watch costs memory while connected).
      presenceWatches: integer(env, 'MAX_PRESENCE_WATCHES', 1_000, 1, 100_000),
      restPerMinute: integer(env, 'REST_RATE_PER_MINUTE', 6_000, 0, 10_000_000),
      // What one account may keep on the server: generous for people, a wall for a script.
      pushDevicesPerUser: integer(env, 'MAX_PUSH_DEVICES_PER_USER', 20, 0, 100_000),
      blocksPerUser: integer(env, 'MAX_BLOCKS_PER_USER', 10_000, 0, 10_000_000),
      groupsPerUser: integer(env, 'MAX_GROUPS_PER_USER', 500, 0, 1_000_000),
      // A device uploads KeyPackages on its first run and to top them up: rarely.
      keyPackageUploads: { perSecond: integer(env, 'MLS_UPLOADS_PER_MINUTE', 6, 0, 1_000_000) / 60, burst: 10 }
    },
    tls: tlsConfig(env),
    tlsOnly: tlsOnly(env),
    keepalive: keepaliveBounds(env),
    corsOrigins: corsOrigins(env),
    demoLogin: demoLogin(env, jwtKey(env)),
    durability: durability(env),
    attachments: attachmentConfig(env),
    push: {
      apns: apnsConfig(env),
      fcm: fcmConfig(env),
      text: env.PUSH_TEXT || 'New message',
      coalesceMs: integer(env, 'PUSH_COALESCE_SECONDS', 10, 0, 3600) * 1000,
      retryBaseMs: integer(env, 'PUSH_RETRY_BASE_MS', 1000, 1, 60_000),
      maxAttempts: integer(env, 'PUSH_MAX_ATTEMPTS', 4, 1, 10)
    }
  }
}
