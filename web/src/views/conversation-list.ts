// The conversation list: presence dot (1:1), peer or group name, last
// message, time, unread badge; and forms to start a chat or a group.
// Small (the server pages at 100), so it is simply redrawn on each change.
import { h, replace, shortTime } from '../dom.ts'
import { USER_ID, USER_ID_PATTERN, USER_ID_RULE, explainUserId } from '../session.ts'
import { bodyText, groupOfKey, type ChatStore } from '../store.ts'
import { avatar, presenceDot } from './presence.ts'

export interface ConversationListOptions {
  store: ChatStore
  deviceId: string
  /** The conversation open beside the list (wide screens), highlighted. */
  selected: () => string | undefined
  /** Opens a conversation by key (a peer, or `g:<groupId>`). */
  open: (key: string) => void
  /** Creates a group with these other members; resolves with its key. */
  createGroup: (name: string, members: string[]) => Promise<string>
  signOut: () => void
}

export function conversationListView ({ store, deviceId, selected, open, createGroup, signOut }: ConversationListOptions): { element: HTMLElement, dispose: () => void } {
  const list = h('ul', { class: 'conversations', attrs: { 'aria-label': 'Conversations' } })

  const peerInput = h('input', {
    type: 'text', name: 'peer', required: true, autocapitalize: 'none', spellcheck: false, placeholder: 'Start a chat with…',
    pattern: USER_ID_PATTERN, maxLength: 128, attrs: { 'aria-label': 'User to chat with' }
  })
  explainUserId(peerInput)
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

  // A new group: a name and the others, comma- or space-separated.
  const groupName = h('input', { type: 'text', name: 'group-name', required: true, maxLength: 100, placeholder: 'Group name', attrs: { 'aria-label': 'Group name' } })
  const groupMembers = h('input', { type: 'text', name: 'group-members', autocapitalize: 'none', spellcheck: false, placeholder: 'Members: bob, carol', attrs: { 'aria-label': 'Members' } })
  const groupProblem = h('p', { class: 'error', hidden: true, attrs: { role: 'alert' } })
  const newGroup = h('form', {
    class: 'new-group',
    on: {
      submit: (event) => {
        event.preventDefault()
        const name = groupName.value.trim()
        const members = groupMembers.value.split(/[\s,]+/).filter((user) => user !== '' && user !== store.me)
        const invalid = members.find((user) => !USER_ID.test(user))
        groupProblem.hidden = invalid === undefined && name !== ''
        if (name === '') groupProblem.textContent = 'A group needs a name.'
        else if (invalid !== undefined) groupProblem.textContent = `"${invalid}" is not a user name: ${USER_ID_RULE}`
        if (!groupProblem.hidden) return
        createGroup(name, [...new Set(members)]).then((key) => {
          groupName.value = ''
          groupMembers.value = ''
          groupBox.open = false
          open(key)
        }, (error: Error) => {
          groupProblem.textContent = `Could not create the group: ${error.message}`
          groupProblem.hidden = false
        })
      }
    }
  }, groupName, groupMembers, h('button', { type: 'submit' }, 'New group'), groupProblem)

  const groupBox = h('details', { class: 'new-group-box' }, h('summary', {}, 'New group'), newGroup)

  function item (key: string): HTMLElement {
    const conversation = store.conversations.get(key)!
    const group = groupOfKey(key)
    const title = store.title(key)
    const last = conversation.lastMessage
    const typists = store.typingIn(key)
    const sender = last === null ? '' : last.from === store.me ? 'You: ' : group !== undefined ? `${last.from}: ` : ''
    const preview = typists.length > 0
      ? h('span', { class: 'typing' }, group === undefined ? 'typing…' : `${typists.join(', ')} typing…`)
      : last === null
        ? h('span', { class: 'muted' }, 'No messages yet')
        : h('span', { class: last.recalled === true ? 'muted recalled' : '' }, sender, bodyText(last))
    return h('li', {},
      h('button', {
        type: 'button',
        class: `conversation${group !== undefined ? ' group' : ''}${selected() === key ? ' selected' : ''}${conversation.unread > 0 ? ' unread' : ''}`,
        dataset: group === undefined ? { peer: key, key } : { group, key },
        on: { click: () => open(key) }
      },
      avatar(title, group === undefined ? presenceDot(store, key) : h('span', { class: 'dot group', attrs: { 'aria-hidden': 'true' } })),
      h('span', { class: 'summary' },
        h('span', { class: 'line' },
          h('span', { class: 'peer' }, title),
          last !== null && h('time', { class: 'time', dateTime: new Date(last.ts).toISOString() }, shortTime(last.ts))),
        h('span', { class: 'line' },
          h('span', { class: 'preview' }, preview),
          conversation.unread > 0 && h('span', { class: 'badge', attrs: { 'aria-label': `${conversation.unread} unread` } }, String(conversation.unread))))))
  }

  function render (): void {
    const conversations = store.sortedConversations()
    replace(list, ...conversations.map((c) => item(c.key)))
    if (conversations.length === 0) list.append(h('li', { class: 'empty' }, 'No conversations yet. Start one above.'))
  }

  const element = h('section', { class: 'pane list-pane', attrs: { 'aria-label': 'Chats' } },
    h('header', { class: 'bar' },
      h('h1', {}, 'Chats'),
      h('span', { class: 'me', attrs: { title: `Signed in as ${store.me} (device ${deviceId})` } }, store.me),
      h('button', { type: 'button', class: 'link', on: { click: signOut } }, 'Sign out')),
    newChat,
    groupBox,
    list)

  render()
  const unsubscribe = [
    store.on('conversations', render),
    store.on('presence', render),
    store.on('online', render),
    store.on('typing', render),
    store.on('group', render)
  ]
  return { element, dispose: () => unsubscribe.forEach((u) => u()) }
}
