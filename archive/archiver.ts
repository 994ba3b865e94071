// The archiver: follows every user log and group log of the hot tier into the
// long-term store (archive/archive-store.ts), off the PUBACK path. Each round
// it takes the owners the hot tier lists as pending (history/archive-source.ts),
// reads what is past each one's archive mark, writes it as one batch (rows
// already there are left as they are, so a retry or an overlap is harmless),
// applies recalls to what was archived before, and only then moves the mark.
// A failed round (the archive down or slow) is retried with backoff; the hot
// tier keeps everything not archived meanwhile, since its retention asks the
// mark (archive/archive-retention.ts).
//
// Retention of the archive itself (HISTORY_RETENTION_SECONDS; 0 keeps it
// forever): a second loop beside the rounds removes what is older, in batches
// of TRIM_BATCH, about once a minute, on one process at a time (the holder of
// partition 0's lease on Redis).
//
// One archiver per partition at a time: on Redis the source's lease names it
// (renewed every round, taken over within LEASE_MS of a holder dying); the
// embedded source has one partition and one process.
import type { ArchiveSource, RawGroupEntry, RawLogEntry } from '../history/archive-source.ts'
import { parseGroupRef } from '../history/group-store.ts'
import { groupEventTail, parseGroupEvent, type GroupMessageEvent } from '../history/group-events.ts'
import { editedMessage, editWithoutBody, tombstone } from '../history/events.ts'
import type { ArchivedGroupEvent, ArchivedUserEvent, ArchiveStore, SearchDoc } from './archive-store.ts'
import { documentTokens } from '../search/tokenize.ts'
import { searchableText } from '../search/searchable-text.ts'

/** Entries read and written per owner per batch, at most. */
const BATCH = 500
/** Rows a round aims at (each owner's batch is cut to share it, down to MIN_BATCH): short rounds move marks, and report the lag, often. */
const ROUND_ROWS = 5_000
const MIN_BATCH = 50
/** Owners taken per round and partition. */
const OWNERS_PER_ROUND = 200
/** Owners archived at once. */
const CONCURRENCY = 8
const LEASE_MS = 10_000
/** Rows removed per trim call; another call follows at once while a call removes a full batch. */
const TRIM_BATCH = 10_000
/** Longest pause between trims. */
const TRIM_EVERY_MS = 60_000

export interface ArchiveMetrics {
  /** Events written (user and group rows). */
  archived (rows: number): void
  batch (): void
  error (): void
  /** Seconds the oldest event not archived yet has waited (0: none). */
  lag (seconds: number): void
  /** Rows removed by retention. */
  trimmed (rows: number): void
}

export interface ArchiverOptions {
  /** This process's name in leases. */
  holder: string
  /** Pause between rounds that found nothing to do (ms). */
  idleMs?: number
  metrics?: ArchiveMetrics
  /** A round without an answer this long counts as a failure (ms; default STALL_MS); it is still waited for. */
  stallMs?: number
  /** Keep archived events this long (ms); 0 or absent: forever. */
  retentionMs?: number
  /** Every failed round or trim (each is retried). */
  onError?: (error: unknown) => void
  /** Every round that succeeded. */
  onSuccess?: () => void
}

const NO_METRICS: ArchiveMetrics = { archived: () => {}, batch: () => {}, error: () => {}, lag: () => {}, trimmed: () => {} }

/** Backoff while the archive fails: 0.2 s doubling up to 10 s. */
const backoff = (failures: number): number => Math.min(10_000, 200 * 2 ** Math.min(failures - 1, 6))

/** Texts tokenised lately: a 1:1 message is in two logs (its sender's and its recipient's), archived moments apart. */
const TOKEN_CACHE = 2_048
const lately = new Map<string, string[]>()

function tokensOf (text: string): string[] {
  const cached = lately.get(text)
  if (cached !== undefined) return cached
  const tokens = documentTokens(text)
  if (lately.size >= TOKEN_CACHE) lately.delete(lately.keys().next().value!)
  lately.set(text, tokens)
  return tokens
}

