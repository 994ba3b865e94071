// Optional end-to-end encryption: X25519 key agreement, HKDF-SHA256, and
// XChaCha20-Poly1305, all from the audited pure-JS @noble libraries (no
// Node-only modules, so it runs in browsers). The sender's and recipient's
// public keys travel in the sealed body, so either side (and any of their
// devices holding the same key pair) can derive the key. The user ids and
// message id are bound in as associated data: the server cannot relabel a
// ciphertext. Static keys: this is not a ratchet and has no forward secrecy.
import { x25519 } from '@noble/curves/ed25519.js'
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js'
import { hkdf } from '@noble/hashes/hkdf.js'
import { sha256 } from '@noble/hashes/sha2.js'
import { randomBytes } from '@noble/hashes/utils.js'

export const SCHEME = 'x25519-xchacha20poly1305-v1'

export interface KeyPair {
  publicKey: Uint8Array
  secretKey: Uint8Array
}

export interface SealedBody {
  e2ee: typeof SCHEME
  /** Sender's and recipient's public keys, base64. */
  from: string
  to: string
  nonce: string
  ciphertext: string
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()

export function toBase64 (bytes: Uint8Array): string {
  let binary = ''
  for (const byte of bytes) binary += String.fromCharCode(byte)
  return btoa(binary)
}

export function fromBase64 (text: string): Uint8Array {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0))
}

export function generateKeyPair (): KeyPair {
  const secretKey = x25519.utils.randomSecretKey()
  return { secretKey, publicKey: x25519.getPublicKey(secretKey) }
}

function messageKey (secretKey: Uint8Array, peerPublicKey: Uint8Array): Uint8Array {
  return hkdf(sha256, x25519.getSharedSecret(secretKey, peerPublicKey), undefined, encoder.encode('inboxd e2ee v1'), 32)
}

/** What the ciphertext is bound to: who sent it to whom, under which id. */
export function associatedData (from: string, to: string, id: string): Uint8Array {
  return encoder.encode(`${from}\n${to}\n${id}`)
}

export function isSealed (body: unknown): body is SealedBody {
  return typeof body === 'object' && body !== null && (body as { e2ee?: unknown }).e2ee === SCHEME
}

export function seal (plain: unknown, mine: KeyPair, theirPublicKey: Uint8Array, aad: Uint8Array): SealedBody {
  const nonce = randomBytes(24)
  const cipher = xchacha20poly1305(messageKey(mine.secretKey, theirPublicKey), nonce, aad)
  return {
    e2ee: SCHEME,
    from: toBase64(mine.publicKey),
    to: toBase64(theirPublicKey),
    nonce: toBase64(nonce),
    ciphertext: toBase64(cipher.encrypt(encoder.encode(JSON.stringify(plain))))
  }
}

/** Decrypts a body sealed to or by `mine`; throws if it was tampered with or is not for this key. */
export function open (sealed: SealedBody, mine: KeyPair, aad: Uint8Array): unknown {
  const myKey = toBase64(mine.publicKey)
  const other = sealed.from === myKey ? sealed.to : sealed.to === myKey ? sealed.from : undefined
  if (other === undefined) throw new Error('sealed for another key')
  const cipher = xchacha20poly1305(messageKey(mine.secretKey, fromBase64(other)), fromBase64(sealed.nonce), aad)
  return JSON.parse(decoder.decode(cipher.decrypt(fromBase64(sealed.ciphertext)))) as unknown
}
