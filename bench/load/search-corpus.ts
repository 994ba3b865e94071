// Runs bench/search-corpus.ts (the corpus's recall and precision on the real
// PostgreSQL, per approach) and reports its markdown as one JSON line, so
// `npm run bench` keeps it with the other results.
import { spawn } from 'node:child_process'
import { report } from '../profile.ts'

const child = spawn(process.execPath, ['--import', 'tsx', 'bench/search-corpus.ts'], { stdio: ['ignore', 'pipe', 'inherit'] })
let markdown = ''
child.stdout.on('data', (chunk: Buffer) => { markdown += chunk.toString() })
const code = await new Promise<number | null>((resolve) => child.on('exit', resolve))
report(code === 0 ? { markdown: markdown.trim() } : { error: true })
