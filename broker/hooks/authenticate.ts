// CONNECT: the password is a JWT verified exactly as the REST bridge verifies
// it, and the clientId must be `<sub>:<deviceId>`, so no user can connect
// as, take over, or drain the queue of another user's device.
import type { Client } from 'aedes'
import type { AuthenticateError } from 'aedes'
import { claimsProblem, parseClientId, type TokenClaims } from '../../protocol/identity.ts'
import type { Logger } from 'pino'
import { KeysUnavailableError, type VerifyToken } from '../../auth/token-verifier.ts'
import type { ConnectRefusal } from './connect-rules.ts'

export type { VerifyToken }

// MQTT 3.1.1 CONNACK return codes.
const IDENTIFIER_REJECTED = 2
const SERVER_UNAVAILABLE = 3
const BAD_USERNAME_OR_PASSWORD = 4

export interface AuthenticateOptions {
  verifyToken: VerifyToken
  log: Logger
  /** Rules on the CONNECT itself (keepalive, will, CONNECT rate), checked first. */
  connectProblem: (client: Client) => ConnectRefusal | undefined
  /** Called for every accepted client before the CONNACK; a rejection refuses the connection. */
  onAuthenticated: (client: Client, claims: TokenClaims, token: string) => Promise<void>
  /** A reason to refuse this user's new device (too many connected), with its CONNACK code. */
  deviceProblem?: (client: Client, userId: string) => Promise<ConnectRefusal | undefined>
  /** True when the token was revoked (logout, or an admin) for this device. */
  isRevoked: (token: string, claims: TokenClaims, deviceId: string) => Promise<boolean>
  /** Each refusal, after it is logged (metrics). */
  onRefused?: (refusal: ConnectRefusal) => void
}

export function createAuthenticate ({ verifyToken, log, connectProblem, onAuthenticated, isRevoked, deviceProblem, onRefused }: AuthenticateOptions) {
  return function authenticate (
    client: Client,
    _username: string | undefined,
    password: Buffer | undefined,
    done: (error: AuthenticateError | null, success: boolean | null) => void
  ): void {
    const device = parseClientId(client.id)
    // One line per refusal: who (never the token), the CONNACK code and why; `error`: the server's own failure.
    const refuse = (refusal: ConnectRefusal, facts: Record<string, unknown> = {}, error?: unknown): void => {
      const line = { clientId: client.id, user: device?.userId, device: device?.deviceId, returnCode: refusal.returnCode, code: refusal.code, reason: refusal.reason, ...facts }
      if (error === undefined) log.info(line, 'connect refused')
      else if (refusal.code === 'auth_unavailable') log.warn(line, 'connect refused')
      else log.error({ ...line, err: error }, 'connect refused')
      onRefused?.(refusal)
      const refused = new Error(refusal.reason) as AuthenticateError
      refused.returnCode = refusal.returnCode
      done(refused, false)
    }
    if (device === undefined) return refuse({ returnCode: IDENTIFIER_REJECTED, code: 'client_id', reason: 'clientId must be <userId>:<deviceId>' })
    const problem = connectProblem(client)
    if (problem !== undefined) return refuse(problem)
    if (password === undefined || password.length === 0) {
      return refuse({ returnCode: BAD_USERNAME_OR_PASSWORD, code: 'no_token', reason: 'password must be a JWT' })
    }
    const token = password.toString('utf8')
    verifyToken(token).then(async (claims) => {
      const problem = claimsProblem(claims)
      if (problem !== undefined) return refuse({ returnCode: BAD_USERNAME_OR_PASSWORD, code: 'bad_token', reason: problem })
      const { sub, exp, iat } = claims as TokenClaims
      if (sub !== device.userId) {
        return refuse({ returnCode: IDENTIFIER_REJECTED, code: 'wrong_user', reason: 'clientId must start with the token\'s sub' }, { sub })
      }
      const facts: TokenClaims = { sub, ...(exp === undefined ? {} : { exp }), ...(iat === undefined ? {} : { iat }) }
      let revoked: boolean
      try {
        revoked = await isRevoked(token, facts, device.deviceId)
      } catch (error) {
        return refuse({ returnCode: SERVER_UNAVAILABLE, code: 'storage_unavailable', reason: 'could not check revocations' }, {}, error)
      }
      if (revoked) return refuse({ returnCode: BAD_USERNAME_OR_PASSWORD, code: 'revoked', reason: 'token revoked' })
      const tooMany = await deviceProblem?.(client, sub).catch(() => undefined)
      if (tooMany !== undefined) return refuse(tooMany)
      onAuthenticated(client, facts, token).then(() => done(null, true), (error: Error) => {
        refuse({ returnCode: SERVER_UNAVAILABLE, code: 'storage_unavailable', reason: 'could not record the connection' }, {}, error)
      })
    }, (error: Error) => {
      // The token was not judged (the JWKS could not be fetched): "try later", not "bad password".
      if (error instanceof KeysUnavailableError) {
        return refuse({ returnCode: SERVER_UNAVAILABLE, code: 'auth_unavailable', reason: `token keys unavailable: ${error.message}` }, {}, error)
      }
      refuse({ returnCode: BAD_USERNAME_OR_PASSWORD, code: 'bad_token', reason: `token rejected: ${error.message}` })
    })
  }
}
