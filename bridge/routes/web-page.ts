// The web chat page at `/`. Its TypeScript and CSS (web/) are bundled with
// esbuild in memory on the first request and kept for the life of the
// process: `npm start` needs no build step, nothing built is committed or
// written to disk, and server processes that never serve the page (tests,
// API-only nodes) never pay for the build (0.1–0.3 s).
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { gzipSync } from 'node:zlib'
import { fileURLToPath } from 'node:url'
import * as esbuild from 'esbuild'

const WEB_DIR = fileURLToPath(new URL('../../web/', import.meta.url))

interface Asset {
  body: Buffer
  /** The body gzipped, when that is worth it: the bundle is ~420 KB, ~120 KB gzipped, which matters on a phone. */
  gzipped: Buffer | undefined
  type: string
  etag: string
}

export interface WebPageOptions {
  /** Tells the page whether to offer the development sign-in (DEMO_LOGIN). */
  demoLogin: boolean
  /** MAX_PAYLOAD_BYTES: the page refuses a longer message itself, saying the limit (past twice it, MQTT would close the connection). */
  maxPayloadBytes: number
}

// Same-origin only: the page talks to this server (REST and MQTT over WebSocket) and nothing else.
const CSP = [
  "default-src 'self'",
  "connect-src 'self'",
  // mqtt.js keeps its keepalive timer in a blob: worker, which browsers do not throttle in background tabs.
  "worker-src 'self' blob:",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'"
].join('; ')

function asset (body: string | Uint8Array, type: string): Asset {
  const buffer = Buffer.from(body)
  return {
    body: buffer,
    gzipped: buffer.length > 1024 ? gzipSync(buffer) : undefined,
    type,
    etag: `"${createHash('sha256').update(buffer).digest('base64url').slice(0, 22)}"`
  }
}

/** Bundles web/src/main.ts (and the CSS it imports); returns every file the page needs, by URL path. */
export async function buildWebPage (options: WebPageOptions): Promise<Map<string, Asset>> {
  const result = await esbuild.build({
    entryPoints: { app: `${WEB_DIR}src/main.ts` },
    tsconfig: `${WEB_DIR}tsconfig.json`,
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: ['es2022', 'chrome100', 'safari15', 'firefox100'],
    minify: true,
    sourcemap: 'linked',
    legalComments: 'none',
    outdir: '/',
    write: false,
    logLevel: 'silent'
  })
  const files = new Map<string, Asset>()
  for (const file of result.outputFiles) {
    const type = file.path.endsWith('.js') ? 'text/javascript; charset=utf-8' : file.path.endsWith('.css') ? 'text/css; charset=utf-8' : 'application/json'
    files.set(file.path, asset(file.contents, type))
  }
  files.set('/', asset(await readFile(`${WEB_DIR}index.html`), 'text/html; charset=utf-8'))
  files.set('/config.json', asset(JSON.stringify({ demoLogin: options.demoLogin, maxPayloadBytes: options.maxPayloadBytes }), 'application/json; charset=utf-8'))
  return files
}

export const webPageRoutes: FastifyPluginAsync<WebPageOptions> = async (app, options) => {
  let built: Promise<Map<string, Asset>> | undefined
  const files = (): Promise<Map<string, Asset>> => {
    built ??= (async () => {
      const started = Date.now()
      try {
        return await buildWebPage(options)
      } finally {
        // esbuild keeps a helper process for further builds; this server needs no more.
        void esbuild.stop()
        app.log.info({ ms: Date.now() - started }, 'web page built')
      }
    })()
    return built
  }

  async function serve (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    let asset: Asset | undefined
    try {
      asset = (await files()).get(request.url.split('?')[0]!)
    } catch (error) {
      request.log.error({ err: error }, 'the web page could not be built')
      return reply.code(500).type('text/plain').send('The web page could not be built; see the server log.')
    }
    if (asset === undefined) { reply.callNotFound(); return reply }
    reply.header('cache-control', 'no-cache').header('etag', asset.etag).header('x-content-type-options', 'nosniff')
    if (asset.type.startsWith('text/html')) reply.header('content-security-policy', CSP).header('referrer-policy', 'no-referrer')
    if (request.headers['if-none-match'] === asset.etag) return reply.code(304).send()
    reply.type(asset.type).header('vary', 'accept-encoding')
    if (asset.gzipped !== undefined && /\bgzip\b/.test(String(request.headers['accept-encoding'] ?? ''))) {
      return reply.header('content-encoding', 'gzip').send(asset.gzipped)
    }
    return reply.send(asset.body)
  }

  for (const path of ['/', '/app.js', '/app.js.map', '/app.css', '/app.css.map', '/config.json']) {
    app.get(path, { schema: { hide: true } }, serve)
  }
}
