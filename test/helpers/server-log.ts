// The warnings and errors a server process logged (pino JSON lines), for a
// test to show when it fails or to put in a report.
import type { ServerHandle } from './server-process.ts'

export function serverProblems (server: ServerHandle, max = 20): string {
  return server.output().split('\n').filter((line) => /"level":(40|50|60)/.test(line))
    .slice(0, max).map((line) => line.slice(0, 600)).join('\n')
}
