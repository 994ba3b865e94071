// The log feed across processes in Redis mode. Local listeners are called
// at once; other processes get the events of one event-loop turn batched.
//
// On a Redis Cluster it is directed: each process subscribes to its own
// sharded channel `inboxd:feed:{n:<node>}` (SSUBSCRIBE; a sharded channel
// lives on its slot's primary alone), and an event goes only to the
// processes that hold one of its user's connected devices, read from
// presence (`clientId → <node>|…`): per turn, one presence read per distinct
// user (auto-pipelined, one write per primary), then one SPUBLISH per target
// process, after the previous turn's (the reads of two turns overlap; a slow
// shard must not let a later event overtake an earlier one). So no process hears events for users it holds no connection for,
// and the feed's traffic spreads over the primaries.
// Why a device cannot miss an event for good: its presence is written (in
// CONNECT's authentication) before its stream first reads the log
// (broker/inbox/inbox-delivery.ts). An event appended after that read is
// looked up in presence after the append, so after the presence write: its
// process is notified. One appended before it is in what the stream reads.
//
// On one Redis it stays a broadcast: one PUBLISH per turn on `inboxd:feed`,
// every process hears every batch and ignores its own. Measured on one Redis
// (docs/architecture.md), directing costs that Redis 2.5 times the CPU per
// 1:1 event and 11 times per event of a 1,000-member group (a presence read
// per member), and one Redis is what is busiest; it would save only the
// receivers' parsing. Broadcast also needs no presence to be right.
import type { Logger } from 'pino'
import { presenceConnectionsKey as connectionsKey } from './redis-keys.ts'
import { LocalFeed, seqOf, type Interest, type LogFeed, type LogListener } from './log-feed.ts'
import type { RedisClient } from './redis-client.ts'
import { subscribeShard, type RedisTarget, type ShardSubscription } from './redis-connection.ts'
import { nodeTag, ownerKey } from './redis-keys.ts'

/** On the bus: `[user, event]`, or `[tail, [[user, seq], ...]]` for a group event. */
type Entry = [string, string] | [string, Array<[string, number]>]

/** The sharded channel a process listens on. */
export const feedChannel = (node: string): string => ownerKey('feed', nodeTag(node))
/** One Redis: the one channel every process hears. */
const BROADCAST = 'inboxd:feed'

/** The processes holding a user's connections, from presence values `<node>|<token>`. */
function nodesOf (values: string[]): Set<string> {
  const nodes = new Set<string>()
  for (const value of values) {
    const bar = value.indexOf('|')
    if (bar > 0) nodes.add(value.slice(0, bar))
  }
  return nodes
}

export class RedisFeed implements LogFeed {
  readonly #local = new LocalFeed()
  readonly #listeners: Array<{ listener: LogListener, interested: Interest }> = []
  readonly #resync: Array<() => void> = []
  readonly #pub: RedisClient
  readonly #nodeId: string
  readonly #log: Logger
  readonly #directed: boolean
  #subscription: ShardSubscription | undefined
  #pending: Entry[] = []
  /** Settles once the last turn's messages are handed to the connection (directed). */
  #sent: Promise<void> = Promise.resolve()
  #closed = false

  private constructor (pub: RedisClient, nodeId: string, log: Logger, directed: boolean) {
    this.#pub = pub
    this.#nodeId = nodeId
    this.#log = log
    this.#directed = directed
  }

