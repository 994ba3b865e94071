// `npm start`: read config, start, stop cleanly on SIGTERM/SIGINT.
import { ConfigError, loadConfig, type Config } from './config.ts'
import { startServer } from './server.ts'

let config: Config
try {
  config = loadConfig()
} catch (error) {
  if (error instanceof ConfigError) {
    process.stderr.write(error.message + '\n')
    process.exit(1)
  }
  throw error
}

const server = await startServer(config).catch((error: Error) => {
  process.stderr.write(`startup failed: ${error.message}\n`)
  process.exit(1)
})

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    server.log.info({ signal }, 'shutting down')
    const force = setTimeout(() => process.exit(1), 10_000)
    force.unref()
    server.stop().then(() => process.exit(0), (error: Error) => {
      server.log.error({ err: error }, 'unclean shutdown')
      process.exit(1)
    })
  })
}
