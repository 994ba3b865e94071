// What the server checks of an uploaded KeyPackage before it stores it
// (docs/mls.md): it decodes it with the MLS library, and refuses one that is not
// a KeyPackage of our cipher suite, whose basic credential does not name the
// uploading `<user>:<device>`, whose signatures do not verify with its own
// signature key, or that has expired. That stops a device publishing packages
// that claim to be someone else's. It proves nothing about who holds the key:
// members still check credentials when they add someone (docs/mls.md, risks).
import { createHash } from 'node:crypto'
import { decodeMlsMessage, getCiphersuiteFromName, getCiphersuiteImpl, type CiphersuiteImpl, type CiphersuiteName, type KeyPackage } from 'ts-mls'
import { verifyKeyPackage } from 'ts-mls/keyPackage.js'
import { verifyLeafNodeSignatureKeyPackage } from 'ts-mls/leafNode.js'

/** The one cipher suite groups use: X25519, AES-128-GCM, SHA-256, Ed25519 (docs/mls.md). */
export const MLS_CIPHER_SUITE: CiphersuiteName = 'MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519'

/** The largest KeyPackage accepted, encoded (an MLSMessage): ours are about 340 bytes. */
export const MAX_KEY_PACKAGE_BYTES = 2048

export interface CheckedKeyPackage {
  /** Lowercase hex SHA-256 of the bytes. */
  ref: string
  /** base64 of the bytes as uploaded. */
  data: string
}

export interface ParsedKeyPackage extends CheckedKeyPackage {
  keyPackage: KeyPackage
}

export class KeyPackageRejected extends Error {}

export class KeyPackageChecker {
  private constructor (private readonly impl: CiphersuiteImpl, private readonly now: () => number) {}

  static async create (now: () => number = Date.now): Promise<KeyPackageChecker> {
    return new KeyPackageChecker(await getCiphersuiteImpl(getCiphersuiteFromName(MLS_CIPHER_SUITE)), now)
  }

  /**
   * The package, or KeyPackageRejected saying why: everything but the signatures (cheap: no public-key
   * operation), so a caller can refuse an upload before paying for them. `base64` is standard base64 of an
   * encoded MLSMessage (wire format mls_key_package).
   */
  parse (base64: string, user: string, device: string): ParsedKeyPackage {
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(base64) || base64.length % 4 !== 0) throw new KeyPackageRejected('not standard base64')
    const bytes = Buffer.from(base64, 'base64')
    if (bytes.length === 0) throw new KeyPackageRejected('empty')
    if (bytes.length > MAX_KEY_PACKAGE_BYTES) throw new KeyPackageRejected(`${bytes.length} bytes, more than ${MAX_KEY_PACKAGE_BYTES}`)
    let decoded: ReturnType<typeof decodeMlsMessage>
    try {
      decoded = decodeMlsMessage(Uint8Array.from(bytes), 0)
    } catch {
      decoded = undefined
    }
    if (decoded === undefined) throw new KeyPackageRejected('not an MLS message')
    const [message, end] = decoded
    if (end !== bytes.length) throw new KeyPackageRejected('bytes after the message')
    if (message.wireformat !== 'mls_key_package') throw new KeyPackageRejected(`wire format ${message.wireformat}, not mls_key_package`)
    const kp = message.keyPackage
    if (message.version !== 'mls10' || kp.version !== 'mls10') throw new KeyPackageRejected('not MLS 1.0')
    if (kp.cipherSuite !== MLS_CIPHER_SUITE) throw new KeyPackageRejected(`cipher suite ${kp.cipherSuite}, not ${MLS_CIPHER_SUITE}`)
    const credential = kp.leafNode.credential
    const identity = credential.credentialType === 'basic' ? Buffer.from(credential.identity).toString('utf8') : undefined
    if (identity !== `${user}:${device}`) throw new KeyPackageRejected(`its credential must be basic, with identity "${user}:${device}"`)
    if (kp.leafNode.leafNodeSource !== 'key_package') throw new KeyPackageRejected('its leaf node is not of a key package')
    const notAfterMs = Number(kp.leafNode.lifetime.notAfter) * 1000
    if (notAfterMs < this.now()) throw new KeyPackageRejected('expired (lifetime.not_after is past)')
    if (Buffer.from(kp.initKey).equals(Buffer.from(kp.leafNode.hpkePublicKey))) throw new KeyPackageRejected('init_key equals the leaf encryption key (RFC 9420, 10.1)')
    return { ref: createHash('sha256').update(bytes).digest('hex'), data: base64, keyPackage: kp }
  }

  /** Both signatures (the KeyPackage's and its leaf node's) under the package's own signature key. */
  async verify ({ keyPackage }: ParsedKeyPackage): Promise<void> {
    if (!await verifyKeyPackage(keyPackage, this.impl.signature).catch(() => false) ||
        !await verifyLeafNodeSignatureKeyPackage(keyPackage.leafNode, this.impl.signature).catch(() => false)) {
      throw new KeyPackageRejected('a signature does not verify')
    }
  }
}
