// The server process's live heap, measured after a full GC through the V8
// inspector: RSS alone mostly shows when the garbage collector last ran
// (the server runs with a 64 MB young generation), not what is kept.
// Start the server with `inspectorEnv(port)` in its env.
import WebSocket from 'ws'

export function inspectorEnv (port: number): Record<string, string> {
  return { NODE_OPTIONS: `--inspect=127.0.0.1:${port}` }
}

export interface HeapProbe {
  /** process.memoryUsage() of the server after a full GC, in bytes. */
  measure (): Promise<{ heapUsed: number, rss: number }>
  close (): void
}

export async function probeHeap (port: number): Promise<HeapProbe> {
  const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json() as Array<{ webSocketDebuggerUrl: string }>
  const socket = new WebSocket(targets[0]!.webSocketDebuggerUrl)
  await new Promise((resolve, reject) => { socket.once('open', resolve); socket.once('error', reject) })
  let lastId = 0
  const waiting = new Map<number, (result: unknown) => void>()
  socket.on('message', (data) => {
    const reply = JSON.parse(data.toString()) as { id?: number, result?: unknown }
    if (reply.id !== undefined) waiting.get(reply.id)?.(reply.result)
    if (reply.id !== undefined) waiting.delete(reply.id)
  })
  const call = (method: string, params: Record<string, unknown> = {}): Promise<unknown> => new Promise((resolve) => {
    waiting.set(++lastId, resolve)
    socket.send(JSON.stringify({ id: lastId, method, params }))
  })
  return {
    async measure () {
      // More than one: a collection can free what only the previous one made unreachable.
      for (let i = 0; i < 3; i++) await call('HeapProfiler.collectGarbage')
      const reply = await call('Runtime.evaluate', { expression: 'JSON.stringify(process.memoryUsage())', returnByValue: true }) as { result: { value: string } }
      return JSON.parse(reply.result.value) as { heapUsed: number, rss: number }
    },
    close: () => socket.close()
  }
}