/** A message's search doc: its text, unless it is not text (an encrypted or other JSON body) or it was recalled. */
function searchDoc (event: { body?: unknown, recalled?: boolean }): SearchDoc | undefined {
  if (event.recalled === true) return undefined
  const text = searchableText(event.body)
  if (text === undefined) return undefined
  const tokens = tokensOf(text)
  return tokens.length === 0 ? undefined : { text, tokens }
}

/** A recall or an edit of the message at `seq` (a gseq for a group); `edit` carries the new body. */
interface Change { seq: number, edit?: { body: unknown, at: number } }

/** The change an event makes to an earlier message, if it is a recall or an edit. */
function changeOf (event: { type?: string, body?: unknown, ts?: unknown }, seq: unknown): Change | undefined {
  if (typeof seq !== 'number') return undefined
  if (event.type === 'recall') return { seq }
  if (event.type === 'edit' && typeof event.ts === 'number') return { seq, edit: { body: event.body, at: event.ts } }
  return undefined
}

/** What one owner's part of a round read: its rows, the recalls and edits among them, and where its mark goes. */
interface OwnerBatch {
  owner: string
  after: number
  version: string
  users: ArchivedUserEvent[]
  groups: ArchivedGroupEvent[]
  changes: Change[]
  last: number | undefined
  nextSince: number | undefined
}

/** Rows written per statement (PostgreSQL) or batch (LevelDB). */
const WRITE_CHUNK = 5_000

function userRow (owner: string, { meta, value }: RawLogEntry): { row: ArchivedUserEvent, change?: Change } {
  const ref = parseGroupRef(value)
  const row: ArchivedUserEvent = {
    owner,
    seq: meta.seq,
    ts: meta.ts,
    conversation: meta.peer,
    kind: meta.kind,
    ...(meta.id === '' ? {} : { id: meta.id }),
    event: ref ?? value
  }
  if (ref !== undefined) return { row }
  if (meta.kind === 'm') {
    const search = searchDoc(JSON.parse(value) as { body?: unknown, recalled?: boolean })
    if (search !== undefined) row.search = search
    return { row }
  }
  if (meta.kind === 'x') {
    const event = JSON.parse(value) as { type?: string, messageSeq?: number, body?: unknown, ts?: number }
    const change = changeOf(event, event.messageSeq)
    // An edit event is archived without its body: the message's row holds the latest text, and a
    // later recall then has no copy of the text to find in the archive.
    if (event.type === 'edit') row.event = editWithoutBody(value)
    if (change !== undefined) return { row, change }
  }
  return { row }
}

function groupRow (group: string, { gseq, tail }: RawGroupEntry): { row: ArchivedGroupEvent, change?: Change } {
  const event = parseGroupEvent(tail)
  const ts = typeof event?.ts === 'number' ? event.ts : 0
  if (event?.type === 'message') {
    const row: ArchivedGroupEvent = { group, gseq, ts, kind: 'm', from: event.from, id: event.id, tail }
    const search = searchDoc(event)
    if (search !== undefined) row.search = search
    return { row }
  }
  const from = event !== undefined && 'by' in event && typeof event.by === 'string' ? event.by : ''
  const row: ArchivedGroupEvent = { group, gseq, ts, kind: 'e', from, tail: event?.type === 'edit' ? editWithoutBody(tail) : tail }
  const change = event?.type === 'recall' || event?.type === 'edit' ? changeOf(event, event.messageGseq) : undefined
  return change === undefined ? { row } : { row, change }
}

/** How long a round (or opening the archive) may go without an answer before it counts as an outage. */
export const STALL_MS = 10_000

/**
 * Waits for `work`; every `stallMs` it is still pending (the archive frozen or very slow: a call
 * without an answer is not failed by anyone), calls `stalled` with how many times so far.
 */
export async function watched<T> (work: Promise<T>, stallMs: number, stalled: (times: number) => Promise<void> | void): Promise<T> {
  let settled = false
  const done = work.then(() => { settled = true }, () => { settled = true })
  for (let times = 1; ; times++) {
    let timer: ReturnType<typeof setTimeout> | undefined
    await Promise.race([done, new Promise<void>((resolve) => { timer = setTimeout(resolve, stallMs); timer.unref() })])
    clearTimeout(timer)
    if (settled) return await work
    await stalled(times)
  }
}

