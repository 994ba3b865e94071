// The web chat page's entry point: sign in, then run the app.
import './style.css'
import { replace } from './dom.ts'
import { clearSession, loadSession, saveSession, takeTokenFromFragment, type Session } from './session.ts'
import { startApp, type RunningApp } from './app.ts'
import { signInView } from './views/sign-in.ts'

// crypto.randomUUID exists only in secure contexts (https, localhost); the
// SDK uses it for message ids, and a phone trying the page over plain http
// on a LAN address is not one. getRandomValues works everywhere.
if (typeof crypto.randomUUID !== 'function') {
  Object.defineProperty(crypto, 'randomUUID', {
    value: (): string => {
      const b = crypto.getRandomValues(new Uint8Array(16))
      b[6] = (b[6]! & 0x0f) | 0x40
      b[8] = (b[8]! & 0x3f) | 0x80
      const hex = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('')
      return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
    }
  })
}

const root = document.getElementById('app')!
let running: RunningApp | undefined

interface PageConfig { demoLogin: boolean, maxPayloadBytes: number }

/** The server's settings the page needs (DEMO_LOGIN, MAX_PAYLOAD_BYTES); the defaults if it cannot be read. */
async function pageConfig (): Promise<PageConfig> {
  try {
    return { demoLogin: false, maxPayloadBytes: 65_536, ...await (await fetch('/config.json')).json() as Partial<PageConfig> }
  } catch {
    return { demoLogin: false, maxPayloadBytes: 65_536 }
  }
}

async function signIn (session: Session): Promise<void> {
  running = await startApp({
    root,
    session,
    maxPayloadBytes: (await pageConfig()).maxPayloadBytes,
    signedOut: (reason) => {
      running = undefined
      clearSession()
      history.replaceState(null, '', location.pathname + location.search)
      void showSignIn(reason)
    }
  })
  saveSession(session)
}

async function showSignIn (problem?: string): Promise<void> {
  const { demoLogin } = await pageConfig()
  replace(root, signInView({ demoLogin, problem, submit: signIn }))
  root.querySelector<HTMLInputElement>('input, textarea')?.focus()
}

async function boot (): Promise<void> {
  const fromFragment = takeTokenFromFragment()
  const session = fromFragment === undefined ? loadSession() : { kind: 'token' as const, token: fromFragment }
  if (session === undefined) return showSignIn()
  try {
    await signIn(session)
  } catch (error) {
    clearSession()
    await showSignIn((error as Error).message)
  }
}

void boot()
