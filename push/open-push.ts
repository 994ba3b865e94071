// Push for the storage mode: devices and coalescing windows live in Redis
// (shared by every process) or in DATA_DIR; APNs (iOS) and FCM (Android)
// are each on only when configured.
import { join } from 'node:path'
import type { Logger } from 'pino'
import type { Config } from '../config/config.ts'
import type { BrokerStore } from '../storage/broker-store.ts'
import { LevelDeviceRegistry, type DeviceRegistry } from './device-registry.ts'
import { RedisDeviceRegistry } from './redis-device-registry.ts'
import { MemoryPushGate, RedisPushGate } from './push-gate.ts'
import { ApnsProvider } from './apns-provider.ts'
import { FcmProvider } from './fcm-provider.ts'
import type { PushProvider } from './push-provider.ts'
import { PushService, type PushServiceOptions } from './push-service.ts'

export async function openDeviceRegistry (config: Config, store: BrokerStore): Promise<DeviceRegistry> {
  return store.redis === undefined ? LevelDeviceRegistry.open(join(config.dataDir, 'devices'), { sync: config.durability === 'disk' }) : new RedisDeviceRegistry(store.redis)
}

export function openPush (
  config: Config,
  store: BrokerStore,
  devices: DeviceRegistry,
  lookups: Pick<PushServiceOptions, 'isConnected' | 'unreadTotal' | 'isMuted' | 'onOutcome'>,
  log: Logger
): PushService | undefined {
  const { apns, fcm } = config.push
  const providers: PushProvider[] = []
  if (apns === undefined) {
    log.info('APNs push disabled: set APNS_KEY, APNS_KEY_ID, APNS_TEAM_ID and APNS_TOPIC to enable APNs')
  } else {
    log.info({ topic: apns.topic, production: apns.production, origin: apns.origin }, 'push enabled: APNs')
    providers.push(new ApnsProvider(apns))
  }
  if (fcm === undefined) {
    log.info('FCM push disabled: set FCM_SERVICE_ACCOUNT (a service-account JSON key) to enable FCM')
  } else {
    log.info({ project: fcm.projectId, origin: fcm.origin, tokenUrl: fcm.tokenUrl }, 'push enabled: FCM')
    providers.push(new FcmProvider(fcm))
  }
  if (providers.length === 0) return undefined
  return new PushService({
    providers,
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
