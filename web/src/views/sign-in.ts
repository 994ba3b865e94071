// Sign in: the development sign-in by name (only when the server runs with
// DEMO_LOGIN=1, and labelled as such), or a token from your auth service.
import { h } from '../dom.ts'
import { USER_ID_PATTERN, explainUserId, type Session } from '../session.ts'

export interface SignInOptions {
  demoLogin: boolean
  /** Shown above the forms (why the last attempt failed, or that a token expired). */
  problem?: string
  submit: (session: Session) => Promise<void>
}

export function signInView ({ demoLogin, problem, submit }: SignInOptions): HTMLElement {
  const error = h('p', { class: 'form-error', attrs: { role: 'alert' } }, problem ?? '')

  async function attempt (session: Session, button: HTMLButtonElement): Promise<void> {
    error.textContent = ''
    button.disabled = true
    try {
      await submit(session)
    } catch (e) {
      error.textContent = (e as Error).message
    } finally {
      button.disabled = false
    }
  }

  const name = h('input', {
    type: 'text', name: 'user', required: true, autocomplete: 'username', autocapitalize: 'none', spellcheck: false,
    pattern: USER_ID_PATTERN, maxLength: 128, placeholder: 'alice', attrs: { 'aria-label': 'User name' }
  })
  explainUserId(name)
  const demoButton = h('button', { type: 'submit', class: 'primary' }, 'Sign in')
  const demoForm = h('form', {
    class: 'card',
    on: {
      submit: (event) => {
        event.preventDefault()
        void attempt({ kind: 'demo', user: name.value.trim() }, demoButton)
      }
    }
  },
  h('h2', {}, 'Sign in by name'),
  h('p', { class: 'dev-only' }, h('strong', {}, 'Development only. '), 'This server runs with DEMO_LOGIN=1: anyone can sign in as anyone.'),
  h('label', {}, 'User name', name),
  demoButton)

  const token = h('textarea', { name: 'token', required: true, rows: 3, spellcheck: false, placeholder: 'eyJhbGciOi…', attrs: { 'aria-label': 'Token' } })
  const tokenButton = h('button', { type: 'submit', class: demoLogin ? '' : 'primary' }, 'Use token')
  const tokenForm = h('form', {
    class: 'card',
    on: {
      submit: (event) => {
        event.preventDefault()
        void attempt({ kind: 'token', token: token.value.trim() }, tokenButton)
      }
    }
  },
  h('h2', {}, demoLogin ? 'Or paste a token' : 'Paste a token'),
  h('p', { class: 'hint' }, 'A JWT from your auth service (its "sub" is your user id). You can also open this page as ', h('code', {}, '/#token=<jwt>'), '.'),
  token,
  tokenButton)

  return h('main', { class: 'sign-in' },
    h('h1', {}, 'inboxd chat'),
    error,
    demoLogin && demoForm,
    tokenForm)
}
