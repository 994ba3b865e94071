// Embedded mode's attachment bytes: files under DATA_DIR/attachments, written
// by @tus/file-store (`<id>` and its `<id>.json` upload record).
import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import { FileStore } from '@tus/file-store'
import type { AttachmentBytes } from './attachment-bytes.ts'

export class DiskBytes implements AttachmentBytes {
  readonly kind = 'disk'
  readonly datastore: FileStore

  constructor (private readonly directory: string) {
    this.datastore = new FileStore({ directory })
  }

  async read (id: string): Promise<{ stream: ReturnType<typeof createReadStream>, size: number } | undefined> {
    // Only a finished upload (as S3 has an object only once its multipart upload completes).
    const upload = await this.datastore.getUpload(id).catch(() => undefined)
    if (upload === undefined || upload.offset !== upload.size) return undefined
    const path = join(this.directory, id)
    const info = await stat(path).catch(() => undefined)
    if (info?.isFile() !== true) return undefined
    return { stream: createReadStream(path), size: info.size }
  }

  async link (): Promise<undefined> { return undefined }

  close (): void {}

  async remove (id: string): Promise<void> {
    // Throws when there is no such upload: nothing to remove.
    await this.datastore.remove(id).catch(() => {})
  }
}
