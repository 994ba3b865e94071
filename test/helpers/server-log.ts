// The warnings and errors a server process logged (pino JSON lines), for a
// test to show when it fails or to put in a report.
import type { ServerHandle } from './server-process.ts'

export function serverProblems (server: ServerHandle, max = 20): string {
  const lines: string[] = []
  for (const line of server.output().split('\n')) {
    if (!/"level":(40|50|60)/.test(line)) continue
    // The level, message and error of each, without the stack and the script text.
    try {
      const { level, msg, err } = JSON.parse(line) as { level: number, msg?: string, err?: { message?: string, command?: { name?: string, args?: string[] } } }
      const command = err?.command === undefined ? '' : ` (${err.command.name} ${(err.command.args ?? []).filter((arg) => arg.length < 80).slice(0, 4).join(' ')})`
      lines.push(`${level} ${msg ?? ''}: ${err?.message ?? ''}${command}`)
    } catch {
      lines.push(line.slice(0, 300))
    }
  }
  // Repeats counted, not listed.
  const counted = new Map<string, number>()
  for (const line of lines) counted.set(line, (counted.get(line) ?? 0) + 1)
  return [...counted].slice(0, max).map(([line, count]) => count > 1 ? `${line} ×${count}` : line).join('\n')
}
