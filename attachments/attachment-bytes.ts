// Where attachment bytes live: the local disk under DATA_DIR (embedded mode)
// or S3-compatible object storage. Uploads arrive through the tus protocol,
// whose stores (@tus/file-store, @tus/s3-store) write them resumably; this
// interface adds what the product needs besides: reading the bytes, a link
// that expires, and removal. One conformance suite runs against both
// (test/attachment-store.conformance.test.ts).
import type { Readable } from 'node:stream'
import type { DataStore } from '@tus/utils'

export interface AttachmentBytes {
  readonly kind: 'disk' | 's3'
  /** The tus store uploads are written through (bridge/routes/attachments.ts mounts it). */
  readonly datastore: DataStore
  /** The stored bytes of a finished upload, or undefined when there are none. */
  read (id: string): Promise<{ stream: Readable, size: number } | undefined>
  /** A URL that serves the bytes for `ttlSeconds` without any other credential; undefined when the server serves them itself (disk). */
  link (id: string, ttlSeconds: number, type: string): Promise<string | undefined>
  /** Removes the bytes, finished or not; removing what is not there is harmless. */
  remove (id: string): Promise<void>
  close (): void
}
