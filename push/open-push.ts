// Push for the storage mode: devices and coalescing windows live in Redis
// (shared by every process) or in DATA_DIR; APNs is on only when configured.
import { join } from 'node:path'
import type { Logger } from 'pino'
import type { Config } from '../server/config.ts'
import type { BrokerStore } from '../storage/broker-store.ts'
import { LevelDeviceRegistry, RedisDeviceRegistry, type DeviceRegistry } from './device-registry.ts'
import { MemoryPushGate, RedisPushGate } from './push-gate.ts'
import { ApnsProvider } from './apns-provider.ts'
import { PushService, type PushServiceOptions } from './push-service.ts'

export async function openDeviceRegistry (config: Config, store: BrokerStore): Promise<DeviceRegistry> {
  return store.redis === undefined ? LevelDeviceRegistry.open(join(config.dataDir, 'devices')) : new RedisDeviceRegistry(store.redis)
}

export function openPush (
  config: Config,
  store: BrokerStore,
  devices: DeviceRegistry,
  lookups: Pick<PushServiceOptions, 'isConnected' | 'unreadTotal'>,
  log: Logger
): PushService | undefined {
  const apns = config.push.apns
  if (apns === undefined) {
    log.info('push disabled: set APNS_KEY, APNS_KEY_ID, APNS_TEAM_ID and APNS_TOPIC to enable APNs')
    return undefined
  }
  log.info({ topic: apns.topic, production: apns.production, origin: apns.origin }, 'push enabled: APNs')
  return new PushService({
    provider: new ApnsProvider(apns),
    devices,
    gate: store.redis === undefined ? new MemoryPushGate() : new RedisPushGate(store.redis),
    ...lookups,
    text: config.push.text,
    coalesceMs: config.push.coalesceMs,
    expirySeconds: config.backlogRetentionSeconds,
    retryBaseMs: config.push.retryBaseMs,
    maxAttempts: config.push.maxAttempts,
    log
  })
}
