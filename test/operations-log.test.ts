// What an operator reads and scrapes: the start says where everything is,
// probes do not fill the log, every MQTT connect, disconnect and refusal is
// one info line (never with the token), and /metrics counts REST requests by
// route pattern and refused CONNECTs by reason. Both storage modes.
import t from 'tap'
import { startServerProcess, modesUnderTest, type ServerHandle, freePort, tempDataDir } from './helpers/server-process.ts'
import { startRedisServer } from './helpers/redis-server.ts'
import { connectDevice } from './helpers/devices.ts'
import { forgedToken, token, uniqueUser } from './helpers/tokens.ts'
import { apiFor } from './helpers/rest.ts'
import { scrape } from './helpers/metrics.ts'

// Redis mode on a redis-server of this file's own: no shared database to pick or flush.
const ownRedis = await startRedisServer(await freePort(), tempDataDir())
t.teardown(() => ownRedis.kill())

type Line = Record<string, unknown> & { msg?: string, level?: number }

function lines (server: ServerHandle): Line[] {
  return server.output().split('\n').flatMap((text) => { try { return [JSON.parse(text) as Line] } catch { return [] } })
}

/** Waits for a log line matching `match` (the server writes it after the event; no sleep). */
async function lineWhere (server: ServerHandle, what: string, match: (line: Line) => boolean, timeoutMs = 10_000): Promise<Line> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const found = lines(server).find(match)
    if (found !== undefined) return found
    if (Date.now() > deadline) throw new Error(`no log line ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** The sum of a metric's samples whose labels contain every one of `labels`. */
function sample (text: string, name: string, ...labels: string[]): number {
  return text.split('\n')
    .filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `))
    .filter((line) => labels.every((label) => line.includes(label)))
    .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(' ') + 1)), 0)
}

for (const mode of modesUnderTest()) {
  t.test(`${mode}: start lines, quiet probes, connection lines, request and refusal metrics`, async (t) => {
    const server = await startServerProcess({ mode, env: mode === 'redis' ? { REDIS_URL: ownRedis.url, WORKERS: '1' } : {} })
    t.teardown(() => server.stop())

    // The start: one readable line each, with the ports actually bound, and they answer.
    const messages = lines(server).map((line) => line.msg ?? '')
    t.ok(messages.includes(`MQTT: mqtt://127.0.0.1:${server.mqttPort}`), 'where MQTT is')
    t.ok(messages.includes(`MQTT over WebSocket: ws://127.0.0.1:${server.httpPort}/mqtt`), 'where MQTT over WebSocket is')
    const page = messages.find((message) => message.startsWith('web page: '))!.slice('web page: '.length)
    const openapi = messages.find((message) => message.startsWith('OpenAPI: '))!.slice('OpenAPI: '.length)
    t.equal((await fetch(page)).status, 200, `the web page is where it says (${page})`)
    t.equal((await fetch(openapi)).status, 200, `OpenAPI is where it says (${openapi})`)
    if (mode === 'embedded') t.ok(messages.some((message) => /^storage: embedded, DATA_DIR \/.+/.test(message)), 'where DATA_DIR is (an absolute path)')
    else t.ok(messages.includes(`storage: Redis at ${ownRedis.url}`), 'which Redis')

    // Probes are not logged at info; a REST call after them is, so their lines would be there by now.
    const user = uniqueUser('oli')
    for (const probe of ['/healthz', '/readyz', '/metrics']) t.equal((await fetch(server.httpUrl + probe)).status, 200, probe)
    t.equal((await apiFor(server.httpUrl, user).get('/v1/conversations')).status, 200)
    await lineWhere(server, 'for the REST call', (line) => line.msg === 'request completed' && (line.res as { statusCode?: number } | undefined)?.statusCode === 200 &&
      lines(server).some((other) => other.reqId === line.reqId && (other.req as { url?: string } | undefined)?.url === '/v1/conversations'))
    const probeLines = lines(server).filter((line) => /^\/(healthz|readyz|metrics)/.test(String((line.req as { url?: string } | undefined)?.url ?? '')))
    t.same(probeLines, [], 'no request line for /healthz, /readyz or /metrics')

    // Connect and disconnect: one line each, with the device, its user and why.
    const device = await connectDevice({ url: server.mqttUrl, userId: user, deviceId: 'phone' })
    t.match(await lineWhere(server, 'for the connect', (line) => line.msg === 'device connected' && line.user === user), { level: 30, device: 'phone', clientId: `${user}:phone`, transport: 'tcp', clean: false })
    await device.end()
    t.match(await lineWhere(server, 'for the disconnect', (line) => line.msg === 'device disconnected' && line.user === user), { level: 30, device: 'phone', reason: 'the client sent DISCONNECT' })

    // Refusals: the CONNACK code and why, never the token.
    const forged = forgedToken(user)
    const refused = (options: Parameters<typeof connectDevice>[0]): Promise<unknown> => connectDevice(options).then(() => t.fail('connected'), (error: Error) => error)
    await refused({ url: server.mqttUrl, userId: user, deviceId: 'forged', token: forged })
    await refused({ url: server.mqttUrl, userId: user, deviceId: 'other', token: token(uniqueUser('mallory')) })
    t.match(await lineWhere(server, 'for the forged token', (line) => line.msg === 'connect refused' && line.device === 'forged'), { level: 30, user, returnCode: 4, code: 'bad_token' })
    t.match(await lineWhere(server, 'for another user\'s clientId', (line) => line.msg === 'connect refused' && line.device === 'other'), { level: 30, user, returnCode: 2, code: 'wrong_user' })
    t.notOk(server.output().includes(forged), 'the token is not in the log')
    t.notOk(server.output().includes(forged.split('.')[2]!), 'nor its signature')

    // Metrics: requests by route pattern (never the raw path), refusals by reason.
    await apiFor(server.httpUrl, user).get(`/v1/conversations/${uniqueUser('pat')}/messages`)
    t.equal((await fetch(`${server.httpUrl}/no/such/route`)).status, 404)
    const text = await scrape(server)
    t.equal(sample(text, 'inboxd_http_request_duration_seconds_count', 'route="/v1/conversations"', 'method="GET"', 'status="2xx"'), 1, 'GET /v1/conversations counted once')
    t.equal(sample(text, 'inboxd_http_request_duration_seconds_count', 'route="/v1/conversations/:peer/messages"', 'method="GET"'), 1, 'by route pattern')
    t.equal(sample(text, 'inboxd_http_request_duration_seconds_count', 'route="unmatched"', 'status="4xx"'), 1, 'a path no route matches is "unmatched"')
    t.notMatch(text, /route="\/no\/such/, 'no series for a raw path')
    t.ok(sample(text, 'inboxd_http_request_duration_seconds_bucket', 'route="/v1/conversations"', 'le="+Inf"') === 1, 'with a latency histogram')
    t.equal(sample(text, 'inboxd_mqtt_connects_refused_total', 'reason="bad_token"'), 1, 'refused CONNECTs by reason')
    t.equal(sample(text, 'inboxd_mqtt_connects_refused_total', 'reason="wrong_user"'), 1)
  })
}
