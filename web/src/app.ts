// The signed-in app: connection, store, and the two panes (conversation
// list, chat), routed by the URL fragment (#/chat/<peer>, #/group/<id>) so
// a reload or the back button keeps you where you were. Narrow screens show one pane
// at a time; wide ones show both.
import { h, replace } from './dom.ts'
import { Connection } from './connection.ts'
import { claimDevice, LocalStorageStore } from './device.ts'
import { TokenExpired, USER_ID, USER_ID_RULE, checkToken, demoToken, readClaims, tokenSource, type Session } from './session.ts'
import { ChatStore, groupKey, groupOfKey } from './store.ts'
import { groupTarget, peerTarget } from './chat-target.ts'
import { bannerView } from './views/banner.ts'
import { chatView, type ChatView } from './views/chat-view.ts'
import { conversationListView } from './views/conversation-list.ts'

export interface RunningApp {
  stop (): Promise<void>
}

export interface AppOptions {
  root: HTMLElement
  session: Session
  /** The server's MAX_PAYLOAD_BYTES. */
  maxPayloadBytes: number
  /** Called when the session ends (sign out, or a pasted token expired). */
  signedOut: (reason?: string) => void
}

/** Checks the session's token before anything is shown; throws a message for the sign-in form. */
async function userOf (session: Session): Promise<string> {
  if (session.kind === 'demo') {
    if (!USER_ID.test(session.user)) throw new Error(USER_ID_RULE)
    await demoToken(session.user)
    return session.user
  }
  const claims = readClaims(session.token)
  if (claims === undefined) throw new Error('This is not a JWT with a "sub" (user id).')
  if (claims.expiresAt !== undefined && claims.expiresAt <= Date.now()) throw new TokenExpired()
  await checkToken(session.token)
  return claims.sub
}

export async function startApp ({ root, session, maxPayloadBytes, signedOut }: AppOptions): Promise<RunningApp> {
  const user = await userOf(session)
  const device = await claimDevice(user)
  const store = new ChatStore(user)
  const banner = bannerView()
  let ended = false

  const end = (reason?: string): void => {
    if (ended) return
    ended = true
    void stop().then(() => signedOut(reason))
  }

  const connection = new Connection({
    deviceId: device.deviceId,
    getToken: tokenSource(session, () => end(new TokenExpired().message)),
    storage: new LocalStorageStore(`inboxd.${user}.${device.deviceId}.`)
  }, {
    message: (message) => store.onMessage(message),
    receipt: (receipt) => store.onReceipt(receipt),
    recall: (recall) => store.onRecall(recall),
    edit: (edit) => store.onEdit(edit),
    groupEvent: (event) => store.onGroupEvent(event),
    typing: (typing) => store.onTyping(typing),
    presence: (who, state) => store.onPresence(who, state),
    state: (state) => {
      // Logged out elsewhere ("everywhere" on another device) or by an administrator: final.
      if (state === 'revoked') end('You were signed out: this session was logged out from another device or by an administrator.')
      else banner.show(state)
      store.setOnline(state === 'online')
    },
    connected: () => { void loadConversations() },
    error: (error) => console.warn('inboxd:', error.message)
  })

  async function loadConversations (): Promise<void> {
    store.beginLoad()
    try {
      const client = await connection.client()
      const [conversations, groups, blocks] = await Promise.all([client.conversations(), client.groups.list(), client.blocks.list()])
      store.groupsLoaded(groups)
      for (const { user: blocked } of blocks) store.setBlocked(blocked, true)
      store.loaded(conversations)
    } catch (error) {
      store.loaded([])
      banner.notify(`Could not load conversations: ${(error as Error).message}`)
    }
  }

  // ---- panes and routing ---------------------------------------------------------

  const chatSlot = h('div', { class: 'chat-slot' })
  let chat: ChatView | undefined
  /** The open conversation's key: a peer, or `g:<groupId>`. */
  let openKey: string | undefined
  let routed = false

  /** The conversation the URL names, if it names a valid one. */
  function keyOfHash (): string | undefined {
    const match = /^#\/(chat|group)\/(.+)$/.exec(location.hash)
    if (match === null) return undefined
    const id = decodeURIComponent(match[2]!)
    if (!USER_ID.test(id)) return undefined
    return match[1] === 'group' ? groupKey(id) : id
  }

  function route (): void {
    const key = keyOfHash()
    if (routed && key === openKey) return
    routed = true
    chat?.dispose()
    chat = undefined
    openKey = key
    root.classList.toggle('in-chat', key !== undefined)
    if (key === undefined) {
      replace(chatSlot, h('div', { class: 'pane placeholder' }, h('p', {}, 'Select a chat, or start one.')))
    } else {
      store.conversation(key)
      const group = groupOfKey(key)
      const target = group === undefined ? peerTarget(connection, user, key) : groupTarget(connection, group)
      chat = chatView({ store, connection, target, maxPayloadBytes, back: () => { location.hash = '#/' }, notify: banner.notify })
      replace(chatSlot, chat.element)
      if (matchMedia('(min-width: 760px)').matches) chat.focus()
    }
    list.element.querySelectorAll('.conversation').forEach((item) => {
      item.classList.toggle('selected', (item as HTMLElement).dataset.key === openKey)
    })
  }

  const list = conversationListView({
    store,
    deviceId: device.deviceId,
    selected: () => openKey,
    open: (key) => {
      const group = groupOfKey(key)
      location.hash = group === undefined ? `#/chat/${encodeURIComponent(key)}` : `#/group/${encodeURIComponent(group)}`
    },
    async createGroup (name, members) {
      const created = await (await connection.client()).groups.create(name, members)
      store.groupsLoaded([created])
      return groupKey(created.id)
    },
    // Signing out also logs the token out on the server (best effort: offline, it just ends here).
    signOut: () => { void connection.client().then((client) => client.logout()).catch(() => {}).finally(() => end()) }
  })

  const updateTitle = (): void => {
    const unread = store.totalUnread
    document.title = unread > 0 ? `(${unread}) inboxd chat` : 'inboxd chat'
  }
  store.on('conversations', updateTitle)
  // Presence dots for everyone in the list, including conversations that a new message just started.
  store.on('conversations', () => { for (const conversation of store.conversations.values()) if (conversation.peer !== undefined) connection.watch(conversation.peer) })

  try {
    await connection.start()
  } catch (error) {
    list.dispose()
    device.release()
    throw error
  }
  // A pasted token that expired while connecting: sign-in is already showing.
  if (ended) throw new TokenExpired()
  replace(root, banner.element, h('div', { class: 'layout' }, list.element, chatSlot))
  root.classList.add('signed-in')
  addEventListener('hashchange', route)
  route()
  banner.show(connection.state)

  async function stop (): Promise<void> {
    removeEventListener('hashchange', route)
    chat?.dispose()
    list.dispose()
    await connection.stop()
    device.release()
    root.classList.remove('signed-in', 'in-chat')
    document.title = 'inboxd chat'
  }

  return { stop }
}
