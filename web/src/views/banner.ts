// The connection banner: shown while offline or reconnecting, and briefly
// "Back online" when the connection returns. Also the place for short notices.
import { h } from '../dom.ts'
import type { ConnectionState } from '../../../client-sdk/src/index.ts'

export interface Banner {
  element: HTMLElement
  show (state: ConnectionState): void
  notify (text: string): void
}

export function bannerView (): Banner {
  const connection = h('div', { class: 'banner', hidden: true, attrs: { role: 'status', 'aria-live': 'polite' } })
  const notice = h('div', { class: 'notice', hidden: true, attrs: { role: 'alert' } })
  let everOnline = false
  let wasDown = false
  let hideTimer: ReturnType<typeof setTimeout> | undefined
  let noticeTimer: ReturnType<typeof setTimeout> | undefined

  return {
    element: h('div', { class: 'banners' }, connection, notice),
    show (state) {
      clearTimeout(hideTimer)
      // Final states end the session; the app shows the sign-in form.
      if (state === 'revoked' || state === 'loggedOut') return
      if (state === 'online') {
        const recovered = wasDown && everOnline
        everOnline = true
        wasDown = false
        if (!recovered) { connection.hidden = true; return }
        connection.className = 'banner online'
        connection.dataset.state = 'online'
        connection.textContent = 'Back online'
        hideTimer = setTimeout(() => { connection.hidden = true }, 1_500)
        return
      }
      wasDown = true
      connection.hidden = false
      connection.className = `banner ${state}`
      connection.dataset.state = navigator.onLine ? state : 'no-network'
      connection.textContent = navigator.onLine
        ? state === 'connecting' ? 'Connecting…' : 'Connection lost. Reconnecting…'
        : 'You are offline. Messages you send will go out when the network is back.'
    },
    notify (text) {
      clearTimeout(noticeTimer)
      notice.textContent = text
      notice.hidden = false
      noticeTimer = setTimeout(() => { notice.hidden = true }, 5_000)
    }
  }
}
