// Attachments: resumable uploads with the tus protocol (tus-js-client, which
// resumes from the server's offset after a dropped connection) and downloads
// through links that expire. For end-to-end encrypted conversations a file is
// encrypted before it leaves the device, with a fresh key per file
// (XChaCha20-Poly1305); the key and the ciphertext's SHA-256 travel inside the
// encrypted message, as Signal and WhatsApp do, so the server stores only
// ciphertext and the receiver checks it got exactly what was sent.
import { Upload } from 'tus-js-client'
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js'
import { sha256 } from '@noble/hashes/sha2.js'
import { randomBytes } from '@noble/hashes/utils.js'
import { fromBase64, toBase64 } from './e2ee.ts'
import { ApiError } from './rest.ts'
import type { Attachment } from './types.ts'

export interface UploadOptions {
  /** Media type, e.g. `image/jpeg` (default `application/octet-stream`). */
  type?: string
  /** A small base64 image shown before the file is downloaded (at most 8,192 characters). In an encrypted conversation it travels encrypted. */
  thumbnail?: string
  /** Bytes sent so far, and the total. */
  onProgress?: (sent: number, total: number) => void
  /** Encrypt the file before it leaves the device (default: when end-to-end encryption is configured). */
  encrypt?: boolean
  /** Waits between retries after a failure (then it resumes from the server's offset); default 0, 1, 3, 5, 10, 20 s. */
  retryDelays?: number[]
}

const NONCE = 24

/** Encrypts with a fresh key: nonce ‖ ciphertext, and the SHA-256 of that. */
export function encryptFile (plain: Uint8Array): { sealed: Uint8Array, key: string, digest: string } {
  const key = randomBytes(32)
  const nonce = randomBytes(NONCE)
  const ciphertext = xchacha20poly1305(key, nonce).encrypt(plain)
  const sealed = new Uint8Array(NONCE + ciphertext.length)
  sealed.set(nonce)
  sealed.set(ciphertext, NONCE)
  return { sealed, key: toBase64(key), digest: toBase64(sha256(sealed)) }
}

/** Checks the digest, then decrypts; throws when either does not hold. */
export function decryptFile (sealed: Uint8Array, key: string, digest: string): Uint8Array {
  if (toBase64(sha256(sealed)) !== digest) throw new Error('attachment digest mismatch: not the file that was sent')
  return xchacha20poly1305(fromBase64(key), sealed.subarray(0, NONCE)).decrypt(sealed.subarray(NONCE))
}

export class AttachmentsApi {
  constructor (
    private readonly baseUrl: string,
    private readonly token: (forceNew: boolean) => Promise<string>,
    private readonly request: <T>(method: string, path: string) => Promise<T>
  ) {}

  async upload (data: Uint8Array, options: UploadOptions & { encrypt: boolean }): Promise<Attachment> {
    const type = options.type ?? 'application/octet-stream'
    const encrypted = options.encrypt ? encryptFile(data) : undefined
    const bytes = encrypted?.sealed ?? data
    // Encrypted: the server learns neither the type nor the real size (the plaintext's type travels in the message).
    const sentType = encrypted === undefined ? type : 'application/octet-stream'
    const id = await new Promise<string>((resolve, reject) => {
      const upload = new Upload(toSource(bytes) as any, {
        endpoint: `${this.baseUrl}/v1/uploads`,
        uploadSize: bytes.length,
        metadata: { filetype: sentType },
        retryDelays: options.retryDelays ?? [0, 1000, 3000, 5000, 10_000, 20_000],
        // No fingerprint store: a resume is within this call (tus-js-client asks HEAD for the offset after each failure).
        storeFingerprintForResuming: false,
        onBeforeRequest: async (req) => { req.setHeader('Authorization', `Bearer ${await this.token(false)}`) },
        onProgress: options.onProgress === undefined ? null : (sent, total) => options.onProgress!(sent, total),
        onError: (error) => reject(uploadError(error)),
        onSuccess: () => resolve(upload.url!.split('/').pop()!)
      })
      upload.start()
    })
    return {
      id,
      size: data.length,
      type,
      ...(options.thumbnail === undefined ? {} : { thumbnail: options.thumbnail }),
      ...(encrypted === undefined ? {} : { key: encrypted.key, digest: encrypted.digest })
    }
  }

  /** The bytes of an attachment (decrypted and checked when it carries a key). */
  async download (attachment: Attachment | string): Promise<Uint8Array> {
    const ref = typeof attachment === 'string' ? { id: attachment } : attachment
    const link = await this.request<{ url: string }>('GET', `/v1/attachments/${encodeURIComponent(ref.id)}/link`)
    // The link is its own credential (a presigned URL, or the server's signed one): no Authorization header.
    const response = await fetch(new URL(link.url, this.baseUrl))
    if (!response.ok) throw new ApiError(response.status, 'download_failed', `downloading attachment ${ref.id} answered ${response.status}`)
    const bytes = new Uint8Array(await response.arrayBuffer())
    return 'key' in ref && ref.key !== undefined && ref.digest !== undefined ? decryptFile(bytes, ref.key, ref.digest) : bytes
  }
}

/** tus-js-client reads a Buffer in Node and a Blob in browsers. */
function toSource (bytes: Uint8Array): unknown {
  const NodeBuffer = (globalThis as { Buffer?: { from (bytes: Uint8Array): unknown } }).Buffer
  return NodeBuffer !== undefined ? NodeBuffer.from(bytes) : new Blob([bytes as BlobPart])
}

function uploadError (error: Error): Error {
  const response = (error as { originalResponse?: { getStatus (): number, getBody (): string } | null }).originalResponse
  if (response === undefined || response === null) return error
  let body: { error?: string, message?: string } = {}
  try { body = JSON.parse(response.getBody()) as typeof body } catch {}
  return new ApiError(response.getStatus(), body.error ?? 'upload_failed', body.message ?? error.message)
}
