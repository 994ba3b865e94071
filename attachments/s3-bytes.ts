// Attachment bytes in S3-compatible object storage, written by @tus/s3-store
// (the object `<id>`, its `<id>.info` and, mid-upload, a multipart upload and
// an `<id>.part`). Downloads are presigned URLs, so bytes never pass through
// the server.
import type { Readable } from 'node:stream'
import { DeleteObjectsCommand, GetObjectCommand, S3Client, type S3ClientConfig } from '@aws-sdk/client-s3'
import { getSignedUrl } from '@aws-sdk/s3-request-presigner'
import { S3Store } from '@tus/s3-store'
import type { AttachmentBytes } from './attachment-bytes.ts'

export interface S3Settings {
  bucket: string
  /** An S3-compatible server (MinIO, R2, s3rver, ...); unset: AWS. */
  endpoint: string | undefined
  region: string
  /** Path-style URLs (`<endpoint>/<bucket>/<key>`), which most S3-compatible servers need. */
  forcePathStyle: boolean
  /** Unset: the AWS SDK's usual chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, profiles, roles). */
  credentials?: { accessKeyId: string, secretAccessKey: string }
}

export class S3Bytes implements AttachmentBytes {
  readonly kind = 's3'
  readonly datastore: S3Store
  readonly #client: S3Client
  readonly #bucket: string

  constructor (settings: S3Settings) {
    const config: S3ClientConfig = {
      region: settings.region,
      forcePathStyle: settings.forcePathStyle,
      // S3-compatible servers: checksums only where S3 requires them. The SDK's default (a CRC32
      // trailer, aws-chunked) is not understood by all of them, which then store the chunk framing.
      ...(settings.endpoint === undefined ? {} : { endpoint: settings.endpoint, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' }),
      ...(settings.credentials === undefined ? {} : { credentials: settings.credentials })
    }
    this.#bucket = settings.bucket
    this.#client = new S3Client(config)
    this.datastore = new S3Store({ s3ClientConfig: { ...config, bucket: settings.bucket } })
  }

  async read (id: string): Promise<{ stream: Readable, size: number } | undefined> {
    try {
      const object = await this.#client.send(new GetObjectCommand({ Bucket: this.#bucket, Key: id }))
      return { stream: object.Body as Readable, size: object.ContentLength ?? 0 }
    } catch (error) {
      if ((error as { name?: string }).name === 'NoSuchKey' || (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return undefined
      throw error
    }
  }

  async link (id: string, ttlSeconds: number, type: string): Promise<string> {
    // Served as a download with its declared type: a stored HTML file never runs as a page of the bucket's origin.
    const command = new GetObjectCommand({ Bucket: this.#bucket, Key: id, ResponseContentType: type, ResponseContentDisposition: 'attachment' })
    return await getSignedUrl(this.#client, command, { expiresIn: ttlSeconds })
  }

  async remove (id: string): Promise<void> {
    // Aborts an unfinished multipart upload (throws when there is none, or it completed).
    await this.datastore.remove(id).catch(() => {})
    await this.#client.send(new DeleteObjectsCommand({
      Bucket: this.#bucket,
      Delete: { Objects: [{ Key: id }, { Key: `${id}.info` }, { Key: `${id}.part` }], Quiet: true }
    }))
  }

  close (): void { this.#client.destroy() }
}
