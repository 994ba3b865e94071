// Sends many durable messages, each awaited to its PUBACK, a window at a time.
import type { Device } from './devices.ts'

export async function sendMany (sender: Device, to: string, count: number, prefix: string, window = 200): Promise<string[]> {
  const ids: string[] = []
  for (let start = 0; start < count; start += window) {
    const batch: Array<Promise<void>> = []
    for (let i = start; i < Math.min(start + window, count); i++) {
      const id = `${prefix}-${i}`
      ids.push(id)
      batch.push(sender.send(to, { id, body: `message ${i}` }))
    }
    await Promise.all(batch)
  }
  return ids
}
