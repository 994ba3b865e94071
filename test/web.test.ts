// The web chat page at `/`, end to end: the real server (DEMO_LOGIN=1), the
// page as built and served by it, and two users in two headless Chromium
// contexts (a phone and a laptop). Screenshots land in test/screenshots/.
import t from 'tap'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { startServerProcess, type ServerHandle } from './helpers/server-process.ts'
import { expiredToken, token, uniqueUser } from './helpers/tokens.ts'
import { apiFor } from './helpers/rest.ts'
import { LAPTOP, PHONE, launchChromium, screenshot } from './helpers/browser.ts'
import { WAIT, send, shown, signIn as signInAs, waitForShown } from './helpers/chat-page.ts'

t.test('the server serves the page it builds, same-origin only', async (t) => {
  const server = await startServerProcess({ mode: 'embedded', env: { DEMO_LOGIN: '1' } })
  t.teardown(() => server.stop())
  const html = await fetch(`${server.httpUrl}/`)
  t.equal(html.status, 200)
  t.match(html.headers.get('content-type'), /text\/html/)
  t.match(html.headers.get('content-security-policy'), /connect-src 'self'/)
  t.match(await html.text(), /<script type="module" src="\/app.js">/)
  const js = await fetch(`${server.httpUrl}/app.js`)
  t.equal(js.status, 200)
  t.match(js.headers.get('content-type'), /javascript/)
  t.equal(js.headers.get('content-encoding'), 'gzip', 'compressed for phones')
  const again = await fetch(`${server.httpUrl}/app.js`, { headers: { 'if-none-match': js.headers.get('etag')! } })
  t.equal(again.status, 304, 'revalidates by ETag')
  t.same(await (await fetch(`${server.httpUrl}/config.json`)).json(), { demoLogin: true, maxPayloadBytes: 65_536 })
  t.equal((await fetch(`${server.httpUrl}/nope.js`)).status, 404)
})

