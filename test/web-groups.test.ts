// Groups in the web chat page, end to end: the real server (DEMO_LOGIN=1) and
// three users in headless Chromium. Alice creates a group in the page; the
// others see it appear, chat in it with sender names, typing and unread
// badges; a member removed over REST sees it end; a reload keeps the group
// open. Screenshots land in test/screenshots/.
import t from 'tap'
import type { Browser, Page } from 'playwright-core'
import { startServerProcess } from './helpers/server-process.ts'
import { uniqueUser } from './helpers/tokens.ts'
import { apiFor } from './helpers/rest.ts'
import { LAPTOP, PHONE, launchChromium, screenshot } from './helpers/browser.ts'
import { WAIT, send, shown, signIn, waitForShown } from './helpers/chat-page.ts'

t.test('a group in the page', async (t) => {
  let browser: Browser
  try {
    browser = await launchChromium()
  } catch (error) {
    t.fail((error as Error).message)
    return
  }
  const server = await startServerProcess({ mode: 'embedded', env: { DEMO_LOGIN: '1' } })
  t.teardown(async () => {
    await browser.close()
    await server.stop()
  })
  const [alice, bob, carol] = [uniqueUser('alice'), uniqueUser('bob'), uniqueUser('carol')]
  const problems: string[] = []
  const pageFor = async (who: string, viewport: typeof PHONE | typeof LAPTOP): Promise<Page> => {
    const page = await (await browser.newContext(viewport)).newPage()
    page.on('pageerror', (error) => problems.push(`${who}: ${error.message}`))
    page.on('console', (message) => { if (message.type() === 'error') problems.push(`${who}: ${message.text()}`) })
    page.on('response', (response) => { if (response.status() >= 400) t.comment(`${who}: ${response.request().method()} ${response.url()} ${response.status()}`) })
    await signIn(page, server.httpUrl, who)
    return page
  }
  const a = await pageFor(alice, LAPTOP)
  const b = await pageFor(bob, PHONE)
  const c = await pageFor(carol, LAPTOP)
  const name = 'Weekend trip'
  const created = `${alice} created the group "${name}"`
  let group = ''

  await t.test('alice creates it; it appears for the others at once', async (t) => {
    await a.click('.new-group-box summary')
    await a.fill('input[name=group-name]', name)
    await a.fill('input[name=group-members]', `${bob}, ${carol}`)
    await a.click('button:has-text("New group")')
    const pane = await a.waitForSelector('.chat-pane[data-group]', WAIT)
    group = (await pane.getAttribute('data-group'))!
    t.match(a.url(), `#/group/${group}`, 'the group is open, and in the URL')
    await waitForShown(a, [created])
    t.equal(await a.locator('.chat-pane .bar .peer').textContent(), name)
    t.equal(await a.locator('.chat-pane .bar .status').textContent(), '3 members')
    for (const page of [b, c]) {
      await page.waitForSelector(`.conversation[data-group="${group}"] .peer:text("${name}")`, WAIT)
    }
    t.pass('bob and carol list the group by name without reloading')
  })

  await t.test('messages with sender names, unread badges, typing', async (t) => {
    await send(a, 'Who is in?')
    await waitForShown(a, [created, 'Who is in?'])
    const bobsItem = b.locator(`.conversation[data-group="${group}"]`)
    await bobsItem.locator('.badge:text("1")').waitFor(WAIT)
    t.equal(await bobsItem.locator('.preview').textContent(), `${alice}: Who is in?`, 'the preview names the sender')
    await screenshot(b, '20-group-in-list-phone')

    await bobsItem.click()
    await waitForShown(b, [created, 'Who is in?'])
    t.equal(await b.locator('.row.theirs .from').first().textContent(), alice, 'other people\'s messages carry their name')
    await bobsItem.locator('.badge').waitFor({ state: 'detached', ...WAIT }).catch(() => {})
    await b.click('button.back')
    await b.locator(`.conversation[data-group="${group}"] .badge`).waitFor({ state: 'detached', ...WAIT })
    t.pass('reading it clears bob\'s badge')
    await b.click(`.conversation[data-group="${group}"]`)

    await b.fill('textarea[name=message]', 'M')
    await a.waitForSelector(`.chat-pane .bar .status:text("${bob} is typing…")`, WAIT)
    t.pass('alice sees bob typing in the group')
    await send(b, 'Me!')
    await waitForShown(a, [created, 'Who is in?', 'Me!'])
    await waitForShown(b, [created, 'Who is in?', 'Me!'])
    t.equal(await a.locator('.row.theirs:has-text("Me!") .from').textContent(), bob)
    await c.locator(`.conversation[data-group="${group}"] .badge:text("2")`).waitFor(WAIT)
    t.pass('carol, who has not opened it, has two unread')
    await screenshot(a, '21-group-chat-laptop')
  })

  await t.test('carol, removed over REST, sees it end in the page', async (t) => {
    await c.click(`.conversation[data-group="${group}"]`)
    await waitForShown(c, [created, 'Who is in?', 'Me!'])
    await c.locator(`.conversation[data-group="${group}"] .badge`).waitFor({ state: 'detached', ...WAIT })
    t.pass('carol has read it')
    const removed = await apiFor(server.httpUrl, alice).delete(`/v1/groups/${group}/members/${carol}`)
    t.equal(removed.status, 200)
    await waitForShown(c, [created, 'Who is in?', 'Me!', `${alice} removed ${carol}`])
    await c.waitForSelector('.chat-pane .bar .status:text("you are no longer a member")', WAIT)
    t.ok(await c.locator('form.composer').isHidden(), 'no composer for a former member')
    await waitForShown(a, [created, 'Who is in?', 'Me!', `${alice} removed ${carol}`])
    t.equal(await a.locator('.chat-pane .bar .status').textContent(), '2 members')
    await send(a, 'Just us two then')
    await waitForShown(b, [created, 'Who is in?', 'Me!', `${alice} removed ${carol}`, 'Just us two then'])
    await new Promise((resolve) => setTimeout(resolve, 300))
    t.same(await shown(c), [created, 'Who is in?', 'Me!', `${alice} removed ${carol}`], 'carol gets nothing after her removal')
    await screenshot(c, '22-group-removed-laptop')
  })

  await t.test('a reload keeps the group open, each row once', async (t) => {
    const expected = await shown(b)
    await b.reload()
    await waitForShown(b, expected)
    t.match(b.url(), `#/group/${group}`)
    await b.waitForSelector(`.chat-pane .bar .peer:text("${name}")`, WAIT)
    t.pass('the name is known after a reload')
  })

  t.same(problems, [], 'no page errors or console errors')
})