/**
 * Seconds the oldest event not archived has waited, from the hot tier alone: the lag while the
 * archive cannot be reached (or is not open yet). On a Redis Cluster, the oldest of a sample.
 */
export async function waitingSeconds (source: ArchiveSource): Promise<number> {
  let oldest = await source.oldestPending()
  if (oldest === undefined) {
    for (let partition = 0; partition < source.partitions; partition++) {
      const [first] = await source.pending(partition, 1)
      if (first !== undefined && (oldest === undefined || first.since < oldest)) oldest = first.since
    }
  }
  return oldest === undefined ? 0 : Math.max(0, (Date.now() - oldest) / 1000)
}

export class Archiver {
  readonly #source: ArchiveSource
  readonly #store: ArchiveStore
  readonly #holder: string
  readonly #idleMs: number
  readonly #metrics: ArchiveMetrics
  readonly #onError: (error: unknown) => void
  readonly #onSuccess: () => void
  readonly #retentionMs: number
  readonly #stallMs: number
  #running = false
  #stopped = false
  #loops: Array<Promise<void>> = []
  readonly #sleepers = new Set<() => void>()
  #failures = 0

  constructor (source: ArchiveSource, store: ArchiveStore, options: ArchiverOptions) {
    this.#source = source
    this.#store = store
    this.#holder = options.holder
    this.#idleMs = options.idleMs ?? 200
    this.#metrics = options.metrics ?? NO_METRICS
    this.#onError = options.onError ?? (() => {})
    this.#onSuccess = options.onSuccess ?? (() => {})
    this.#retentionMs = options.retentionMs ?? 0
    this.#stallMs = options.stallMs ?? STALL_MS
  }