  /**
   * `pub`: the command connection (shared); the feed opens its own subscription: to this
   * node's sharded channel on a cluster, to the broadcast channel on one Redis.
   */
  static async open (pub: RedisClient, target: RedisTarget, nodeId: string, log: Logger): Promise<RedisFeed> {
    const directed = target.kind === 'cluster'
    const feed = new RedisFeed(pub, nodeId, log, directed)
    feed.#subscription = await subscribeShard(target, pub, directed ? feedChannel(nodeId) : BROADCAST, 'feed', log,
      (message) => feed.#receive(message.toString()),
      () => { for (const listener of feed.#resync) listener() },
      directed)
    return feed
  }

  publish (user: string, event: string): void {
    this.#local.publish(user, event)
    if (this.#pending.length === 0) setImmediate(() => { void this.#flush() })
    this.#pending.push([user, event])
  }

  publishMany (tail: string, recipients: Array<[string, number]>): void {
    this.#local.publishMany(tail, recipients)
    if (this.#pending.length === 0) setImmediate(() => { void this.#flush() })
    this.#pending.push([tail, recipients])
  }

  async #flush (): Promise<void> {
    const batch = this.#pending
    this.#pending = []
    if (batch.length === 0) return
    try {
      if (!this.#directed) {
        await this.#pub.publish(BROADCAST, `${this.#nodeId}\n${JSON.stringify(batch)}`)
        return
      }
      // The presence reads of consecutive turns overlap, but a turn's messages leave only after
      // the previous turn's: a slow read (a busy shard) must not let a later event overtake an earlier one.
      const located = this.#locate(batch)
      located.catch(() => {})
      const sent = this.#sent.then(async () => ({ replies: this.#send(batch, await located) }))
      this.#sent = sent.then(() => {}, () => {})
      await (await sent).replies
    } catch (error) {
      // The events are in the log; remote devices catch up on their next gap or reconnect.
      this.#log.warn({ err: error, events: batch.length }, 'could not publish log notifications')
    }
  }

  /** One SPUBLISH per process holding a device of the batch's users, issued now. */
  #send (batch: Entry[], where: Map<string, Set<string>>): Promise<unknown> {
    const byNode = new Map<string, Entry[]>()
    const add = (node: string, entry: Entry): void => {
      if (node === this.#nodeId) return
      const entries = byNode.get(node)
      if (entries === undefined) byNode.set(node, [entry])
      else entries.push(entry)
    }
    for (const entry of batch) {
      const [first, second] = entry
      if (typeof second === 'string') {
        for (const node of where.get(first)!) add(node, entry)
        continue
      }
      // A group event: each process gets the tail once, with only the members it holds.
      const members = new Map<string, Array<[string, number]>>()
      for (const recipient of second) {
        for (const node of where.get(recipient[0])!) {
          const list = members.get(node)
          if (list === undefined) members.set(node, [recipient])
          else list.push(recipient)
        }
      }
      for (const [node, list] of members) add(node, [first, list])
    }
    return Promise.all([...byNode].map(([node, entries]) => this.#pub.spublish(feedChannel(node), `${node}\n${JSON.stringify(entries)}`)))
  }

  /** Which processes hold each user's connections: one presence read per distinct user of the batch. */
  async #locate (batch: Entry[]): Promise<Map<string, Set<string>>> {
    const users = new Set<string>()
    for (const [first, second] of batch) {
      if (typeof second === 'string') users.add(first)
      else for (const [user] of second) users.add(user)
    }
    const list = [...users]
    const values = await Promise.all(list.map((user) => this.#pub.hvals(connectionsKey(user))))
    return new Map(list.map((user, i) => [user, nodesOf(values[i]!)]))
  }

  /** `<sender>\n<batch>` on the broadcast channel (our own are skipped), `<us>\n<batch>` on ours. */
  #receive (message: string): void {
    const newline = message.indexOf('\n')
    if (!this.#directed && message.slice(0, newline) === this.#nodeId) return
    let batch: Entry[]
    try {
      batch = JSON.parse(message.slice(newline + 1)) as Entry[]
    } catch {
      return
    }
    // Closed is checked before each call: a listener may close the feed, and a closing
    // subscription connection still reads what was already on its way.
    for (const [first, second] of batch) {
      if (typeof second === 'string') {
        const seq = seqOf(second)
        for (const { listener } of this.#listeners) {
          if (this.#closed) return
          listener(first, seq, second)
        }
        continue
      }
      for (const { listener, interested } of this.#listeners) {
        for (const [user, seq] of second) {
          if (this.#closed) return
          if (interested(user)) listener(user, seq, `{"seq":${seq},${first}`)
        }
      }
    }
  }

  listen (listener: LogListener, interested: Interest = () => true): void {
    this.#local.listen(listener, interested)
    this.#listeners.push({ listener, interested })
  }

  onResync (listener: () => void): void { this.#resync.push(listener) }

  async close (): Promise<void> {
    this.#closed = true
    void this.#local.close()
    this.#subscription?.close()
    if (this.#pending.length > 0) await this.#flush()
  }
}
