// Presence as a dot and as words ("online", "last seen 14:05").
import { h, shortTime, clockTime } from '../dom.ts'
import type { ChatStore } from '../store.ts'

/** A round initial with a colour of its own per user (the same on every screen), and the presence dot. */
export function avatar (user: string, dot: HTMLElement): HTMLElement {
  let hue = 0
  for (const char of user) hue = (hue * 31 + char.charCodeAt(0)) % 360
  const element = h('span', { class: 'avatar', attrs: { 'aria-hidden': 'true' } }, user.slice(0, 1).toUpperCase(), dot)
  element.style.setProperty('--hue', String(hue))
  return element
}

export function presenceDot (store: ChatStore, user: string): HTMLElement {
  const state = store.presence.get(user)
  // Offline, we cannot know: the last state seen may be long gone.
  const status = store.online ? state?.status ?? 'unknown' : 'unknown'
  return h('span', { class: `dot ${status}`, dataset: { presence: status }, attrs: { 'aria-label': status, title: status } })
}

export function presenceText (store: ChatStore, user: string): string {
  if (!store.online) return 'unknown while you are offline'
  if (store.isTyping(user)) return 'typing…'
  const state = store.presence.get(user)
  if (state === undefined) return ''
  if (state.status === 'online') return 'online'
  if (state.lastSeen === 0) return 'offline'
  const today = new Date().toDateString() === new Date(state.lastSeen).toDateString()
  return `last seen ${today ? 'at ' + clockTime(state.lastSeen) : shortTime(state.lastSeen)}`
}
