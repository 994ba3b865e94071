// A tiny DOM builder. Every user-supplied string goes in as text, never as
// HTML, so a message body cannot inject markup.
type Child = Node | string | number | null | undefined | false

interface Props {
  class?: string
  dataset?: Record<string, string>
  attrs?: Record<string, string>
  on?: Partial<{ [K in keyof HTMLElementEventMap]: (event: HTMLElementEventMap[K]) => void }>
  [property: string]: unknown
}

export function h<K extends keyof HTMLElementTagNameMap> (tag: K, props: Props = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag)
  const { class: className, dataset, attrs, on, ...properties } = props
  if (className !== undefined) element.className = className
  for (const [key, value] of Object.entries(dataset ?? {})) element.dataset[key] = value
  for (const [key, value] of Object.entries(attrs ?? {})) element.setAttribute(key, value)
  for (const [event, listener] of Object.entries(on ?? {})) element.addEventListener(event, listener as EventListener)
  Object.assign(element, properties)
  append(element, children)
  return element
}

export function append (parent: Node, children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue
    parent.appendChild(typeof child === 'object' ? child : document.createTextNode(String(child)))
  }
}

/** Replaces all of `parent`'s children. */
export function replace (parent: Node, ...children: Child[]): void {
  while (parent.firstChild !== null) parent.removeChild(parent.firstChild)
  append(parent, children)
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: 'numeric', minute: '2-digit' })
const dayFormat = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short' })
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' })

function sameDay (a: Date, b: Date): boolean {
  return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate()
}

/** "14:05" today, "3 Mar" before. */
export function shortTime (ts: number): string {
  const date = new Date(ts)
  return sameDay(date, new Date()) ? timeFormat.format(date) : dayFormat.format(date)
}

export function clockTime (ts: number): string {
  return timeFormat.format(new Date(ts))
}

export function fullTime (ts: number): string {
  return fullFormat.format(new Date(ts))
}

/** "today", "yesterday" or a date: the separators between days in a chat. */
export function dayLabel (ts: number): string {
  const date = new Date(ts)
  const today = new Date()
  if (sameDay(date, today)) return 'Today'
  const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1)
  if (sameDay(date, yesterday)) return 'Yesterday'
  return new Intl.DateTimeFormat(undefined, { dateStyle: 'medium' }).format(date)
}

export function dayKey (ts: number): string {
  const date = new Date(ts)
  return `${date.getFullYear()}-${date.getMonth()}-${date.getDate()}`
}
