// The SDK as a published package: build it, `npm pack` it, install the
// tarball into an empty project and use it from plain Node ESM by its name,
// against a real server. This catches what the in-repo tests cannot: a
// missing file in `files`, a broken `exports` map, a dependency that is only
// found because the repository's node_modules happens to have it.
import t from 'tap'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { mkdtempSync, writeFileSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startServerProcess } from './helpers/server-process.ts'
import { token, uniqueUser } from './helpers/tokens.ts'

const run = promisify(execFile)
const SDK = join(dirname(fileURLToPath(import.meta.url)), '..', 'client-sdk')

// npm run by tap may pass npm_config_* (prefix, workspace...) that would
// point the install at the wrong place; the child npm gets a clean slate.
const cleanEnv: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.toLowerCase().startsWith('npm_')))
const npm = async (args: string[], cwd: string): Promise<string> =>
  (await run('npm', [...args, '--no-audit', '--no-fund', '--loglevel=error'], { cwd, env: cleanEnv, timeout: 60_000, maxBuffer: 16 * 1024 * 1024 })).stdout

const SCRIPT = `
import { createClient } from '@inboxd/client'
const { URL, ALICE, BOB, ALICE_TOKEN, BOB_TOKEN } = process.env
const open = (deviceId, tok) => createClient({ url: URL, deviceId, getToken: async () => tok })
const bob = await open('pkg-test', BOB_TOKEN)
const arrived = new Promise((resolve) => bob.on('message', (m) => { if (m.from === ALICE) resolve(m) }))
const alice = await open('pkg-test', ALICE_TOKEN)
await alice.send(BOB, { text: 'hello from the tarball' })
const m = await arrived
console.log(JSON.stringify({ from: m.from, to: m.to, body: m.body }))
await alice.stop(); await bob.stop()
process.exit(0)
`

t.test('the packed SDK installs into a fresh project and talks to a real server', async (t) => {
  const project = mkdtempSync(join(tmpdir(), 'inboxd-sdk-pkg-'))
  t.teardown(() => rmSync(project, { recursive: true, force: true }))

  // `npm pack` runs the package's prepack (the build) first.
  await npm(['pack', '--pack-destination', project], SDK)
  const tarball = readdirSync(project).find((name) => name.endsWith('.tgz'))
  if (tarball === undefined) throw new Error('npm pack produced no tarball')
  const listing = (await run('tar', ['-tzf', join(project, tarball)])).stdout.split('\n').filter(Boolean)
  t.ok(listing.includes('package/dist/index.js'), 'ESM entry point packed')
  t.ok(listing.includes('package/dist/index.d.ts'), 'type declarations packed')
  t.ok(listing.includes('package/README.md') && listing.includes('package/LICENSE'), 'README and LICENSE packed')
  t.notOk(listing.some((file) => file.startsWith('package/src/') || file.includes('tsconfig')), 'no sources or dev files')

  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'sdk-consumer', private: true, type: 'module' }))
  // The npm cache usually has mqtt & co. already; fall back to the registry.
  try {
    await npm(['install', '--offline', `./${tarball}`], project)
  } catch {
    await npm(['install', `./${tarball}`], project)
  }
  writeFileSync(join(project, 'send.mjs'), SCRIPT)

  const server = await startServerProcess({ mode: 'embedded' })
  t.teardown(() => server.kill())
  const alice = uniqueUser('alice')
  const bob = uniqueUser('bob')
  const { stdout } = await run(process.execPath, ['send.mjs'], {
    cwd: project,
    timeout: 20_000,
    env: { PATH: process.env.PATH ?? '', URL: server.wsUrl, ALICE: alice, BOB: bob, ALICE_TOKEN: token(alice), BOB_TOKEN: token(bob) }
  })
  const received = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as { from?: string, to?: string, body?: unknown }
  t.same(received, { from: alice, to: bob, body: { text: 'hello from the tarball' } }, 'bob got alice\'s message through the installed package')
})
