// GET /metrics and /readyz against the real server: what an operator scrapes
// moves with real traffic, with WORKERS the figures cover every worker, and
// an optional token protects the endpoint.
import t from 'tap'
import { startServerProcess, flushRedisDb, modesUnderTest } from './helpers/server-process.ts'
import { connectDevice } from './helpers/devices.ts'
import { uniqueUser } from './helpers/tokens.ts'
import { apiFor } from './helpers/rest.ts'

const REDIS_DB = 9
await flushRedisDb(REDIS_DB)
const TOKEN = 'metrics-token-0123456789'

/** The sum of a metric's samples whose labels contain `labels` (e.g. `code="invalid_json"`). */
function sample (text: string, name: string, labels = ''): number {
  return text.split('\n')
    .filter((line) => line.startsWith(name) && !line.startsWith('#') && line.slice(name.length).match(/^[{ ]/) !== null && line.includes(labels))
    .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(' ') + 1)), 0)
}

for (const mode of modesUnderTest()) {
  t.test(`${mode}: metrics and readiness`, async (t) => {
    const server = await startServerProcess({ mode, redisDb: REDIS_DB, env: { METRICS_TOKEN: TOKEN, WORKERS: '2' } })
    t.teardown(() => server.stop())
    const scrape = async (): Promise<string> => {
      const response = await fetch(`${server.httpUrl}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })
      t.equal(response.status, 200)
      return response.text()
    }
    t.match(await (await fetch(`${server.httpUrl}/metrics`)).json(), { error: 'unauthorized' }, 'the token is required')
    t.same(await (await fetch(`${server.httpUrl}/readyz`)).json(), { status: 'ready' })

    const [alice, bob] = [uniqueUser('alice'), uniqueUser('bob')]
    // Several connections, so that with WORKERS they land on both workers.
    const receivers = await Promise.all(Array.from({ length: 4 }, (_, i) => connectDevice({ url: server.mqttUrl, userId: bob, deviceId: `d${i}` })))
    const sender = await connectDevice({ url: server.mqttUrl, userId: alice, deviceId: 'phone' })
    t.teardown(() => Promise.all([sender, ...receivers].map((device) => device.end())))
    for (let i = 0; i < 10; i++) await sender.send(bob, { id: `m${i}`, body: i })
    await sender.sendRaw(`user/${bob}/inbox`, 'not json')
    await sender.waitForErrors(1)
    await apiFor(server.httpUrl, alice).post('/v1/messages', { to: bob, id: 'rest', body: 'x' })
    await Promise.all(receivers.map((device) => device.waitForInbox(11)))

    const text = await scrape()
    t.equal(sample(text, 'inboxd_connections'), 5, 'connections, summed over every worker')
    t.equal(sample(text, 'inboxd_connections', 'transport="tcp"'), 5)
    t.equal(sample(text, 'inboxd_messages_accepted_total', 'kind="direct"'), 11, 'accepted over MQTT and REST')
    t.equal(sample(text, 'inboxd_messages_rejected_total', 'code="invalid_json"'), 1, 'rejected, by code')
    t.equal(sample(text, 'inboxd_publish_to_puback_seconds_count'), 10, 'publish-to-PUBACK histogram')
    t.ok(sample(text, 'inboxd_log_append_seconds_count', 'kind="direct"') >= 11, 'log append histogram')
    t.ok(sample(text, 'inboxd_deliveries_total') >= 4 * 11 + 10, 'deliveries to devices (the receivers and the sender\'s own copies)')
    t.match(text, /nodejs_eventloop_lag_seconds/, 'event-loop lag')
  })
}
