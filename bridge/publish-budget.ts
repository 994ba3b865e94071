// The per-user publish budget (shared with MQTT) for REST writes to the logs:
// sends, edits and reactions each append events, so each takes from it.
import type { FastifyReply } from 'fastify'
import type { Metrics } from '../observability/metrics.ts'
import { sendError } from './http-errors.ts'

/** 0 when allowed, else ms until the next publish is. */
export type TakePublish = (user: string) => number

/** Answers `429 rate_limited` (with `retry-after`) when `user` is over the budget; undefined when the write may go on. */
export function refuseOverBudget (reply: FastifyReply, user: string, takePublish: TakePublish | undefined, metrics?: Metrics): FastifyReply | undefined {
  const wait = takePublish?.(user) ?? 0
  if (wait <= 0) return undefined
  metrics?.rejected.inc({ code: 'rate_limited' })
  reply.header('retry-after', String(Math.ceil(wait / 1000)))
  return sendError(reply, 429, 'rate_limited', `more than the allowed publishes per second; retry in ${wait} ms`)
}
