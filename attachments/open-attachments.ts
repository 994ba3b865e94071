// Opens attachments for the mode: S3 when S3_BUCKET is set, else the disk
// under DATA_DIR in embedded mode; Redis mode without S3 has none (disk is
// per machine), and the routes answer 501 attachments_not_configured.
import { join } from 'node:path'
import type { Config } from '../config/config.ts'
import type { BrokerStore } from '../storage/broker-store.ts'
import { AttachmentService } from './attachment-service.ts'
import type { AttachmentBytes } from './attachment-bytes.ts'
import { DiskBytes } from './disk-bytes.ts'
import { S3Bytes } from './s3-bytes.ts'
import { LevelAttachmentMeta } from './level-attachment-meta.ts'
import { RedisAttachmentMeta } from './redis-attachment-meta.ts'
import { RedisUploadLocker } from './redis-upload-locker.ts'

/** Conversations one attachment may be shared with (forwarding included). */
export const MAX_GRANTS = 100

export async function openAttachments (
  config: Pick<Config, 'attachments' | 'dataDir' | 'durability' | 'historyRetentionMs'>,
  store: Pick<BrokerStore, 'redis' | 'signal'>,
  isMember: (user: string, group: string) => Promise<boolean>,
  onError: (error: unknown) => void
): Promise<AttachmentService | undefined> {
  const settings = config.attachments
  let bytes: AttachmentBytes
  if (settings.s3 !== undefined) bytes = new S3Bytes(settings.s3)
  else if (store.redis === undefined) bytes = new DiskBytes(join(config.dataDir, 'attachments'))
  else return undefined
  const meta = store.redis !== undefined
    ? new RedisAttachmentMeta(store.redis)
    : await LevelAttachmentMeta.open(join(config.dataDir, 'attachment-records'), { sync: config.durability === 'disk' })
  return new AttachmentService({
    meta,
    bytes,
    locker: store.redis === undefined ? undefined : new RedisUploadLocker(store.redis, store.signal),
    isMember,
    onError,
    limits: {
      maxUploadBytes: settings.maxUploadBytes,
      quotaBytes: settings.quotaBytes,
      linkTtlSeconds: settings.linkTtlSeconds,
      orphanMs: settings.orphanSeconds * 1000,
      retentionMs: config.historyRetentionMs,
      maxGrants: MAX_GRANTS,
      sweepMs: settings.sweepSeconds * 1000
    }
  })
}
