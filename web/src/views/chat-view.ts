// One conversation, 1:1 or group: history (older pages load as you scroll
// up), live messages, ticks (1:1: sent ✓, delivered ✓✓, read ✓✓ in colour),
// typing, presence (1:1) or members (group), recall, and a composer.
//
// Rows are keyed by their position (our seq in a 1:1 conversation, the gseq
// in a group), so a message that comes both from a history page and live,
// or again after a reconnect, is shown once, and rows are kept in order
// whatever order they arrive in.
import type { EditEvent, GroupEvent, MessageEvent, RecallEvent, ReplyTo } from '../../../client-sdk/src/index.ts'
import { clockTime, dayKey, dayLabel, fullTime, h, replace } from '../dom.ts'
import type { Connection } from '../connection.ts'
import { groupItem, itemPosition, type ChatItem, type ChatTarget } from '../chat-target.ts'
import { bodyText, type ChatStore, type Pending } from '../store.ts'
import { avatar, presenceDot, presenceText } from './presence.ts'
import { groupPanel, type GroupPanel } from './group-panel.ts'

const PAGE = 40
const TYPING_REPEAT_MS = 2_500
const TYPING_IDLE_MS = 4_000

export interface ChatViewOptions {
  store: ChatStore
  connection: Connection
  target: ChatTarget
  /** The server's MAX_PAYLOAD_BYTES: a longer message is refused here, saying the limit. */
  maxPayloadBytes: number
  /** Narrow screens: back to the list. */
  back: () => void
  notify: (text: string) => void
}

export interface ChatView {
  element: HTMLElement
  focus (): void
  dispose (): void
}

/** 1:1: sent, delivered, read. Groups: sent, read by some of the others (`read-some`), read by all of them. */
type Tick = 'sent' | 'delivered' | 'read-some' | 'read'

/** Longer texts are folded to a few lines, with "Read more". */
const FOLD_CHARS = 600
const FOLD_LINES = 12

/** The bytes a text takes as an MQTT message (`{"id": <uuid>, "body": "..."}`), to compare with MAX_PAYLOAD_BYTES. */
function payloadBytes (text: string): number {
  return new TextEncoder().encode(JSON.stringify({ id: '00000000-0000-0000-0000-000000000000', body: text })).length
}

const kib = (bytes: number): string => `${Math.ceil(bytes / 1024)} KB`

