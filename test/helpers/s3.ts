// A stand-in for S3: s3rver on a free port, with its own directory and one
// bucket, and the settings a server or store needs to use it. s3rver 3.7 has
// multipart uploads but not ListParts nor AbortMultipartUpload, which
// @tus/s3-store calls to resume and to remove: both are added here, on the
// parts s3rver itself stored (test-only; real S3, MinIO and R2 have them).
import S3rver from 's3rver'
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { S3Settings } from '../../attachments/s3-bytes.ts'

export const S3_BUCKET = 'inboxd-attachments'

export interface OwnS3 {
  endpoint: string
  settings: S3Settings
  /** The server's environment for this S3. */
  env: Record<string, string>
  stop (): Promise<void>
}

export async function startS3 (): Promise<OwnS3> {
  const server = new S3rver({ port: 0, address: '127.0.0.1', silent: true, directory: mkdtempSync(join(tmpdir(), 'inboxd-s3-')), configureBuckets: [{ name: S3_BUCKET }] })
  const store = (server as unknown as { store: { getResourcePath (bucket: string, key: undefined, resource: string): string } }).store
  const middleware = (server as unknown as { middleware: Array<(ctx: any, next: () => Promise<void>) => Promise<void>> }).middleware
  middleware.unshift(async (ctx, next) => {
    const uploadId = ctx.query.uploadId as string | undefined
    const [, bucket, ...key] = (ctx.path as string).split('/')
    if (uploadId === undefined || key.length === 0 || !['GET', 'DELETE'].includes(ctx.method as string)) return await next()
    const dir = join(store.getResourcePath(bucket!, undefined, 'uploads'), uploadId)
    if (ctx.method === 'DELETE') {
      rmSync(dir, { recursive: true, force: true })
      ctx.status = 204
      return
    }
    // A part is listed once complete: s3rver writes its .md5 after its bytes.
    const numbers = (() => { try { return readdirSync(dir).filter((name) => /^\d+\.md5$/.test(name)).map((name) => Number(name.slice(0, -4))).sort((a, b) => a - b) } catch { return undefined } })()
    if (numbers === undefined) {
      ctx.status = 404
      ctx.type = 'application/xml'
      ctx.body = '<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchUpload</Code><Message>The specified upload does not exist.</Message></Error>'
      return
    }
    const parts = numbers.map((n) => `<Part><PartNumber>${n}</PartNumber><ETag>"${readFileSync(join(dir, `${n}.md5`), 'utf8')}"</ETag><Size>${statSync(join(dir, String(n))).size}</Size></Part>`).join('')
    ctx.type = 'application/xml'
    ctx.body = `<?xml version="1.0" encoding="UTF-8"?><ListPartsResult><Bucket>${bucket}</Bucket><Key>${key.join('/')}</Key><UploadId>${uploadId}</UploadId><IsTruncated>false</IsTruncated>${parts}</ListPartsResult>`
  })
  const { port } = await server.run()
  const endpoint = `http://127.0.0.1:${port}`
  // s3rver's own credentials.
  const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }
  return {
    endpoint,
    settings: { bucket: S3_BUCKET, endpoint, region: 'us-east-1', forcePathStyle: true, credentials },
    env: { S3_BUCKET, S3_ENDPOINT: endpoint, S3_FORCE_PATH_STYLE: '1', AWS_ACCESS_KEY_ID: credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey },
    stop: () => server.close()
  }
}
