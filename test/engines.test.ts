// `npm install` on the Node this project runs on (package.json "engines") warns about nothing:
// every package the lockfile pins supports this Node. npm itself checks, offline, on copies of
// package.json and package-lock.json (nothing is downloaded and node_modules is not touched).
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')

t.test('the lockfile installs on this Node with --engine-strict and no EBADENGINE warning', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'inboxd-engines-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  for (const file of ['package.json', 'package-lock.json']) copyFileSync(join(ROOT, file), join(dir, file))
  // An empty cache and --offline: a package the lockfile pins that does not fit would send npm looking
  // for another version (ENOTCACHED) or warn EBADENGINE; a lockfile that fits needs no network at all.
  const result = spawnSync('npm', ['install', '--package-lock-only', '--offline', '--engine-strict', '--ignore-scripts', '--no-audit', '--no-fund', '--cache', join(dir, 'cache')], { cwd: dir, encoding: 'utf8', timeout: 60_000 })
  const output = `${result.stdout}${result.stderr}`
  t.equal(result.status, 0, `npm install --engine-strict succeeds on Node ${process.version}:\n${output}`)
  t.notMatch(output, /EBADENGINE/, 'no engine warnings')
  t.equal(readFileSync(join(dir, 'package-lock.json'), 'utf8'), readFileSync(join(ROOT, 'package-lock.json'), 'utf8'), 'the lockfile is the one package.json gives (npm changed nothing)')
})
