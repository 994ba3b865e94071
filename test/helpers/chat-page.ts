// Driving the web chat page (web/) from a test: sign in, send, and read what
// the open chat shows.
import type { Page } from 'playwright-core'

export const WAIT = { timeout: 10_000 }

/** Signs in with the development-only demo login (the server runs with DEMO_LOGIN=1). */
export async function signIn (page: Page, baseUrl: string, user: string): Promise<void> {
  await page.goto(`${baseUrl}/`)
  await page.fill('input[name=user]', user)
  await page.click('button:has-text("Sign in")')
  await page.waitForSelector('.list-pane', WAIT)
}

export async function send (page: Page, text: string): Promise<void> {
  await page.fill('textarea[name=message]', text)
  await page.press('textarea[name=message]', 'Enter')
}

/** The texts of the open chat's rows (messages and notices), top to bottom; pending sends are not among them. */
export const shown = (page: Page): Promise<string[]> =>
  page.$$eval('.chat-pane .items .row .text', (rows) => rows.map((row) => row.textContent ?? ''))

export async function waitForShown (page: Page, expected: string[]): Promise<void> {
  await page.waitForFunction((want) => {
    const texts = [...document.querySelectorAll('.chat-pane .items .row .text')].map((row) => row.textContent)
    return JSON.stringify(texts) === JSON.stringify(want)
  }, expected, WAIT).catch(async (error: Error) => {
    throw new Error(`${error.message}\nwanted ${JSON.stringify(expected)}\nshown  ${JSON.stringify(await shown(page))}`)
  })
}
