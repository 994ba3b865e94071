// The import rules that keep the folders meaning what they say (see
// docs/architecture.md): leaves import nothing of ours, domain folders never
// reach into the composition root or the transports, and messaging knows
// nothing of MQTT or HTTP. Read from the source itself, so a new import that
// breaks a rule fails here.
import t from 'tap'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, normalize, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const LEAVES = ['config', 'protocol']
const DOMAIN = ['messaging', 'history', 'presence', 'push', 'keys', 'auth']
const ROOT_AND_TRANSPORTS = ['server', 'broker', 'bridge']
const TRANSPORT_PACKAGES = ['aedes', 'mqtt', 'mqtt-packet', 'fastify', 'ws']

function sourceFiles (folder: string): string[] {
  return readdirSync(join(ROOT, folder)).flatMap((name) => {
    const path = join(folder, name)
    if (statSync(join(ROOT, path)).isDirectory()) return sourceFiles(path)
    return name.endsWith('.ts') ? [path] : []
  })
}

/** Every module specifier imported by `source` (static, type-only and dynamic imports). */
export function importsOf (source: string): string[] {
  return [...source.matchAll(/(?:^|\n)\s*(?:import|export)[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g)]
    .map((match) => match[1] ?? match[2]!)
}

/** The top-level folder a relative import from `file` lands in, or undefined for a package. */
function folderOf (file: string, specifier: string): string | undefined {
  if (!specifier.startsWith('.')) return undefined
  return normalize(join(dirname(file), specifier)).split('/')[0]
}

export function violations (file: string, source: string): string[] {
  const folder = file.split('/')[0]!
  const problems: string[] = []
  for (const specifier of importsOf(source)) {
    const target = folderOf(file, specifier)
    if (LEAVES.includes(folder) && target !== undefined && target !== folder) problems.push(`${file}: a leaf imports ${specifier}`)
    if (DOMAIN.includes(folder) && target !== undefined && ROOT_AND_TRANSPORTS.includes(target)) problems.push(`${file}: a domain folder imports ${specifier}`)
    if (folder === 'messaging' && target === undefined && TRANSPORT_PACKAGES.includes(specifier.split('/')[0]!)) problems.push(`${file}: messaging imports the transport package ${specifier}`)
  }
  return problems
}

t.test('the rule catches what it is meant to catch', async (t) => {
  t.same(violations('history/x.ts', "import type { Config } from '../server/config.ts'"), ['history/x.ts: a domain folder imports ../server/config.ts'])
  t.same(violations('protocol/x.ts', "import { y } from '../history/y.ts'"), ['protocol/x.ts: a leaf imports ../history/y.ts'])
  t.same(violations('messaging/x.ts', "import { Aedes } from 'aedes'"), ['messaging/x.ts: messaging imports the transport package aedes'])
  t.same(violations('broker/x.ts', "import { y } from '../server/y.ts'"), [], 'the transports may import anything')
  t.same(violations('push/x.ts', "const m = await import('../bridge/z.ts')"), ['push/x.ts: a domain folder imports ../bridge/z.ts'], 'dynamic imports count')
})

t.test('leaves and domain folders keep to their imports', async (t) => {
  const files = [...LEAVES, ...DOMAIN].flatMap(sourceFiles)
  t.ok(files.length > 20, `${files.length} files checked`)
  const problems = files.flatMap((file) => violations(relative(ROOT, join(ROOT, file)), readFileSync(join(ROOT, file), 'utf8')))
  t.same(problems, [], 'no forbidden import')
})
