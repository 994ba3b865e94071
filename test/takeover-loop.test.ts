// Two clients with the same clientId replace each other on every reconnect.
// The server counts each takeover and warns, once per device per minute and
// per process while it goes on, naming the device and how many; the state it
// keeps for this is bounded (docs/protocol.md, Limits). Both storage modes;
// Redis mode with two workers, so takeovers also cross processes.
import t from 'tap'
import mqtt from 'mqtt'
import { startServerProcess, modesUnderTest, type ServerHandle, freePort, tempDataDir } from './helpers/server-process.ts'
import { startRedisServer } from './helpers/redis-server.ts'
import { token, uniqueUser } from './helpers/tokens.ts'
import { metricsUntil } from './helpers/metrics.ts'
import { LOOP_TAKEOVERS, TakeoverWatch, WINDOW_MS } from '../broker/takeover-watch.ts'

// Redis mode on a redis-server of this file's own: no shared database to pick or flush.
const ownRedis = await startRedisServer(await freePort(), tempDataDir())
t.teardown(() => ownRedis.kill())

function takeovers (text: string): number {
  const line = text.split('\n').find((candidate) => candidate.startsWith('inboxd_mqtt_takeovers_total '))
  return line === undefined ? 0 : Number(line.split(' ')[1])
}

function warnings (server: ServerHandle, clientId: string): Array<{ pid: number, takeovers: number, msg: string }> {
  return server.output().split('\n').flatMap((text) => {
    try {
      const line = JSON.parse(text) as { level: number, clientId?: string, pid: number, takeovers: number, msg: string }
      return line.level === 40 && line.clientId === clientId ? [line] : []
    } catch { return [] }
  })
}

for (const mode of modesUnderTest()) {
  t.test(`${mode}: a takeover loop is counted and warned about, once per device per minute`, async (t) => {
    const server = await startServerProcess({ mode, env: mode === 'redis' ? { REDIS_URL: ownRedis.url, WORKERS: '2' } : {} })
    t.teardown(() => server.stop())
    const user = uniqueUser('twin')
    const clientId = `${user}:laptop`
    // Two real clients sharing one clientId, each reconnecting as soon as it is closed.
    const twins = [0, 1].map(() => mqtt.connect(server.mqttUrl, { clientId, username: user, password: token(user), clean: false, reconnectPeriod: 100, connectTimeout: 5_000 }))
    t.teardown(() => Promise.all(twins.map((client) => client.endAsync(true))))

    const atWarning = takeovers(await metricsUntil(server, 'a takeover warning', () => warnings(server, clientId).length > 0, { timeoutMs: 30_000, prefix: 'inboxd_mqtt' }))
    const [warning] = warnings(server, clientId)
    t.ok(warning!.takeovers >= LOOP_TAKEOVERS, `the warning says how many takeovers (${warning!.takeovers})`)
    t.match(warning!.msg, clientId, 'and names the device')
    t.ok(atWarning >= LOOP_TAKEOVERS, 'each takeover is counted in inboxd_mqtt_takeovers_total')
    t.match(server.output(), new RegExp(`"clientId":"${clientId}".*"reason":"taken over: a new connection with the same clientId".*"msg":"device disconnected"`), 'each takeover is a disconnect line with that reason')

    // The loop goes on: five more takeovers, and still one warning per process.
    const later = takeovers(await metricsUntil(server, 'five more takeovers', (text) => takeovers(text) >= atWarning + 5, { timeoutMs: 30_000, prefix: 'inboxd_mqtt' }))
    await Promise.all(twins.map((client) => client.endAsync(true)))
    const pids = warnings(server, clientId).map((line) => line.pid)
    t.same(pids, [...new Set(pids)], `${later - atWarning} takeovers after the first warning brought no second one from the same process`)
  })
}

t.test('the takeover watch: a loop warns once per window; its state is bounded', async (t) => {
  const watch = new TakeoverWatch(3)
  let now = 0
  const warned: number[] = []
  for (let i = 0; i < 100; i++) {
    now += 500
    if (watch.takenOver('a:1', now) !== undefined) warned.push(now)
  }
  t.same(warned, [1500], 'one warning in the first 50 s: at the third takeover')
  now += 11_500
  t.match(watch.takenOver('a:1', now), { clientId: 'a:1', takeovers: 98, seconds: 60 }, 'the next one a minute after the first, with the count since')
  t.equal(watch.takenOver('b:1', now + WINDOW_MS * 2), undefined, 'a single takeover is no loop')
  t.equal(watch.size, 1, 'devices not taken over for a minute are forgotten')
  for (const id of ['c:1', 'd:1', 'e:1', 'f:1']) watch.takenOver(id, now + WINDOW_MS * 2)
  t.equal(watch.size, 3, 'never more than the bound')
})
