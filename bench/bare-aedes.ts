// The floor of what Node can do: Aedes 1.2 with its default in-memory
// persistence and emitter, no auth, no hooks. Usage: bare-aedes.ts <port>
import { createServer } from 'node:net'
import { Aedes } from 'aedes'

const port = Number(process.argv[2] ?? 0)
const broker = await Aedes.createBroker()
const server = createServer((socket) => broker.handle(socket))
server.listen(port, '127.0.0.1', () => process.stdout.write(`ready ${(server.address() as { port: number }).port}\n`))
process.on('SIGTERM', () => { server.close(); broker.close(() => process.exit(0)) })
