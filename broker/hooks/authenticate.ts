// CONNECT: the password is a JWT verified exactly as the REST bridge verifies
// it, and the clientId must be `<sub>:<deviceId>`, so no user can connect
// as, take over, or drain the queue of another user's device.
import type { Client } from 'aedes'
import type { AuthenticateError } from 'aedes'
import { claimsProblem, parseClientId, type TokenClaims } from '../../protocol/identity.ts'
import type { Logger } from 'pino'
import { KeysUnavailableError, type VerifyToken } from '../../auth/token-verifier.ts'

export type { VerifyToken }

// MQTT 3.1.1 CONNACK return codes.
const IDENTIFIER_REJECTED = 2
const SERVER_UNAVAILABLE = 3
const BAD_USERNAME_OR_PASSWORD = 4

function refusal (returnCode: number, reason: string): AuthenticateError {
  const error = new Error(reason) as AuthenticateError
  error.returnCode = returnCode
  return error
}

export interface AuthenticateOptions {
  verifyToken: VerifyToken
  log: Logger
  /** Rules on the CONNECT itself (keepalive, will), checked first. */
  connectProblem: (client: Client) => { returnCode: number, reason: string } | undefined
  /** Called for every accepted client before the CONNACK; a rejection refuses the connection. */
  onAuthenticated: (client: Client, claims: TokenClaims, token: string) => Promise<void>
  /** A reason to refuse this user's new device (too many connected), with its CONNACK code. */
  deviceProblem?: (client: Client, userId: string) => Promise<{ returnCode: number, reason: string } | undefined>
  /** True when the token was revoked (logout, or an admin) for this device. */
  isRevoked: (token: string, claims: TokenClaims, deviceId: string) => Promise<boolean>
}

export function createAuthenticate ({ verifyToken, log, connectProblem, onAuthenticated, isRevoked, deviceProblem }: AuthenticateOptions) {
  return function authenticate (
    client: Client,
    _username: string | undefined,
    password: Buffer | undefined,
    done: (error: AuthenticateError | null, success: boolean | null) => void
  ): void {
    const device = parseClientId(client.id)
    if (device === undefined) {
      log.info({ clientId: client.id }, 'connect refused: clientId is not <userId>:<deviceId>')
      return done(refusal(IDENTIFIER_REJECTED, 'clientId must be <userId>:<deviceId>'), false)
    }
    const problem = connectProblem(client)
    if (problem !== undefined) {
      log.info({ clientId: client.id, reason: problem.reason }, 'connect refused')
      return done(refusal(problem.returnCode, problem.reason), false)
    }
    if (password === undefined || password.length === 0) {
      return done(refusal(BAD_USERNAME_OR_PASSWORD, 'password must be a JWT'), false)
    }
    const token = password.toString('utf8')
    verifyToken(token).then(async (claims) => {
      const problem = claimsProblem(claims)
      if (problem !== undefined) {
        log.info({ clientId: client.id, problem }, 'connect refused: unusable token')
        return done(refusal(BAD_USERNAME_OR_PASSWORD, problem), false)
      }
      const { sub, exp, iat } = claims as TokenClaims
      if (sub !== device.userId) {
        log.info({ clientId: client.id, sub }, 'connect refused: clientId belongs to another user')
        return done(refusal(IDENTIFIER_REJECTED, 'clientId must start with the token\'s sub'), false)
      }
      const facts: TokenClaims = { sub, ...(exp === undefined ? {} : { exp }), ...(iat === undefined ? {} : { iat }) }
      let revoked: boolean
      try {
        revoked = await isRevoked(token, facts, device.deviceId)
      } catch (error) {
        log.error({ err: error, clientId: client.id }, 'connect refused: could not check revocations')
        return done(refusal(SERVER_UNAVAILABLE, 'server unavailable'), false)
      }
      if (revoked) {
        log.info({ clientId: client.id }, 'connect refused: token revoked')
        return done(refusal(BAD_USERNAME_OR_PASSWORD, 'token revoked'), false)
      }
      const tooMany = await deviceProblem?.(client, sub).catch(() => undefined)
      if (tooMany !== undefined) {
        log.info({ clientId: client.id, reason: tooMany.reason }, 'connect refused')
        return done(refusal(tooMany.returnCode, tooMany.reason), false)
      }
      onAuthenticated(client, facts, token).then(() => done(null, true), (error: Error) => {
        log.error({ err: error, clientId: client.id }, 'connect refused: could not record the connection')
        done(refusal(SERVER_UNAVAILABLE, 'server unavailable'), false)
      })
    }, (error: Error) => {
      // The token was not judged (the JWKS could not be fetched): "try later", not "bad password".
      if (error instanceof KeysUnavailableError) {
        log.warn({ clientId: client.id, reason: error.message }, 'connect refused: token keys unavailable')
        return done(refusal(SERVER_UNAVAILABLE, 'server unavailable'), false)
      }
      log.info({ clientId: client.id, reason: error.message }, 'connect refused: token rejected')
      done(refusal(BAD_USERNAME_OR_PASSWORD, 'token rejected'), false)
    })
  }
}
