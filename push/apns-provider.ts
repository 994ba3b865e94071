// APNs through apns2 (token-based auth: an ES256 provider JWT from the .p8
// key). apns2 always dials https://<host>:443; for an HTTP/2 gateway or a
// test server, APNS_ORIGIN swaps the client's connection pool (its `client`,
// an undici Pool) for one pointed at that origin, trusting APNS_CA.
import { createHash } from 'node:crypto'
import { ApnsClient, ApnsError, Errors, Host, Notification } from 'apns2'
import { Pool } from 'undici'
import type { ApnsConfig } from '../config/config.ts'
import type { AlertPush, PushOutcome, PushProvider, PushTarget } from './push-provider.ts'

const BAD_TOKEN_REASONS = new Set<string>([Errors.badDeviceToken, Errors.deviceTokenNotForTopic])

/** apns-collapse-id is at most 64 bytes; longer conversation ids are hashed. */
function collapseId (key: string): string {
  return Buffer.byteLength(key) <= 64 ? key : createHash('sha256').update(key).digest('hex')
}

export class ApnsProvider implements PushProvider {
  readonly platform = 'ios'
  readonly #production: ApnsClient
  readonly #sandbox: ApnsClient

  constructor (config: ApnsConfig) {
    const client = (host: string): ApnsClient => {
      const apns = new ApnsClient({ team: config.teamId, keyId: config.keyId, signingKey: config.signingKey, defaultTopic: config.topic, host })
      if (config.origin !== undefined) {
        void apns.client.close()
        const pool = new Pool(config.origin, {
          allowH2: true,
          connections: 4,
          connect: config.ca === undefined ? {} : { ca: config.ca }
        })
        ;(apns as { client: unknown }).client = pool
      }
      return apns
    }
    this.#production = client(Host.production)
    this.#sandbox = client(Host.development)
  }

  async send (target: PushTarget, push: AlertPush): Promise<PushOutcome> {
    const notification = new Notification(target.token, {
      alert: { title: push.title, body: push.text },
      badge: push.badge,
      sound: 'default',
      mutableContent: true,
      collapseId: collapseId(push.collapseKey),
      expiration: push.expiresAt,
      data: push.data
    })
    try {
      await (target.sandbox ? this.#sandbox : this.#production).send(notification)
      return { status: 'sent' }
    } catch (error) {
      if (!(error instanceof ApnsError)) return { status: 'retry', reason: (error as Error).message }
      const reason = String(error.reason)
      if (error.statusCode === 410 || reason === Errors.unregistered) {
        return { status: 'unregistered', since: typeof error.timestamp === 'number' ? error.timestamp : undefined }
      }
      if (BAD_TOKEN_REASONS.has(reason)) return { status: 'bad_token', reason }
      if (error.statusCode === 429 || error.statusCode >= 500) return { status: 'retry', reason: `${error.statusCode} ${reason}` }
      return { status: 'failed', reason: `${error.statusCode} ${reason}` }
    }
  }

  async close (): Promise<void> {
    await Promise.all([this.#production.close(), this.#sandbox.close()])
  }
}