export function chatView ({ store, connection, target, maxPayloadBytes, back, notify }: ChatViewOptions): ChatView {
  const me = store.me
  const key = target.key
  const group = target.kind === 'group'
  const messages = new Map<number, ChatItem>()
  const rows = new Map<number, HTMLElement>()
  const daySeparators = new Map<string, HTMLElement>()
  let loaded = false
  let loadingEarlier = false
  let hasMore = false
  /** Seqs below this are not shown until scrolled back to (a gap is never shown). */
  let oldest = Number.POSITIVE_INFINITY
  let disposed = false

  // ---- layout -----------------------------------------------------------------

  const status = h('span', { class: 'status', attrs: { 'aria-live': 'polite' } })
  const headerDot = h('span', { class: 'dot-slot' })
  const top = h('div', { class: 'history-edge', attrs: { role: 'status' } })
  const items = h('div', { class: 'items' })
  const pendingItems = h('div', { class: 'pending-items' })
  const typingBubble = h('div', { class: 'row theirs typing-indicator', hidden: true, attrs: { 'aria-label': 'typing' } },
    h('div', { class: 'bubble' }, h('span', { class: 'typing-dots' }, h('i'), h('i'), h('i'))))
  const scroller = h('div', { class: 'messages', attrs: { role: 'log', 'aria-label': `Messages in ${store.title(key)}` } }, top, items, pendingItems, typingBubble)
  // Scrolled up: a button back to the newest, counting what came meanwhile.
  const jumpButton = h('button', { type: 'button', class: 'jump-latest', hidden: true, attrs: { 'aria-label': 'Jump to the latest message' }, on: { click: () => { scrollToBottom(); renderJump() } } })
  const messagesBox = h('div', { class: 'messages-box' }, scroller, jumpButton)
  const input = h('textarea', { name: 'message', rows: 1, placeholder: 'Message', enterKeyHint: 'send', attrs: { 'aria-label': 'Message' } })
  const sendButton = h('button', { type: 'submit', class: 'send', attrs: { 'aria-label': 'Send' } }, 'Send')
  const composer = h('form', { class: 'composer' }, input, sendButton)
  // Above the composer while replying to, or editing, a message.
  const composeBar = h('div', { class: 'compose-bar', hidden: true, attrs: { role: 'status' } })
  let replying: MessageEvent | undefined
  let editing: MessageEvent | undefined

  const titleText = h('span', { class: 'peer' }, store.title(key))
  // A group's initial follows its name (unknown until the groups are loaded, and renames).
  const avatarSlot = h('span', { class: 'avatar-slot' }, avatar(group ? store.title(key) : target.id, headerDot))
  // 1:1 only: blocking withholds the peer's messages and typing, and hides your presence from them.
  const blockButton = h('button', { type: 'button', class: 'link block', on: { click: () => { void toggleBlock() } } })
  // Groups: members, roles, rename, add, remove, leave (as your role allows).
  let panel: GroupPanel | undefined
  const membersButton = h('button', {
    type: 'button', class: 'link members-button', attrs: { 'aria-expanded': 'false' },
    on: { click: () => toggleMembers() }
  }, 'Members')
  const panelSlot = h('div', { class: 'panel-slot' })
  const element = h('section', { class: 'pane chat-pane', dataset: group ? { group: target.id } : { peer: target.id }, attrs: { 'aria-label': `Chat with ${store.title(key)}` } },
    h('header', { class: 'bar' },
      h('button', { type: 'button', class: 'back', attrs: { 'aria-label': 'Back to chats' }, on: { click: back } }, '‹'),
      avatarSlot,
      h('span', { class: 'title' }, titleText, status),
      group ? membersButton : blockButton),
    panelSlot,
    messagesBox,
    composeBar,
    composer)

  function toggleMembers (): void {
    if (panel === undefined) {
      panel = groupPanel({ store, connection, group: target.id, notify, close: toggleMembers })
      panelSlot.append(panel.element)
    } else {
      panel.dispose()
      panel.element.remove()
      panel = undefined
    }
    membersButton.setAttribute('aria-expanded', String(panel !== undefined))
  }

  // ---- header: presence and typing --------------------------------------------

  function renderBlock (): void {
    const blocked = store.blocked.has(target.id)
    blockButton.textContent = blocked ? 'Unblock' : 'Block'
    blockButton.dataset.blocked = String(blocked)
  }

  async function toggleBlock (): Promise<void> {
    const blocked = store.blocked.has(target.id)
    try {
      const client = await connection.client()
      if (blocked) await client.blocks.unblock(target.id)
      else await client.blocks.block(target.id)
      store.setBlocked(target.id, !blocked)
      notify(blocked ? `${target.id} can reach you again.` : `You blocked ${target.id}: their messages will not reach you, and they no longer see when you are online.`)
    } catch (error) {
      notify(`Could not ${blocked ? 'unblock' : 'block'}: ${(error as Error).message}`)
    }
  }

  function renderHeader (): void {
    const typists = store.typingIn(key)
    const typing = typists.length > 0
    if (group) {
      const info = store.groups.get(target.id)
      if (titleText.textContent !== store.title(key)) replace(avatarSlot, avatar(store.title(key), headerDot))
      titleText.textContent = store.title(key)
      status.textContent = typing
        ? `${typists.join(', ')} ${typists.length === 1 ? 'is' : 'are'} typing…`
        : info === undefined ? '' : info.left ? 'you are no longer a member' : `${info.members.length} members`
      composer.hidden = info?.left === true
    } else {
      replace(headerDot, presenceDot(store, target.id))
      status.textContent = presenceText(store, target.id)
    }
    status.classList.toggle('typing', typing)
    if (typingBubble.hidden === typing) {
      const stick = nearBottom()
      typingBubble.hidden = !typing
      if (stick) scrollToBottom()
    }
  }

  // ---- rows ---------------------------------------------------------------------

  function tickOf (position: number): Tick {
    if (group) {
      const { readers, others } = store.groupReaders(target.id, position)
      return others > 0 && readers.length === others ? 'read' : readers.length > 0 ? 'read-some' : 'sent'
    }
    const conversation = store.conversations.get(key)
    if (conversation === undefined) return 'sent'
    if (position <= conversation.peerReadUpTo) return 'read'
    if (position <= conversation.peerDeliveredUpTo) return 'delivered'
    return 'sent'
  }

  function ticks (tick: Tick | 'pending', position?: number): HTMLElement {
    const text = { pending: 'sending…', sent: '✓', delivered: '✓✓', 'read-some': '✓✓', read: '✓✓' }[tick]
    let label = { pending: 'sending', sent: 'sent', delivered: 'delivered', 'read-some': 'read by some', read: group ? 'read by everyone' : 'read' }[tick]
    if (tick === 'read-some' && position !== undefined) {
      const { readers, others } = store.groupReaders(target.id, position)
      label = `read by ${readers.join(', ')} (${readers.length} of ${others})`
    }
    return h('span', { class: `ticks ${tick}`, attrs: { 'aria-label': label, title: label } }, text)
  }

  /** The message a reply answers, as a quote above its text (if this page has it loaded). */
  function quoteOf (replyTo: ReplyTo): HTMLElement {
    const position = target.replied(replyTo)
    let quoted: ChatItem | undefined = position === undefined ? undefined : messages.get(position)
    if (quoted === undefined && replyTo.id !== undefined) {
      for (const item of messages.values()) if (item.type === 'message' && item.id === replyTo.id && (replyTo.from === undefined || item.from === replyTo.from)) quoted = item
    }
    if (quoted?.type !== 'message') return h('span', { class: 'quote missing' }, 'Reply to a message not shown here')
    const text = bodyText(quoted)
    return h('span', { class: 'quote' }, h('b', {}, quoted.from === me ? 'You' : quoted.from), ' ', text.length > 120 ? `${text.slice(0, 120)}…` : text)
  }

  // ---- replying and editing ------------------------------------------------------

  function renderComposeBar (): void {
    const about = editing ?? replying
    composeBar.hidden = about === undefined
    if (about === undefined) return
    const text = bodyText(about)
    replace(composeBar,
      h('span', { class: 'about' }, h('b', {}, editing !== undefined ? 'Editing' : `Replying to ${about.from === me ? 'yourself' : about.from}`), ' ', text.length > 80 ? `${text.slice(0, 80)}…` : text),
      h('button', { type: 'button', class: 'link cancel-compose', attrs: { 'aria-label': 'Cancel' }, on: { click: cancelCompose } }, '✕'))
  }

  function startReply (message: MessageEvent): void {
    editing = undefined
    replying = message
    renderComposeBar()
    input.focus()
  }

  function startEdit (message: MessageEvent): void {
    replying = undefined
    editing = message
    input.value = bodyText(message)
    autoGrow()
    renderComposeBar()
    input.focus()
  }

  function cancelCompose (): void {
    if (editing !== undefined) input.value = ''
    replying = undefined
    editing = undefined
    autoGrow()
    renderComposeBar()
  }

  async function saveEdit (message: MessageEvent, text: string): Promise<void> {
    if (text === bodyText(message)) return
    try {
      await target.edit(message, text)
      const position = itemPosition(message)
      const shown = messages.get(position)
      if (shown?.type === 'message' && shown.recalled !== true) insert({ ...shown, body: text, edited: true, editedAt: Date.now() })
    } catch (error) {
      const code = (error as { code?: unknown }).code
      notify(`Could not edit: ${typeof code === 'string' ? code.replace(/_/g, ' ') : (error as Error).message}`)
    }
  }

  /** Someone's edit (or ours, from another device): the new text in the message's place. */
  function applyEdit (edit: EditEvent): void {
    const position = target.edited(edit)
    const message = position === undefined ? undefined : messages.get(position)
    if (message?.type !== 'message' || message.recalled === true || message.id !== edit.id) return
    insert({ ...message, body: edit.body, edited: true, editedAt: edit.ts })
  }

  /** A long text folded to a few lines, with a button that unfolds it. */
  function textOf (text: string): HTMLElement[] {
    const span = h('span', { class: 'text' }, text)
    if (text.length <= FOLD_CHARS && text.split('\n').length <= FOLD_LINES) return [span]
    span.classList.add('folded')
    const more = h('button', {
      type: 'button', class: 'link read-more',
      on: {
        click: (event) => {
          // Not the tap that opens your own message's actions.
          event.stopPropagation()
          span.classList.remove('folded')
          more.remove()
        }
      }
    }, 'Read more')
    return [span, more]
  }

  function rowFor (item: ChatItem): HTMLElement {
    if (item.type === 'notice') {
      return h('div', { class: 'row system', dataset: { position: String(item.position), day: dayKey(item.ts) } }, h('span', { class: 'text' }, item.text))
    }
    const message = item
    const position = itemPosition(message)
    const mine = message.from === me
    const recalled = message.recalled === true
    const meta = h('span', { class: 'meta' },
      message.edited === true && !recalled && h('span', { class: 'edited', attrs: { title: message.editedAt === undefined ? 'edited' : `edited ${fullTime(message.editedAt)}` } }, 'edited'),
      h('time', { dateTime: new Date(message.ts).toISOString(), title: fullTime(message.ts) }, clockTime(message.ts)),
      mine && !recalled && ticks(tickOf(position), position))
    const bubble = h('div', { class: `bubble${recalled ? ' recalled' : ''}` },
      group && !mine && h('span', { class: 'from' }, message.from),
      message.replyTo !== undefined && !recalled && quoteOf(message.replyTo),
      ...textOf(bodyText(message)), meta)
    const row = h('div', {
      class: `row ${mine ? 'mine' : 'theirs'}`,
      dataset: { position: String(position), id: message.id, day: dayKey(message.ts), ...(mine && !recalled ? { tick: tickOf(position) } : {}) }
    }, bubble)
    if (!recalled) {
      // Anyone's message: Reply. Your own: also Edit and Recall (which asks first: it takes the message back from everyone).
      const actions = h('div', { class: 'actions', hidden: true })
      const close = (): void => { actions.hidden = true; bubble.setAttribute('aria-expanded', 'false') }
      const offer = (): void => replace(actions,
        h('button', { type: 'button', class: 'reply', on: { click: () => { close(); startReply(message) } } }, 'Reply'),
        mine && h('button', { type: 'button', class: 'edit', on: { click: () => { close(); startEdit(message) } } }, 'Edit'),
        mine && h('button', { type: 'button', class: 'recall', on: { click: confirmRecall } }, 'Recall'))
      function confirmRecall (): void {
        replace(actions,
          h('span', { class: 'confirm-text' }, group ? 'Recall for every member?' : 'Recall for both of you?'),
          h('button', { type: 'button', class: 'confirm-recall danger', on: { click: () => { void recall(message) } } }, 'Recall'),
          h('button', { type: 'button', class: 'cancel', on: { click: offer } }, 'Cancel'))
      }
      offer()
      // Tap (or Enter on) a message for its actions; its text stays its accessible name.
      bubble.tabIndex = 0
      bubble.setAttribute('role', 'button')
      bubble.setAttribute('aria-expanded', 'false')
      bubble.title = 'Tap for options'
      const toggle = (): void => {
        actions.hidden = !actions.hidden
        bubble.setAttribute('aria-expanded', String(!actions.hidden))
      }
      bubble.addEventListener('click', () => { offer(); toggle() })
      bubble.addEventListener('keydown', (event) => { if (event.key === 'Enter' || event.key === ' ') { event.preventDefault(); toggle() } })
      row.append(actions)
    }
    return row
  }

  /** The separator "Today" / a date goes right before the first row of its day. */
  function placeDaySeparator (row: HTMLElement, ts: number): void {
    const day = row.dataset.day!
    let first = row
    for (let previous = first.previousElementSibling; previous !== null; previous = previous.previousElementSibling) {
      if (!(previous instanceof HTMLElement) || previous.classList.contains('day')) continue
      if (previous.dataset.day !== day) break
      first = previous
    }
    let separator = daySeparators.get(day)
    if (separator === undefined) daySeparators.set(day, separator = h('div', { class: 'day', attrs: { role: 'separator' } }, h('span', {}, dayLabel(ts))))
    if (first.previousElementSibling !== separator) first.before(separator)
  }

  function insert (item: ChatItem): void {
    const position = itemPosition(item)
    const row = rowFor(item)
    const existing = rows.get(position)
    rows.set(position, row)
    messages.set(position, item)
    if (existing !== undefined) {
      existing.replaceWith(row)
      return
    }
    // The next row by position; usually none (a new message goes last).
    let next: HTMLElement | undefined
    let nextPosition = Number.POSITIVE_INFINITY
    for (const other of rows.keys()) if (other > position && other < nextPosition) { nextPosition = other; next = rows.get(other) }
    if (next === undefined) items.append(row)
    else {
      const separator = next.previousElementSibling
      ;(separator instanceof HTMLElement && separator.classList.contains('day') ? separator : next).before(row)
    }
    placeDaySeparator(row, item.ts)
    if (next !== undefined) placeDaySeparator(next, messages.get(nextPosition)!.ts)
  }

  const recalledFlag = (item: ChatItem | undefined): boolean | undefined => item?.type === 'message' ? item.recalled : undefined

  function accept (item: ChatItem): void {
    const position = itemPosition(item)
    if (loaded && hasMore && position < oldest) return
    if (messages.has(position) && recalledFlag(messages.get(position)) === recalledFlag(item)) return
    const mine = item.type === 'message' && item.from === me
    const stick = nearBottom() || mine
    const isNew = !messages.has(position)
    insert(item)
    if (loaded) renderEdge()
    if (loaded && stick) scrollToBottom()
    else if (loaded && isNew && item.type === 'message' && !mine) missed++
    renderJump()
    if (item.type === 'message' && !mine) scheduleMarkRead()
  }

  function acceptMessage (message: MessageEvent): void {
    if (target.has(message)) accept(message)
  }

  function acceptGroupEvent (event: GroupEvent): void {
    if (event.group !== target.id) return
    const item = groupItem(event)
    if (item !== undefined) accept(item)
  }

  function applyRecall (recall: RecallEvent): void {
    const position = target.recalled(recall)
    const message = position === undefined ? undefined : messages.get(position)
    if (message?.type !== 'message' || message.recalled === true) return
    insert({ ...message, body: undefined, recalled: true })
  }

  function refreshTicks (): void {
    for (const [seq, row] of rows) {
      if (row.dataset.tick === undefined) continue
      const tick = tickOf(seq)
      // A group's "read by some" may name more readers than before.
      if (row.dataset.tick === tick && tick !== 'read-some') continue
      row.dataset.tick = tick
      row.querySelector('.ticks')?.replaceWith(ticks(tick, seq))
    }
  }

  // ---- messages being sent ----------------------------------------------------------

  function renderPending (): void {
    const stick = nearBottom()
    replace(pendingItems, ...(store.pending.get(key) ?? []).map((pending) =>
      h('div', { class: `row mine pending${pending.failed !== undefined ? ' failed' : ''}`, dataset: { pending: String(pending.key) } },
        h('div', { class: 'bubble' },
          h('span', { class: 'text' }, pending.text),
          h('span', { class: 'meta' }, pending.failed === undefined ? ticks('pending') : h('span', { class: 'error' }, `Not sent: ${pending.failed}`))),
        pending.failed !== undefined && h('div', { class: 'actions' },
          h('button', { type: 'button', on: { click: () => store.removePending(pending) } }, 'Dismiss')))))
    if (stick) scrollToBottom()
  }

  async function send (): Promise<void> {
    const text = input.value.trim()
    if (text === '') return
    input.value = ''
    autoGrow()
    stopTyping()
    const [edit, reply] = [editing, replying]
    replying = undefined
    editing = undefined
    renderComposeBar()
    if (edit !== undefined) return saveEdit(edit, text)
    const pending: Pending = store.addPending(key, text)
    scrollToBottom()
    const bytes = payloadBytes(text)
    if (bytes > maxPayloadBytes) {
      store.failPending(pending, `too long: ${kib(bytes)}, and this server takes at most ${kib(maxPayloadBytes)} per message`)
      return
    }
    try {
      await target.send(text, reply === undefined ? undefined : target.replyTo(reply))
      store.removePending(pending)
    } catch (error) {
      const code = (error as { code?: unknown }).code
      store.failPending(pending, typeof code === 'string' ? code.replace(/_/g, ' ') : (error as Error).message)
    }
  }

  async function recall (message: MessageEvent): Promise<void> {
    try {
      await target.recall(message)
      insert({ ...message, recalled: true, body: undefined })
    } catch (error) {
      notify(`Could not recall: ${(error as Error).message}`)
    }
  }

  // ---- typing (ours) ---------------------------------------------------------------

  let typingSentAt = 0
  let typingIdle: ReturnType<typeof setTimeout> | undefined

  function typed (): void {
    autoGrow()
    if (input.value.trim() === '') return stopTyping()
    const now = Date.now()
    if (now - typingSentAt > TYPING_REPEAT_MS) {
      typingSentAt = now
      target.typing(true)
    }
    clearTimeout(typingIdle)
    typingIdle = setTimeout(stopTyping, TYPING_IDLE_MS)
  }

  function stopTyping (): void {
    clearTimeout(typingIdle)
    if (typingSentAt === 0) return
    typingSentAt = 0
    target.typing(false)
  }

  function autoGrow (): void {
    input.style.height = 'auto'
    input.style.height = `${Math.min(input.scrollHeight, 140)}px`
  }

  input.addEventListener('input', typed)
  input.addEventListener('blur', stopTyping)
  input.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && (editing !== undefined || replying !== undefined)) return cancelCompose()
    // Enter sends; Shift+Enter (and Enter while composing with an IME) makes a new line.
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault()
      void send()
    }
  })
  composer.addEventListener('submit', (event) => {
    event.preventDefault()
    void send()
    input.focus()
  })

  // ---- read marks --------------------------------------------------------------------

  let markTimer: ReturnType<typeof setTimeout> | undefined

  function scheduleMarkRead (): void {
    clearTimeout(markTimer)
    markTimer = setTimeout(markRead, 250)
  }

  async function markRead (): Promise<void> {
    // Offline: the `online` listener below tries again.
    if (disposed || document.visibilityState !== 'visible' || !navigator.onLine) return
    if (group && store.groups.get(target.id)?.left === true) return
    let newest = 0
    for (const [position, item] of messages) if (item.type === 'message' && item.from !== me && position > newest) newest = position
    const conversation = store.conversations.get(key)
    if (newest === 0 || (conversation !== undefined && newest <= conversation.readUpTo && conversation.unread === 0)) return
    try {
      store.readMarked(key, await target.markRead(newest))
    } catch (error) {
      // The server could not be reached: try again a little later (a refusal, such as
      // a group we were just removed from, is final).
      const status = (error as { status?: unknown }).status
      if (typeof status === 'number' && status >= 400 && status < 500) return
      if (!disposed) markTimer = setTimeout(markRead, 3_000)
    }
  }

  const onVisibility = (): void => { if (document.visibilityState === 'visible') scheduleMarkRead() }
  document.addEventListener('visibilitychange', onVisibility)
  addEventListener('online', scheduleMarkRead)

  // ---- history -------------------------------------------------------------------------

  function nearBottom (): boolean {
    return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 120
  }

  function scrollToBottom (): void {
    scroller.scrollTop = scroller.scrollHeight
    stuck = true
    missed = 0
  }

  /** Was the view at the newest message when last scrolled (kept there when the pane changes size, e.g. a banner appears). */
  let stuck = true
  /** Messages from others that came while scrolled up. */
  let missed = 0

  function renderJump (): void {
    const away = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight > 300
    jumpButton.hidden = !away && missed === 0
    jumpButton.textContent = missed > 0 ? `↓ ${missed} new` : '↓'
  }

  const resized = new ResizeObserver(() => { if (stuck) scroller.scrollTop = scroller.scrollHeight })
  resized.observe(scroller)

  // ---- the unread divider: above the first message that was unread when the chat opened ----

  const atOpen = store.conversations.get(key)
  const unreadFrom = atOpen !== undefined && atOpen.unread > 0 ? atOpen.readUpTo : undefined
  const unreadDivider = h('div', { class: 'unread-divider', attrs: { role: 'separator' } },
    h('span', {}, atOpen?.unread === 1 ? '1 unread message' : `${atOpen?.unread ?? 0} unread messages`))

  function placeUnreadDivider (): void {
    // Only once the pages reach back to the read mark: before that, the first unread may be further up.
    if (unreadFrom === undefined || (hasMore && oldest > unreadFrom)) return
    let first: number | undefined
    for (const [position, item] of messages) {
      if (item.type === 'message' && item.from !== me && position > unreadFrom && (first === undefined || position < first)) first = position
    }
    const row = first === undefined ? undefined : rows.get(first)
    if (row === undefined) return
    const separator = row.previousElementSibling
    const anchor = separator instanceof HTMLElement && separator.classList.contains('day') ? separator : row
    if (anchor.previousElementSibling !== unreadDivider) anchor.before(unreadDivider)
  }

  /** After the first page: at the unread divider if it is on it and above the fold, else at the newest. */
  function settleInitialScroll (): void {
    placeUnreadDivider()
    if (unreadDivider.isConnected && unreadDivider.offsetTop < scroller.scrollHeight - scroller.clientHeight) {
      scroller.scrollTop = Math.max(0, unreadDivider.offsetTop - 8)
      stuck = nearBottom()
    } else scrollToBottom()
    renderJump()
  }

  function renderEdge (): void {
    top.textContent = !loaded || loadingEarlier ? 'Loading…' : hasMore ? '' : messages.size === 0 ? `No messages in ${store.title(key)} yet. Say hello!` : 'Beginning of the conversation'
  }

  async function loadPage (before?: number): Promise<ChatItem[]> {
    const page = await target.history(before, PAGE)
    if (page.events !== undefined) store.groupHistory(target.id, page.events)
    hasMore = page.hasMore
    const first = page.items[0]
    if (first !== undefined) oldest = Math.min(oldest, itemPosition(first))
    else if (!hasMore) oldest = 0
    return page.items
  }

  async function loadLatest (): Promise<void> {
    try {
      const page = await loadPage()
      if (disposed) return
      loaded = true
      // Live events that came meanwhile are kept, unless older than the page (there may be a gap).
      for (const [position, row] of rows) if (hasMore && position < oldest) { row.remove(); rows.delete(position); messages.delete(position) }
      for (const item of page) if (!messages.has(itemPosition(item))) insert(item)
      renderEdge()
      // Only now, before anyone could scroll: later it would undo the reader's own scrolling.
      settleInitialScroll()
      scheduleMarkRead()
      await fillScreen()
      if (group) void loadGroupReads()
    } catch (error) {
      top.textContent = `Could not load messages: ${(error as Error).message}`
      setTimeout(() => { if (!disposed && !loaded) void loadLatest() }, 3_000)
    }
  }

  async function loadEarlier (): Promise<void> {
    if (!loaded || loadingEarlier || !hasMore) return
    loadingEarlier = true
    renderEdge()
    try {
      const page = await loadPage(oldest)
      if (disposed) return
      // Keep what is on screen where it is while rows are added above it.
      const fromBottom = scroller.scrollHeight - scroller.scrollTop
      for (const item of page) if (!messages.has(itemPosition(item))) insert(item)
      placeUnreadDivider()
      scroller.scrollTop = scroller.scrollHeight - fromBottom
    } catch (error) {
      notify(`Could not load earlier messages: ${(error as Error).message}`)
    } finally {
      loadingEarlier = false
      renderEdge()
    }
  }

  /** Loads earlier pages until the list can scroll (else there is no scroll to trigger them). */
  async function fillScreen (): Promise<void> {
    while (!disposed && hasMore && scroller.scrollHeight <= scroller.clientHeight + 40) {
      await loadEarlier()
      scrollToBottom()
    }
  }

  scroller.addEventListener('scroll', () => {
    stuck = nearBottom()
    if (stuck) missed = 0
    renderJump()
    if (scroller.scrollTop < 200) void loadEarlier()
  }, { passive: true })

  /** Groups: who has read our newest message so far (receipts that come later move the ticks on). */
  async function loadGroupReads (): Promise<void> {
    let newest = 0
    for (const [position, item] of messages) if (item.type === 'message' && item.from === me && item.recalled !== true && position > newest) newest = position
    if (newest === 0) return
    try {
      const { read } = await (await connection.client()).groups.receipts(target.id, newest)
      store.groupRead(target.id, Object.fromEntries(read.map((user) => [user, newest])))
    } catch {
      // Ticks stay as they are until the next receipt: nothing else depends on them.
    }
  }

  // ---- wiring ---------------------------------------------------------------------------

  const unsubscribe = [
    store.on('message', acceptMessage),
    store.on('groupEvent', acceptGroupEvent),
    store.on('recall', applyRecall),
    store.on('edit', applyEdit),
    store.on('marks', (which) => { if (which === key) refreshTicks() }),
    store.on('presence', (who) => { if (who === target.id) renderHeader() }),
    store.on('typing', (which) => { if (which === key) renderHeader() }),
    store.on('group', (which) => { if (which === target.id) { renderHeader(); refreshTicks() } }),
    store.on('pending', (which) => { if (which === key) renderPending() }),
    store.on('blocks', (who) => { if (who === target.id) renderBlock() }),
    store.on('online', () => renderHeader())
  ]
  if (!group) {
    const peer = target.id
    connection.watch(peer)
    // Someone never seen has no retained presence to stream: ask once, so the header can say "offline".
    if (!store.presence.has(peer)) {
      void connection.client().then((client) => client.presence(peer)).then(({ status, ts, lastSeen }) => {
        if (!store.presence.has(peer)) store.onPresence(peer, { status, ts, lastSeen })
      }, () => {})
    }
  }
  renderHeader()
  renderBlock()
  renderPending()
  renderEdge()
  void loadLatest()

  return {
    element,
    focus: () => input.focus(),
    dispose () {
      disposed = true
      resized.disconnect()
      panel?.dispose()
      stopTyping()
      clearTimeout(markTimer)
      document.removeEventListener('visibilitychange', onVisibility)
      removeEventListener('online', scheduleMarkRead)
      unsubscribe.forEach((u) => u())
    }
  }
}
