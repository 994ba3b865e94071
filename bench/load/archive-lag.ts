// The archive's lag while a load runs (issue #21: "the archiver keeps up"),
// sampled every 200 ms: the server's `inboxd_archive_lag_seconds` (GET
// /metrics), and in Redis mode the same figure read straight from the
// archiver's pending index (now − the score of the owner that has waited
// longest), which is one process's view and not a sum: with WORKERS, /metrics
// answers the supervisor's aggregate of every worker's gauge.
import { Redis } from 'ioredis'
import { sleep } from '../profile.ts'

const EVERY_MS = 200
/** How long to wait for the lag to return to 0 after the load. */
const SETTLE_MS = 15_000

interface Sample { at: number, metric: number | undefined, direct: number | undefined }

export class ArchiveLagSampler {
  readonly #metricsUrl: string
  readonly #redis: Redis | undefined
  readonly #samples: Sample[] = []
  #running = false
  #loop: Promise<void> | undefined

  constructor (httpPort: number, redisUrl?: string) {
    this.#metricsUrl = `http://127.0.0.1:${httpPort}/metrics`
    this.#redis = redisUrl === undefined ? undefined : new Redis(redisUrl)
  }

  async #metrics (): Promise<string> {
    const response = await fetch(this.#metricsUrl)
    return response.text()
  }

  async #metric (): Promise<number | undefined> {
    const match = /^inboxd_archive_lag_seconds (\S+)$/m.exec(await this.#metrics().catch(() => ''))
    return match === null ? undefined : Number(match[1])
  }

  async #direct (): Promise<number | undefined> {
    if (this.#redis === undefined) return undefined
    const oldest = await this.#redis.zrange('inboxd:ar:pending', 0, 0, 'WITHSCORES')
    return oldest.length < 2 ? 0 : Math.max(0, (Date.now() - Number(oldest[1])) / 1000)
  }

  async #sample (): Promise<Sample> {
    const at = performance.now()
    const [metric, direct] = await Promise.all([this.#metric(), this.#direct()])
    return { at, metric, direct }
  }

  start (): void {
    this.#running = true
    // Two loops, each on its own 200 ms beat: a scrape of a WORKERS server goes
    // through the supervisor and can take longer than that on a loaded machine.
    const loop = async (read: () => Promise<number | undefined>, field: 'metric' | 'direct'): Promise<void> => {
      while (this.#running) {
        const at = performance.now()
        const value = await read()
        this.#samples.push({ at, metric: undefined, direct: undefined, [field]: value })
        await sleep(Math.max(0, EVERY_MS - (performance.now() - at)))
      }
    }
    this.#loop = Promise.all([loop(() => this.#metric(), 'metric'), ...(this.#redis === undefined ? [] : [loop(() => this.#direct(), 'direct')])]).then(() => {})
  }

  /** Call once the last PUBACK is in: samples until the lag is 0, then reports. */
  async finish (sent: number): Promise<Record<string, number | null>> {
    this.#running = false
    await this.#loop
    const stoppedAt = performance.now()
    const during = [...this.#samples]
    let backToZeroMs: number | null = null
    while (performance.now() - stoppedAt < SETTLE_MS) {
      const sample = await this.#sample()
      if ((sample.metric ?? 0) === 0 && (sample.direct ?? 0) === 0) { backToZeroMs = Math.round(sample.at - stoppedAt); break }
      await sleep(EVERY_MS)
    }
    // Let the archiver finish its last batches, so the count below is of what it caught up with.
    await sleep(1_000)
    const text = await this.#metrics().catch(() => '')
    const archived = /^inboxd_archive_events_total (\S+)$/m.exec(text)
    this.#redis?.disconnect()
    const values = (field: 'metric' | 'direct'): number[] => during.flatMap((s) => s[field] ?? []).sort((a, b) => a - b)
    const max = (list: number[]): number | null => list.length === 0 ? null : Number(list.at(-1)!.toFixed(3))
    const p99 = (list: number[]): number | null => list.length === 0 ? null : Number(list[Math.min(list.length - 1, Math.floor(0.99 * list.length))]!.toFixed(3))
    const metric = values('metric')
    const direct = values('direct')
    return {
      lagSamples: metric.length,
      lagDirectSamples: direct.length,
      lagMetricMax: max(metric),
      lagMetricP99: p99(metric),
      lagMetricOver1s: metric.filter((v) => v >= 1).length,
      lagDirectMax: max(direct),
      lagDirectP99: p99(direct),
      lagDirectOver1s: direct.filter((v) => v >= 1).length,
      backToZeroMs,
      archivedEvents: archived === null ? null : Number(archived[1]),
      sentMessages: sent
    }
  }
}
