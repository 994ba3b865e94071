// The tus 1.0 protocol by hand, over real HTTP, so a test can cut an upload
// where it likes: create (POST), how much arrived (HEAD), send more (PATCH).
import { request } from 'node:http'
import { token as signToken } from './tokens.ts'

const TUS = { 'tus-resumable': '1.0.0' }

export interface TusAnswer { status: number, body: any, offset?: number }

async function answer (response: Response): Promise<TusAnswer> {
  const text = await response.text()
  let body: unknown = text
  try { body = text === '' ? undefined : JSON.parse(text) } catch {}
  const offset = response.headers.get('upload-offset')
  return { status: response.status, body, ...(offset === null ? {} : { offset: Number(offset) }) }
}

export function tusFor (httpUrl: string, user: string) {
  const authorization = `Bearer ${signToken(user)}`
  return {
    /** POST /v1/uploads; `id` is the last segment of Location. */
    async create (size: number, type?: string): Promise<TusAnswer & { id?: string }> {
      const headers: Record<string, string> = { ...TUS, authorization, 'upload-length': String(size) }
      if (type !== undefined) headers['upload-metadata'] = `filetype ${Buffer.from(type).toString('base64')}`
      const response = await fetch(`${httpUrl}/v1/uploads`, { method: 'POST', headers })
      const location = response.headers.get('location')
      return { ...await answer(response), ...(location === null ? {} : { id: location.split('/').pop()! }) }
    },
    async head (id: string): Promise<TusAnswer> {
      return await answer(await fetch(`${httpUrl}/v1/uploads/${id}`, { method: 'HEAD', headers: { ...TUS, authorization } }))
    },
    async patch (id: string, offset: number, data: Buffer): Promise<TusAnswer> {
      return await answer(await fetch(`${httpUrl}/v1/uploads/${id}`, {
        method: 'PATCH',
        headers: { ...TUS, authorization, 'upload-offset': String(offset), 'content-type': 'application/offset+octet-stream' },
        body: new Uint8Array(data)
      }))
    },
    /** A PATCH of all of `data` whose connection is destroyed once `cutAt` bytes were written (a phone losing its network). */
    cut (id: string, offset: number, data: Buffer, cutAt: number): Promise<void> {
      return new Promise((resolve) => {
        const url = new URL(`${httpUrl}/v1/uploads/${id}`)
        const req = request({
          host: url.hostname,
          port: url.port,
          path: url.pathname,
          method: 'PATCH',
          headers: { ...TUS, authorization, 'upload-offset': String(offset), 'content-type': 'application/offset+octet-stream', 'content-length': String(data.length) }
        })
        req.on('error', () => resolve())
        req.on('close', () => resolve())
        let sent = 0
        const more = (): void => {
          while (sent < cutAt) {
            const chunk = data.subarray(sent, Math.min(cutAt, sent + 256 * 1024))
            sent += chunk.length
            if (!req.write(chunk)) { req.once('drain', more); return }
          }
          // Everything up to the cut is in the kernel's hands: the network goes.
          setImmediate(() => req.destroy())
        }
        more()
      })
    }
  }
}
