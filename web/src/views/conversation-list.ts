// The conversation list: presence dot, peer, last message, time, unread badge.
// Small (the server pages at 100), so it is simply redrawn on each change.
import { h, replace, shortTime } from '../dom.ts'
import { USER_ID, USER_ID_PATTERN } from '../session.ts'
import { bodyText, type ChatStore } from '../store.ts'
import { avatar, presenceDot } from './presence.ts'

export interface ConversationListOptions {
  store: ChatStore
  deviceId: string
  /** The conversation open beside the list (wide screens), highlighted. */
  selected: () => string | undefined
  open: (peer: string) => void
  signOut: () => void
}

export function conversationListView ({ store, deviceId, selected, open, signOut }: ConversationListOptions): { element: HTMLElement, dispose: () => void } {
  const list = h('ul', { class: 'conversations', attrs: { 'aria-label': 'Conversations' } })

  const peerInput = h('input', {
    type: 'text', name: 'peer', required: true, autocapitalize: 'none', spellcheck: false, placeholder: 'Start a chat with…',
    pattern: USER_ID_PATTERN, maxLength: 128, attrs: { 'aria-label': 'User to chat with' }
  })
  const newChat = h('form', {
    class: 'new-chat',
    on: {
      submit: (event) => {
        event.preventDefault()
        const peer = peerInput.value.trim()
        if (!USER_ID.test(peer)) return
        peerInput.value = ''
        open(peer)
      }
    }
  }, peerInput, h('button', { type: 'submit' }, 'Chat'))

  function item (peer: string): HTMLElement {
    const conversation = store.conversations.get(peer)!
    const last = conversation.lastMessage
    const typing = store.isTyping(peer)
    const preview = typing
      ? h('span', { class: 'typing' }, 'typing…')
      : last === null
        ? h('span', { class: 'muted' }, 'No messages yet')
        : h('span', { class: last.recalled === true ? 'muted recalled' : '' }, last.from === store.me ? 'You: ' : '', bodyText(last))
    return h('li', {},
      h('button', {
        type: 'button',
        class: `conversation${selected() === peer ? ' selected' : ''}${conversation.unread > 0 ? ' unread' : ''}`,
        dataset: { peer },
        on: { click: () => open(peer) }
      },
      avatar(peer, presenceDot(store, peer)),
      h('span', { class: 'summary' },
        h('span', { class: 'line' },
          h('span', { class: 'peer' }, peer),
          last !== null && h('time', { class: 'time', dateTime: new Date(last.ts).toISOString() }, shortTime(last.ts))),
        h('span', { class: 'line' },
          h('span', { class: 'preview' }, preview),
          conversation.unread > 0 && h('span', { class: 'badge', attrs: { 'aria-label': `${conversation.unread} unread` } }, String(conversation.unread))))))
  }

  function render (): void {
    const conversations = store.sortedConversations()
    replace(list, ...conversations.map((c) => item(c.peer)))
    if (conversations.length === 0) list.append(h('li', { class: 'empty' }, 'No conversations yet. Start one above.'))
  }

  const element = h('section', { class: 'pane list-pane', attrs: { 'aria-label': 'Chats' } },
    h('header', { class: 'bar' },
      h('h1', {}, 'Chats'),
      h('span', { class: 'me', attrs: { title: `Signed in as ${store.me} (device ${deviceId})` } }, store.me),
      h('button', { type: 'button', class: 'link', on: { click: signOut } }, 'Sign out')),
    newChat,
    list)

  render()
  const unsubscribe = [
    store.on('conversations', render),
    store.on('presence', render),
    store.on('typing', render)
  ]
  return { element, dispose: () => unsubscribe.forEach((u) => u()) }
}