  start (): void {
    if (this.#running || this.#stopped) return
    this.#running = true
    this.#loops = [this.#run()]
    if (this.#retentionMs > 0) this.#loops.push(this.#trimLoop())
  }

  async stop (): Promise<void> {
    this.#stopped = true
    await this.pause()
  }

  /** Stops the rounds once the current one ends (its batch written), until `resume`; an account deletion runs meanwhile. */
  async pause (): Promise<void> {
    this.#running = false
    for (const wake of this.#sleepers) wake()
    await Promise.all(this.#loops)
  }

  /** Starts the rounds again after `pause` (not after `stop`). */
  resume (): void {
    this.start()
  }

  /** Waits `ms`, or less if stopped. */
  async #sleep (ms: number): Promise<void> {
    if (!this.#running) return
    await new Promise<void>((resolve) => {
      const wake = (): void => { this.#sleepers.delete(wake); clearTimeout(timer); resolve() }
      const timer = setTimeout(wake, ms)
      timer.unref()
      this.#sleepers.add(wake)
    })
  }

  async #run (): Promise<void> {
    while (this.#running) {
      let busy = false
      try {
        busy = await watched(this.round(), this.#stallMs, (times) => this.#stalled(times))
        this.#failures = 0
        this.#onSuccess()
      } catch (error) {
        this.#failures++
        this.#metrics.error()
        this.#onError(error)
        // The lag keeps growing while the archive is down: the hot tier still says how long.
        await waitingSeconds(this.#source).then((seconds) => this.#metrics.lag(seconds), () => {})
      }
      const pause = this.#failures > 0 ? backoff(this.#failures) : busy ? 0 : this.#idleMs
      if (pause > 0) await this.#sleep(pause)
      else await new Promise((resolve) => setImmediate(resolve))
    }
  }

  /** A round without an answer for a while: an outage (once), and the lag kept current meanwhile. */
  async #stalled (times: number): Promise<void> {
    if (times === 1) {
      this.#metrics.error()
      this.#onError(new Error(`the archive has not answered for ${this.#stallMs / 1000} s`))
    }
    await waitingSeconds(this.#source).then((seconds) => this.#metrics.lag(seconds), () => {})
  }

  /** Retention: a trim now and then, at least twice per retention period (so a short one is kept closely), at most once a minute. */
  async #trimLoop (): Promise<void> {
    const every = Math.max(1_000, Math.min(TRIM_EVERY_MS, this.#retentionMs / 2))
    let failures = 0
    while (this.#running) {
      try {
        await this.trim()
        failures = 0
        // Not reported as success: the rounds say whether the archive is up (else a failing round and a trim would take turns).
      } catch (error) {
        failures++
        this.#metrics.error()
        this.#onError(error)
      }
      await this.#sleep(failures > 0 ? Math.min(every, backoff(failures)) : every)
    }
  }

  /** Removes what retention no longer keeps, if this process holds partition 0 (one trimmer at a time); returns how many rows went. */
  async trim (): Promise<number> {
    if (this.#retentionMs <= 0) return 0
    if (this.#source.claim !== undefined && !await this.#source.claim(0, this.#holder, LEASE_MS)) return 0
    const before = Date.now() - this.#retentionMs
    let total = 0
    for (;;) {
      const removed = await this.#store.trim(before, TRIM_BATCH)
      total += removed
      if (removed > 0) this.#metrics.trimmed(removed)
      if (removed < TRIM_BATCH || this.#stopped) return total
    }
  }

  /** One pass over every partition this process may work on; true if it archived anything. */
  async round (): Promise<boolean> {
    let busy = false
    let oldest: number | undefined
    for (let partition = 0; partition < this.#source.partitions; partition++) {
      const claim = this.#source.claim
      if (claim !== undefined && !await claim.call(this.#source, partition, this.#holder, LEASE_MS)) continue
      // Renewed while the work lasts: a round slower than the lease (a loaded machine) must not let another process in.
      const renewal = claim === undefined ? undefined : setInterval(() => { claim.call(this.#source, partition, this.#holder, LEASE_MS).catch(() => {}) }, LEASE_MS / 3)
      try {
        const owners = await this.#source.pending(partition, OWNERS_PER_ROUND)
        for (const { since } of owners) if (oldest === undefined || since < oldest) oldest = since
        const perOwner = Math.max(MIN_BATCH, Math.min(BATCH, Math.floor(ROUND_ROWS / Math.max(1, owners.length))))
        if (await this.#archive(owners.map(({ owner }) => owner), perOwner) > 0) busy = true
      } finally {
        clearInterval(renewal)
      }
    }
    const reported = await this.#source.oldestPending() ?? oldest
    this.#metrics.lag(reported === undefined ? 0 : Math.max(0, (Date.now() - reported) / 1000))
    return busy
  }

  /**
   * One batch of each owner's log past its mark: every owner read (a few at once), then all their
   * rows written together (one statement or batch per WRITE_CHUNK rows, not one per owner), the
   * recalls among them applied, and only then each mark moved. Returns how many events it wrote.
   */
  async #archive (owners: string[], perOwner: number): Promise<number> {
    const batches: OwnerBatch[] = []
    let next = 0
    const reader = async (): Promise<void> => {
      while (next < owners.length) batches.push(await this.#read(owners[next++]!, perOwner))
    }
    await Promise.all(Array.from({ length: Math.min(CONCURRENCY, owners.length) }, reader))
    const users = batches.flatMap((batch) => batch.users)
    const groups = batches.flatMap((batch) => batch.groups)
    for (let i = 0; i < groups.length; i += WRITE_CHUNK) await this.#store.putGroupEvents(groups.slice(i, i + WRITE_CHUNK))
    for (let i = 0; i < users.length; i += WRITE_CHUNK) await this.#store.putUserEvents(users.slice(i, i + WRITE_CHUNK))
    for (const batch of batches) {
      const id = batch.owner.slice(2)
      for (const change of batch.changes) {
        if (batch.owner.startsWith('g:')) await this.#changeInGroup(id, change)
        else await this.#changeInLog(id, change)
      }
    }
    let written = 0
    next = 0
    const marker = async (): Promise<void> => {
      while (next < batches.length) {
        const batch = batches[next++]!
        const count = batch.users.length + batch.groups.length
        await this.#done(batch.owner, batch.after, batch.version, batch.last, batch.nextSince, count)
        written += count
      }
    }
    await Promise.all(Array.from({ length: Math.min(CONCURRENCY, batches.length) }, marker))
    return written
  }

  async #read (owner: string, limit: number): Promise<OwnerBatch> {
    const { upTo: after, version } = await this.#source.position(owner)
    const id = owner.slice(2)
    if (owner.startsWith('g:')) {
      const entries = await this.#source.readGroup(id, after, limit + 1)
      const rows = entries.slice(0, limit).map((entry) => groupRow(id, entry))
      const beyond = entries[limit]
      return {
        owner, after, version, users: [], groups: rows.map(({ row }) => row), changes: rows.flatMap(({ change }) => change === undefined ? [] : [change]),
        last: rows.at(-1)?.row.gseq, nextSince: beyond === undefined ? undefined : parseGroupEvent(beyond.tail)?.ts
      }
    }
    const entries = await this.#source.readUser(id, after, limit + 1)
    const rows = entries.slice(0, limit).map((entry) => userRow(id, entry))
    return {
      owner, after, version, users: rows.map(({ row }) => row), groups: [], changes: rows.flatMap(({ change }) => change === undefined ? [] : [change]),
      last: rows.at(-1)?.row.seq, nextSince: entries[limit]?.meta.ts
    }
  }

  async #done (owner: string, after: number, version: string, last: number | undefined, nextSince: number | undefined, count: number): Promise<void> {
    // Nothing read: the owner was marked ahead of a write that had not landed yet (it stays pending) or never did.
    await this.#source.archived(owner, last ?? after, version, nextSince)
    if (count > 0) {
      this.#metrics.archived(count)
      this.#metrics.batch()
    }
  }

  /**
   * A recall or an edit in a user's log: the message, if archived before, becomes what the hot
   * log holds now (its tombstone, or its latest text), and its search doc follows (a tombstone
   * leaves the index; an edited message is found by its new text only).
   */
  async #changeInLog (user: string, { seq, edit }: Change): Promise<void> {
    let current = await this.#source.userEvent(user, seq)
    if (current === undefined) {
      // Gone from the hot tier: change the archived message itself.
      const [archived] = await this.#store.readLog(user, seq - 1, 1)
      if (archived?.seq !== seq || archived.event === undefined) return
      const message = JSON.parse(archived.event) as { id: string, from: string, to: string, ts: number, recalled?: boolean }
      if (message.recalled === true) return
      current = edit === undefined
        ? tombstone(seq, message.id, message.from, message.to, message.ts, Date.now())
        : editedMessage(archived.event, edit.body, edit.at)
    }
    await this.#store.replaceUserEvent(user, seq, current, searchDoc(JSON.parse(current) as { body?: unknown, recalled?: boolean }))
  }

  async #changeInGroup (group: string, { seq: messageGseq, edit }: Change): Promise<void> {
    let tail = await this.#source.groupEvent(group, messageGseq)
    if (tail === undefined) {
      const { tails } = await this.#store.groupEvents(group, { fromGseq: messageGseq, after: messageGseq - 1, limit: 1 })
      const message = tails[0] === undefined ? undefined : parseGroupEvent(tails[0])
      if (message?.type !== 'message' || message.gseq !== messageGseq || message.recalled === true) return
      const { gseq: _gseq, body: _body, edited: _edited, editedAt: _at, ...rest } = message
      tail = groupEventTail(edit === undefined
        ? { ...rest, recalled: true, recalledAt: Date.now() } satisfies GroupMessageEvent
        : { ...rest, body: edit.body, edited: true, editedAt: edit.at } satisfies GroupMessageEvent, messageGseq)
    }
    const event = parseGroupEvent(tail)
    await this.#store.replaceGroupEvent(group, messageGseq, tail, event?.type === 'message' ? searchDoc(event) : undefined)
  }
}
