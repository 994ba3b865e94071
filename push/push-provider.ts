// A push service (APNs now, FCM later) behind one interface: the push
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
  /** Worth trying again later (throttled, service trouble, network). */
  | { status: 'retry', reason: string }
  | { status: 'failed', reason: string }

export interface PushProvider {
  readonly platform: string
  send (target: PushTarget, push: AlertPush): Promise<PushOutcome>
  close (): Promise<void>
}