t.test('two users in two browsers', async (t) => {
  let browser: Browser
  try {
    browser = await launchChromium()
  } catch (error) {
    t.fail((error as Error).message)
    return
  }
  const server: ServerHandle = await startServerProcess({ mode: 'embedded', env: { DEMO_LOGIN: '1' } })
  t.teardown(async () => {
    await browser.close()
    await server.stop()
  })
  const alice = uniqueUser('alice')
  const bob = uniqueUser('bob')
  const aliceContext = await browser.newContext(PHONE)
  const bobContext = await browser.newContext(LAPTOP)
  const a = await aliceContext.newPage()
  const b = await bobContext.newPage()
  const problems: string[] = []
  for (const [who, page] of [['alice', a], ['bob', b]] as const) {
    page.on('pageerror', (error) => problems.push(`${who}: ${error.message}`))
    page.on('console', (message) => {
      // Connection attempts while the test holds a context offline are expected to fail.
      if (message.type() === 'error' && !message.text().includes('ERR_INTERNET_DISCONNECTED')) problems.push(`${who}: ${message.text()}`)
    })
    page.on('requestfailed', (request) => t.comment(`${who}: request failed: ${request.method()} ${request.url()} ${request.failure()?.errorText}`))
  }

  const signIn = (page: Page, user: string): Promise<void> => signInAs(page, server.httpUrl, user)
  async function openChat (page: Page, peer: string): Promise<void> {
    await page.fill('input[name=peer]', peer)
    await page.press('input[name=peer]', 'Enter')
    await page.waitForSelector(`.chat-pane[data-peer="${peer}"] .history-edge:not(:text("Loading"))`, WAIT)
  }
  const ticks = (page: Page): Promise<string[]> =>
    page.$$eval('.chat-pane .items .row.mine[data-tick]', (rows) => rows.map((row) => (row as HTMLElement).dataset.tick ?? ''))

  await t.test('sign in, talk, and see ticks, typing, presence and unread badges', async (t) => {
    await a.goto(`${server.httpUrl}/`)
    await a.waitForSelector('text=Development only', WAIT)
    await screenshot(a, '01-sign-in-phone')
    await signIn(a, alice)
    await signIn(b, bob)

    await openChat(a, bob)
    // PRESENCE_VISIBILITY=contacts (the default): strangers do not see each other's presence.
    await a.waitForSelector('.chat-pane .bar .dot[data-presence="offline"]', WAIT)
    t.equal(await a.locator('.chat-pane .bar .status').textContent(), 'offline', 'before they have talked, bob looks like someone never seen')
    await send(a, 'Hi Bob!')
    await a.waitForSelector('.chat-pane .bar .dot[data-presence="online"]', WAIT)
    t.pass('her first message makes bob\'s presence visible: alice sees him online')
    await send(a, 'Are you there?')
    await waitForShown(a, ['Hi Bob!', 'Are you there?'])
    await a.waitForFunction(() => document.querySelectorAll('.row.mine[data-tick="delivered"]').length === 2, undefined, WAIT)
    t.pass('delivered to bob (✓✓) while he is on his list')

    const badge = b.locator(`.conversation[data-peer="${alice}"] .badge`)
    await badge.waitFor(WAIT)
    t.equal(await badge.textContent(), '2', 'bob has 2 unread from alice')
    t.match(await b.locator(`.conversation[data-peer="${alice}"] .preview`).textContent(), 'Are you there?', 'with the last message')
    await b.waitForSelector(`.conversation[data-peer="${alice}"] .dot[data-presence="online"]`, WAIT)
    t.pass('and alice\'s presence dot (a conversation her message just started)')
    await screenshot(b, '02-conversation-list-unread-laptop')

    await b.click(`.conversation[data-peer="${alice}"]`)
    await waitForShown(b, ['Hi Bob!', 'Are you there?'])
    await badge.waitFor({ state: 'detached', ...WAIT })
    t.pass('opening the chat clears the badge')
    await a.waitForFunction(() => [...document.querySelectorAll('.row.mine')].every((row) => (row as HTMLElement).dataset.tick === 'read'), undefined, WAIT)
    t.same(await ticks(a), ['read', 'read'], 'alice sees both read')

    await b.type('textarea[name=message]', 'Yes, just', { delay: 20 })
    await a.waitForSelector('.typing-indicator:not([hidden])', WAIT)
    t.match(await a.locator('.chat-pane .bar .status').textContent(), 'typing', 'alice sees bob typing')
    await screenshot(a, '03-chat-typing-phone')
    await b.type('textarea[name=message]', ' got here.')
    await b.press('textarea[name=message]', 'Enter')
    await waitForShown(a, ['Hi Bob!', 'Are you there?', 'Yes, just got here.'])
    await a.waitForSelector('.typing-indicator', { state: 'hidden', ...WAIT })
    t.pass('the typing indicator goes when the message comes')
    await b.waitForFunction(() => document.querySelector('.row.mine')?.getAttribute('data-tick') === 'read', undefined, WAIT)
    t.pass('bob sees his message read (alice has the chat open)')
    await screenshot(b, '04-chat-read-laptop')
  })

  await t.test('recall', async (t) => {
    await send(a, 'Oops, wrong chat')
    await waitForShown(b, ['Hi Bob!', 'Are you there?', 'Yes, just got here.', 'Oops, wrong chat'])
    await a.click('.row.mine:last-of-type .bubble')
    await a.click('.row.mine:last-of-type button.recall')
    await a.waitForSelector('.row.mine:last-of-type .actions:has-text("Recall for both of you?")', WAIT)
    await screenshot(a, '05-recall-confirm-phone')
    await a.click('.row.mine:last-of-type button.cancel')
    t.equal(await a.locator('.row.mine:last-of-type .text').textContent(), 'Oops, wrong chat', 'cancelled: nothing recalled')
    await a.click('.row.mine:last-of-type button.recall')
    await a.click('.row.mine:last-of-type button.confirm-recall')
    await waitForShown(b, ['Hi Bob!', 'Are you there?', 'Yes, just got here.', 'Message recalled'])
    await waitForShown(a, ['Hi Bob!', 'Are you there?', 'Yes, just got here.', 'Message recalled'])
    t.pass('recalled on both sides')
    await b.waitForFunction((peer) => document.querySelector(`.conversation[data-peer="${peer}"] .preview`)?.textContent === 'Message recalled', alice, WAIT)
    t.pass('and in the conversation list')
    await screenshot(a, '05-recalled-phone')
  })

  const before = ['Hi Bob!', 'Are you there?', 'Yes, just got here.', 'Message recalled']

  await t.test('offline and back: every message once, in order, and the outbox goes out', async (t) => {
    // A short window, so the conversation scrolls: at its newest message when the banner comes.
    await b.setViewportSize({ width: LAPTOP.viewport.width, height: 300 })
    await b.evaluate(() => { const m = document.querySelector('.chat-pane .messages')!; m.scrollTop = m.scrollHeight })
    t.ok(await b.evaluate(() => { const m = document.querySelector('.chat-pane .messages')!; return m.scrollHeight > m.clientHeight + 20 }), 'the conversation overflows the window')
    await bobContext.setOffline(true)
    t.teardown(() => bobContext.setOffline(false))
    await b.waitForSelector('.banner[data-state="no-network"]', WAIT)
    t.pass('bob sees the offline banner')
    t.ok(await b.evaluate(() => {
      const rows = document.querySelectorAll('.chat-pane .messages .items .row')
      const last = rows[rows.length - 1]!
      const row = last.getBoundingClientRect()
      const view = document.querySelector('.chat-pane .messages')!.getBoundingClientRect()
      // In view, and on top there (not under the banner).
      return row.top >= view.top - 1 && row.bottom <= view.bottom + 1 && last.contains(document.elementFromPoint(row.left + row.width / 2, row.top + row.height / 2))
    }), 'the banner neither covers the newest message nor pushes it out of view')
    await screenshot(b, '06-offline-banner-short-laptop')
    await b.setViewportSize(LAPTOP.viewport)
    await b.waitForSelector('.chat-pane .bar .dot[data-presence="unknown"]', { state: 'attached', ...WAIT })
    t.equal(await b.locator('.chat-pane .bar .status').textContent(), 'unknown while you are offline', 'offline, alice\'s presence is unknown, not "online"')
    for (const text of ['one', 'two', 'three']) await send(a, `while you were away: ${text}`)
    await a.waitForFunction(() => document.querySelectorAll('.row.mine[data-tick]').length === 5, undefined, WAIT)
    t.pass('alice\'s three are stored')
    await send(b, 'sent while offline')
    t.same(await shown(b), before, 'nothing reached bob while offline')
    t.equal(await b.locator('.row.pending:has-text("sent while offline")').count(), 1, 'bob\'s message waits as pending')
    await screenshot(b, '06-offline-laptop')

    await bobContext.setOffline(false)
    const expected = [...before, 'while you were away: one', 'while you were away: two', 'while you were away: three', 'sent while offline']
    await b.waitForSelector('.row.pending', { state: 'detached', ...WAIT })
    // Alice's three came in order before bob's (he sent his after they were stored).
    await waitForShown(b, [...before, 'while you were away: one', 'while you were away: two', 'while you were away: three', 'sent while offline'].filter((text) => text !== 'sent while offline').concat('sent while offline'))
    await waitForShown(a, expected)
    t.same(await shown(b), expected, 'bob shows each message once, in order')
    await b.waitForSelector('.banner[data-state="online"]', WAIT)
    t.pass('bob sees "back online"')
    await b.waitForSelector('.chat-pane .bar .dot[data-presence="online"]', WAIT)
    t.pass('and alice online again')
    await b.locator(`.conversation[data-peer="${alice}"] .badge`).waitFor({ state: 'detached', ...WAIT })
    t.pass('what came while he was away is marked read (his chat is open)')
    await screenshot(b, '07-back-online-laptop')
  })

  await t.test('a reload keeps the session, the device and the conversation', async (t) => {
    const device = await b.locator('.me').getAttribute('title')
    const expected = await shown(b)
    await b.reload()
    await waitForShown(b, expected)
    t.match(b.url(), `#/chat/${alice}`, 'the open chat is in the URL')
    t.equal(await b.locator('.me').getAttribute('title'), device, 'the same device id (one persistent session per tab)')
    await send(b, 'after reload')
    await waitForShown(a, [...expected, 'after reload'])
    // Bob's own copy can come back a moment after alice has hers (his device may
    // still be catching up after the reload); until then it shows as pending.
    await waitForShown(b, [...expected, 'after reload'])
    t.same(await shown(b), [...expected, 'after reload'], 'no duplicates after the reload')
    await screenshot(b, '08-after-reload-laptop')
  })

  await t.test('history scrolls back a page at a time, in order, keeping the view in place', async (t) => {
    const carol = uniqueUser('carol')
    const carolApi = apiFor(server.httpUrl, carol)
    const texts = Array.from({ length: 70 }, (_, i) => i === 60
      ? 'A long one, to see wrapping: https://example.com/a/very/long/path/that/does/not/break/anywhere/without/help/from/css'
      : `carol's message ${i}`)
    const statuses = new Set<number>()
    for (const [i, body] of texts.entries()) statuses.add((await carolApi.post('/v1/messages', { to: bob, id: `scroll-${i}`, body })).status)
    t.same([...statuses], [201], 'carol sent 70 messages')
    await b.click(`.conversation[data-peer="${carol}"]`)
    await waitForShown(b, texts.slice(-40))
    t.pass('the newest page first')
    await b.evaluate(() => { document.querySelector('.chat-pane .messages')!.scrollTop = 0 })
    await waitForShown(b, texts)
    t.match(await b.locator('.history-edge').textContent(), 'Beginning of the conversation')
    const top = await b.evaluate(() => document.querySelector('.chat-pane .messages')!.scrollTop)
    t.ok(top > 200, `the view stays where it was while older rows are added above (scrollTop ${top})`)
    t.equal(await b.locator('.unread-divider').textContent(), '70 unread messages', 'the unread divider')
    t.equal(await b.evaluate(() => document.querySelector('.unread-divider')!.nextElementSibling!.textContent), 'Today', 'above the first unread message (and its day)')
    await b.waitForSelector('.jump-latest:not([hidden])', WAIT)
    await carolApi.post('/v1/messages', { to: bob, id: 'scroll-new', body: 'one more while you scroll' })
    await b.waitForSelector('.jump-latest:text("↓ 1 new")', WAIT)
    await screenshot(b, '09-jump-to-latest-laptop')
    await b.click('.jump-latest')
    await b.waitForSelector('.jump-latest', { state: 'hidden', ...WAIT })
    t.ok(await b.evaluate(() => { const m = document.querySelector('.chat-pane .messages')!; return m.scrollHeight - m.scrollTop - m.clientHeight < 2 }), 'jumped to the latest')
    await b.locator(`.conversation[data-peer="${carol}"] .badge`).waitFor({ state: 'detached', ...WAIT })
    t.pass('all 70 are marked read')
    t.equal(await b.locator('.chat-pane .bar .status').textContent(), 'offline', 'carol, never connected, shows offline')
    await screenshot(b, '09-scrolled-back-laptop')
    // The same page on a phone-sized window: one pane, long words wrapped.
    await b.setViewportSize(PHONE.viewport)
    await b.locator('.row:has-text("A long one")').scrollIntoViewIfNeeded()
    t.ok(await b.evaluate(() => document.documentElement.scrollWidth <= innerWidth), 'nothing overflows sideways')
    await screenshot(b, '09-scrolled-back-phone')
    await b.setViewportSize(LAPTOP.viewport)
  })

  await t.test('blocking from the chat header', async (t) => {
    const eve = uniqueUser('eve')
    const eveApi = apiFor(server.httpUrl, eve)
    await eveApi.post('/v1/messages', { to: bob, id: 'e1', body: 'hello from eve' })
    await b.click(`.conversation[data-peer="${eve}"]`)
    await waitForShown(b, ['hello from eve'])
    await b.click('.chat-pane .bar button.block')
    await b.waitForSelector('.chat-pane .bar button.block[data-blocked="true"]:text("Unblock")', WAIT)
    t.match((await apiFor(server.httpUrl, bob).get('/v1/blocks')).body, { blocks: [{ user: eve }] }, 'the page blocked eve')
    await screenshot(b, '12-blocked-laptop')
    // Never shown: e3, sent after it, arrives alone below.
    await eveApi.post('/v1/messages', { to: bob, id: 'e2', body: 'you cannot see this' })
    await b.click('.chat-pane .bar button.block')
    await b.waitForSelector('.chat-pane .bar button.block[data-blocked="false"]:text("Block")', WAIT)
    await eveApi.post('/v1/messages', { to: bob, id: 'e3', body: 'and now?' })
    await waitForShown(b, ['hello from eve', 'and now?'])
    t.pass('unblocked: her next message arrives (the one sent meanwhile never does)')
    await b.locator(`.conversation[data-peer="${eve}"] .badge`).waitFor({ state: 'detached', ...WAIT })
    t.pass('with her chat open, what she sent is marked read')
  })

  await t.test('long messages fold; one over the limit is refused, saying the limit', async (t) => {
    const long = Array.from({ length: 40 }, (_, i) => `line ${i + 1} of a long message 长消息`).join('\n')
    await send(b, long)
    await b.waitForSelector('.row.mine .read-more', WAIT)
    t.ok(await b.evaluate(() => { const text = [...document.querySelectorAll('.row.mine .text.folded')].pop() as HTMLElement; return text.scrollHeight > text.clientHeight }), 'folded to a few lines')
    await screenshot(b, '13-folded-laptop')
    await b.click('.row.mine .read-more')
    await b.waitForSelector('.row.mine .text.folded', { state: 'detached', ...WAIT })
    t.equal(await b.locator('.row.mine .read-more').count(), 0, '"Read more" unfolds it')
    t.notOk(await b.locator('.row.mine:last-of-type .actions').isVisible(), 'without opening the message\'s actions')

    await send(b, 'x'.repeat(70_000))
    const failed = await b.waitForSelector('.row.pending.failed', WAIT)
    t.match(await failed.textContent(), /too long: 69 KB, and this server takes at most 64 KB per message/)
    await screenshot(b, '14-too-long-laptop')
    await b.click('.row.pending.failed button:has-text("Dismiss")')
  })

  await t.test('reply to a message, then edit the reply', async (t) => {
    await b.click(`.conversation[data-peer="${alice}"]`)
    await b.waitForSelector(`.chat-pane[data-peer="${alice}"]`, WAIT)
    await send(a, 'Which day works for you?')
    const asked = b.locator('.row.theirs:has-text("Which day works for you?")')
    await asked.waitFor(WAIT)
    await asked.locator('.bubble').click()
    await asked.locator('button.reply').click()
    await b.waitForSelector(`.compose-bar:has-text("Replying to ${alice}")`, WAIT)
    await send(b, 'Saturday')
    const reply = a.locator('.row.theirs:has-text("Saturday")')
    await reply.waitFor(WAIT)
    t.equal(await reply.locator('.quote').textContent(), 'You Which day works for you?', 'alice sees the reply quoting her message')
    t.ok(await b.locator('.compose-bar').isHidden(), 'bob\'s reply bar is gone once sent')
    await screenshot(a, '15-reply-phone')

    const mine = b.locator('.row.mine:has-text("Saturday")')
    await mine.locator('.bubble').click()
    await mine.locator('button.edit').click()
    t.equal(await b.inputValue('textarea[name=message]'), 'Saturday', 'the composer holds the text to edit')
    await b.fill('textarea[name=message]', 'Sunday')
    await b.press('textarea[name=message]', 'Enter')
    await a.waitForSelector('.row.theirs:has-text("Sunday") .meta .edited', WAIT)
    t.equal(await a.locator('.row.theirs:has-text("Sunday") .quote').count(), 1, 'still a reply')
    t.equal(await a.locator('.row:has-text("Saturday")').count(), 0, 'the old text is gone on alice\'s side')
    await b.waitForSelector('.row.mine:has-text("Sunday") .meta .edited', WAIT)
    t.pass('and marked edited on bob\'s')
    await screenshot(b, '16-edited-laptop')
  })

  await t.test('presence: bob leaving shows offline and last seen', async (t) => {
    await bobContext.close()
    await a.waitForSelector('.chat-pane .bar .dot[data-presence="offline"]', WAIT)
    t.match(await a.locator('.chat-pane .bar .status').textContent(), /last seen/)
    await a.click('button.back')
    await a.waitForSelector(`.conversation[data-peer="${bob}"] .dot[data-presence="offline"]`, WAIT)
    await screenshot(a, '10-list-peer-offline-phone')
  })

  await t.test('a token in the URL fragment signs in, and leaves the address bar', async (t) => {
    const dave = uniqueUser('dave')
    const context = await browser.newContext(PHONE)
    t.teardown(() => context.close())
    const page = await context.newPage()
    const named = await context.newPage()
    await named.goto(`${server.httpUrl}/`)
    await named.fill('input[name=user]', 'dave smith!')
    await named.click('button:has-text("Sign in")')
    t.match(await named.$eval('input[name=user]', (input) => (input as HTMLInputElement).validationMessage), /letters A–Z a–z, digits 0–9, and \. _ @ -/, 'a refused name says what is allowed')
    await named.close()
    await page.goto(`${server.httpUrl}/#token=${token(dave)}`)
    await page.waitForSelector('.list-pane', WAIT)
    t.equal(await page.locator('.me').textContent(), dave)
    t.notMatch(page.url(), 'token=', 'the token is not left in the URL')
    await page.click('button:has-text("Sign out")')
    await page.waitForSelector('textarea[name=token]', WAIT)
    await page.fill('textarea[name=token]', expiredToken(dave))
    await page.click('button:has-text("Use token")')
    await page.waitForSelector('.form-error:has-text("expired")', WAIT)
    t.pass('an expired token is refused with a reason')
    await screenshot(page, '11-sign-in-expired-token-phone')
  })

  t.same(problems, [], 'no page errors or console errors')
})
