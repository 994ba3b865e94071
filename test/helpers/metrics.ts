// Reading a server's /metrics in tests: one unlabelled value, and waiting for
// the metrics to show a state (they move as background work such as the
// archiver's rounds runs), never a sleep.
import type { ServerHandle } from './server-process.ts'

/** The value of an unlabelled metric, or undefined if absent. */
export function metric (text: string, name: string): number | undefined {
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${name} `))
  return line === undefined ? undefined : Number(line.slice(name.length + 1))
}

/** A metric summed over all its label sets, or only those whose labels include `labels` (e.g. 'outcome="sent"'); 0 if absent. */
export function sample (text: string, name: string, labels = ''): number {
  return text.split('\n')
    .filter((line) => line.startsWith(name) && line.slice(name.length).match(/^[{ ]/) !== null && line.includes(labels))
    .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(' ') + 1)), 0)
}

export async function scrape (server: Pick<ServerHandle, 'httpUrl'>): Promise<string> {
  return await (await fetch(`${server.httpUrl}/metrics`)).text()
}

/** Scrapes until `holds`, or fails after `timeoutMs` with the last scrape's `prefix` lines. */
export async function metricsUntil (server: Pick<ServerHandle, 'httpUrl'>, what: string, holds: (text: string) => boolean,
  { timeoutMs = 40_000, prefix = 'inboxd_archive' } = {}): Promise<string> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const text = await scrape(server)
    if (holds(text)) return text
    if (Date.now() > deadline) throw new Error(`metrics never showed ${what}:\n${text.split('\n').filter((line) => line.startsWith(prefix)).join('\n')}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/** Resolves once the server's long-term archive is open (it opens PostgreSQL in the background, after the server is ready). */
export async function archiveOpen (server: Pick<ServerHandle, 'httpUrl'>): Promise<void> {
  await metricsUntil(server, 'inboxd_archive_up 1', (text) => metric(text, 'inboxd_archive_up') === 1)
}
