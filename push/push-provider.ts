// A push service (APNs for iOS, FCM for Android) behind one interface: the push
// service decides *when* and *what*; a provider only knows how to deliver
// one alert to one device token and what the answer means.

export interface PushTarget {
  token: string
  /** APNs: the device was built against the sandbox environment. */
  sandbox: boolean
}

/** Never carries the message body: the app fetches (and decrypts) it itself. */
export interface AlertPush {
  title: string
  text: string
  badge: number
  /** Pushes with the same key replace each other on the device (one per conversation). */
  collapseKey: string
  /** Unix seconds after which the push service may drop it. */
  expiresAt: number
  data: { conversation: string, id: string, seq: number }
}

export type PushOutcome =
  | { status: 'sent' }
  /** The token is no longer valid as of `since` (ms), e.g. the app was uninstalled. */
  | { status: 'unregistered', since: number | undefined }
  /** The token was never valid for this app. */
  | { status: 'bad_token', reason: string }
  /** Worth trying again later (throttled, service trouble, network); not before `afterMs` if the service said so (Retry-After). */
  | { status: 'retry', reason: string, afterMs?: number }
  | { status: 'failed', reason: string }

export interface PushProvider {
  /** The device platform it serves (a registration's `platform`). */
  readonly platform: 'ios' | 'android'
  send (target: PushTarget, push: AlertPush): Promise<PushOutcome>
  close (): Promise<void>
}
