// The import rules that keep the folders meaning what they say. The folders'
// kinds are read from the table in docs/architecture.md ("Who owns what"),
// so the prose and this test cannot disagree; the rules for each kind are
// here, and the packages they name must be the ones the docs name. Read from
// the source itself, so a new import that breaks a rule fails here.
import t from 'tap'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, normalize } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const DOCS = readFileSync(join(ROOT, 'docs/architecture.md'), 'utf8')

const KINDS = ['leaf', 'domain', 'storage', 'mqtt door', 'http door', 'root', 'apart'] as const
type Kind = typeof KINDS[number]
const MQTT_PACKAGES = ['aedes', 'mqtt', 'mqtt-packet']
const HTTP_PACKAGES = ['fastify', '@fastify/*', 'ws']
const DOORS: Kind[] = ['mqtt door', 'http door']

/** folder → kind, from the docs' table whose header is `| folder | kind | owns |`. */
export function folderKinds (markdown: string): Map<string, string> {
  const lines = markdown.split('\n')
  const header = lines.findIndex((line) => /^\|\s*folder\s*\|\s*kind\s*\|/.test(line))
  const kinds = new Map<string, string>()
  if (header < 0) return kinds
  for (const line of lines.slice(header + 2)) {
    if (!line.startsWith('|')) break
    const [folders = '', kind = ''] = line.split('|').slice(1).map((cell) => cell.trim())
    for (const [, folder] of folders.matchAll(/`([^`/]+)\/`/g)) kinds.set(folder!, kind)
  }
  return kinds
}

const KIND_OF = folderKinds(DOCS)
const kindOf = (folder: string): string | undefined => KIND_OF.get(folder)

function sourceFiles (folder: string): string[] {
  return readdirSync(join(ROOT, folder)).flatMap((name) => {
    const path = join(folder, name)
    if (name === 'node_modules' || name.startsWith('.')) return []
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

/** `@fastify/jwt` → `@fastify/*`, `mqtt-packet/x` → `mqtt-packet`. */
function packageOf (specifier: string): string {
  const [scope, name] = specifier.split('/')
  return scope!.startsWith('@') ? (name === undefined ? scope! : `${scope}/*`) : scope!
}

export function violations (file: string, source: string, kinds: (folder: string) => string | undefined = kindOf): string[] {
  const folder = file.split('/')[0]!
  const kind = kinds(folder)
  const problems: string[] = []
  for (const specifier of importsOf(source)) {
    const target = folderOf(file, specifier)
    if (target === undefined) {
      if (specifier.startsWith('node:')) continue
      const name = packageOf(specifier)
      const mqtt = MQTT_PACKAGES.includes(name)
      const http = HTTP_PACKAGES.includes(name)
      if (kind === 'domain' && (mqtt || http)) problems.push(`${file}: a domain folder imports the ${mqtt ? 'MQTT' : 'HTTP'} package ${specifier}`)
      if (kind === 'mqtt door' && http) problems.push(`${file}: the MQTT door imports the HTTP package ${specifier}`)
      if (kind === 'http door' && mqtt) problems.push(`${file}: the HTTP door imports the MQTT package ${specifier}`)
      continue
    }
    if (target === folder) continue
    const targetKind = kinds(target)
    if (kind === 'leaf') problems.push(`${file}: a leaf imports ${specifier}`)
    if (kind === 'storage' && targetKind !== 'leaf') problems.push(`${file}: storage imports ${specifier}, not a leaf`)
    if (kind === 'domain' && targetKind !== 'leaf' && targetKind !== 'domain' && targetKind !== 'storage') problems.push(`${file}: a domain folder imports ${specifier}`)
    if (DOORS.includes(kind as Kind) && (targetKind === 'root' || DOORS.includes(targetKind as Kind) || targetKind === 'apart')) problems.push(`${file}: a door imports ${specifier}`)
  }
  return problems
}

t.test('the rules catch what they are meant to catch', async (t) => {
  t.same(violations('history/x.ts', "import type { Config } from '../server/config.ts'"), ['history/x.ts: a domain folder imports ../server/config.ts'])
  t.same(violations('protocol/x.ts', "import { y } from '../history/y.ts'"), ['protocol/x.ts: a leaf imports ../history/y.ts'])
  t.same(violations('messaging/x.ts', "import { Aedes } from 'aedes'"), ['messaging/x.ts: a domain folder imports the MQTT package aedes'])
  t.same(violations('presence/x.ts', "import type { Client } from 'aedes'"), ['presence/x.ts: a domain folder imports the MQTT package aedes'])
  t.same(violations('keys/x.ts', "import type { FastifyInstance } from 'fastify'"), ['keys/x.ts: a domain folder imports the HTTP package fastify'])
  t.same(violations('auth/x.ts', "import jwt from '@fastify/jwt'"), ['auth/x.ts: a domain folder imports the HTTP package @fastify/jwt'])
  t.same(violations('push/x.ts', "const m = await import('../bridge/z.ts')"), ['push/x.ts: a domain folder imports ../bridge/z.ts'], 'dynamic imports count')
  t.same(violations('broker/x.ts', "import { y } from '../server/y.ts'"), ['broker/x.ts: a door imports ../server/y.ts'], 'a door never reaches into the root')
  t.same(violations('bridge/x.ts', "import { y } from '../broker/y.ts'"), ['bridge/x.ts: a door imports ../broker/y.ts'], 'nor into the other door')
  t.same(violations('broker/x.ts', "import { y } from '../bridge/y.ts'"), ['broker/x.ts: a door imports ../bridge/y.ts'])
  t.same(violations('bridge/x.ts', "import type { Aedes } from 'aedes'"), ['bridge/x.ts: the HTTP door imports the MQTT package aedes'])
  t.same(violations('broker/x.ts', "import Fastify from 'fastify'"), ['broker/x.ts: the MQTT door imports the HTTP package fastify'])
  t.same(violations('storage/x.ts', "import { y } from '../history/y.ts'"), ['storage/x.ts: storage imports ../history/y.ts, not a leaf'])
  t.same(violations('broker/x.ts', "import { y } from '../messaging/y.ts'\nimport { Aedes } from 'aedes'"), [], 'a door may call the domain and speak its own protocol')
  t.same(violations('server/x.ts', "import { a } from '../broker/a.ts'\nimport { b } from '../bridge/b.ts'"), [], 'the root may import both doors')
})

t.test('docs/architecture.md and this test name the same folders, kinds and packages', async (t) => {
  t.ok(KIND_OF.size > 10, `${KIND_OF.size} folders in the table`)
  const unknownKinds = [...KIND_OF].filter(([, kind]) => !(KINDS as readonly string[]).includes(kind))
  t.same(unknownKinds, [], 'every kind in the table is one this test has rules for')
  for (const kind of KINDS) t.ok([...KIND_OF.values()].includes(kind), `the table uses the kind ${kind}`)
  const topFolders = readdirSync(ROOT).filter((name) => name !== 'node_modules' && name !== 'docs' && !name.startsWith('.') &&
    statSync(join(ROOT, name)).isDirectory() && sourceFiles(name).length > 0)
  t.same(topFolders.filter((folder) => !KIND_OF.has(folder)), [], 'every folder of source is in the table')
  t.same([...KIND_OF.keys()].filter((folder) => !topFolders.includes(folder)), [], 'every folder in the table exists')
  t.same(KIND_OF.get('server'), 'root', 'server/ is the composition root')
  t.same([...KIND_OF].filter(([, kind]) => kind === 'root').length, 1, 'and the only one')
  for (const name of [...MQTT_PACKAGES, ...HTTP_PACKAGES]) t.ok(DOCS.includes(`\`${name}\``), `the docs name the package ${name}`)
})

t.test('every folder keeps to its imports', async (t) => {
  const checked = [...KIND_OF].filter(([, kind]) => kind !== 'apart' && kind !== 'root').map(([folder]) => folder)
  const files = checked.flatMap(sourceFiles)
  t.ok(files.length > 80, `${files.length} files checked`)
  const problems = files.flatMap((file) => violations(file, readFileSync(join(ROOT, file), 'utf8')))
  t.same(problems, [], 'no forbidden import')
})

t.test('server/ is the only folder that imports both doors', async (t) => {
  const importers = new Map<string, Set<string>>()
  for (const [folder, kind] of KIND_OF) {
    if (kind === 'apart') continue
    for (const file of sourceFiles(folder)) {
      for (const specifier of importsOf(readFileSync(join(ROOT, file), 'utf8'))) {
        const target = folderOf(file, specifier)
        if (target !== undefined && target !== folder && DOORS.includes(kindOf(target) as Kind)) {
          if (!importers.has(folder)) importers.set(folder, new Set())
          importers.get(folder)!.add(target)
        }
      }
    }
  }
  t.same([...importers.keys()], ['server'], 'no other folder imports a door')
  t.same([...importers.get('server') ?? []].sort(), ['bridge', 'broker'], 'and server/ imports both')
})
