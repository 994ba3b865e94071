// A group's members and settings, opened from the chat header: the member
// list with roles, and what your role allows (docs/protocol.md, Groups):
// admins and the owner rename and add members, and remove members (an admin
// cannot remove the owner or another admin); the owner changes roles (making
// someone else the owner hands the group over); anyone leaves (the owner
// only after handing over, unless they are the last member). The server
// checks every rule again; its refusal is shown as it says it.
import { h, replace } from '../dom.ts'
import type { Connection } from '../connection.ts'
import { USER_ID, USER_ID_RULE } from '../session.ts'
import type { ChatStore } from '../store.ts'
import type { Role } from '../../../client-sdk/src/index.ts'

export interface GroupPanelOptions {
  store: ChatStore
  connection: Connection
  group: string
  notify: (text: string) => void
  close: () => void
}

export interface GroupPanel {
  element: HTMLElement
  dispose (): void
}

const ROLES: Role[] = ['member', 'admin', 'owner']

export function groupPanel ({ store, connection, group, notify, close }: GroupPanelOptions): GroupPanel {
  const me = store.me
  const problem = h('p', { class: 'panel-error', hidden: true, attrs: { role: 'alert' } })
  const body = h('div', { class: 'panel-body' })
  const element = h('section', { class: 'group-panel', attrs: { 'aria-label': 'Group members and settings' } }, problem, body)
  /** A member whose removal or handover is waiting for "are you sure". */
  let confirming: { user: string, action: 'remove' | 'owner' } | 'leave' | undefined

  const info = () => store.groups.get(group)
  const roleOf = (user: string): Role => info()?.roles.get(user) ?? 'member'

  function fail (error: unknown): void {
    problem.textContent = (error as Error).message
    problem.hidden = false
  }

  /** Runs a change; the group events it causes redraw the panel (the answer is applied at once too). */
  async function change (action: () => Promise<unknown>): Promise<void> {
    problem.hidden = true
    confirming = undefined
    try {
      const result = await action()
      if (result !== null && typeof result === 'object' && 'members' in result) store.groupsLoaded([result as Parameters<ChatStore['groupsLoaded']>[0][number]])
      render()
    } catch (error) {
      fail(error)
      render()
    }
  }

  const client = () => connection.client()

  function memberRow (user: string, myRole: Role): HTMLElement {
    const role = roleOf(user)
    const mayRemove = user !== me && (myRole === 'owner' || (myRole === 'admin' && role === 'member'))
    const controls: HTMLElement[] = []
    if (myRole === 'owner' && user !== me) {
      const select = h('select', {
        attrs: { 'aria-label': `Role of ${user}` },
        on: {
          change: () => {
            const chosen = select.value as Role
            if (chosen === 'owner') {
              confirming = { user, action: 'owner' }
              render()
            } else void change(async () => (await client()).groups.setRole(group, user, chosen))
          }
        }
      }, ...ROLES.map((option) => h('option', { value: option, selected: option === role }, option)))
      controls.push(select)
    } else controls.push(h('span', { class: `role ${role}` }, role))
    if (mayRemove) {
      controls.push(h('button', { type: 'button', class: 'remove', on: { click: () => { confirming = { user, action: 'remove' }; render() } } }, 'Remove'))
    }
    const row = h('li', { class: 'member', dataset: { user, role } }, h('span', { class: 'name' }, user === me ? `${user} (you)` : user), ...controls)
    if (typeof confirming === 'object' && confirming.user === user) {
      const handOver = confirming.action === 'owner'
      row.append(h('div', { class: 'confirm' },
        h('span', {}, handOver ? `Make ${user} the owner? You become an admin.` : `Remove ${user} from the group?`),
        h('button', {
          type: 'button', class: 'danger confirm-action',
          on: {
            click: () => {
              void change(async () => handOver ? (await client()).groups.setRole(group, user, 'owner') : (await client()).groups.removeMember(group, user))
            }
          }
        }, handOver ? 'Hand over' : 'Remove'),
        h('button', { type: 'button', on: { click: () => { confirming = undefined; render() } } }, 'Cancel')))
    }
    return row
  }

  function render (): void {
    const current = info()
    if (current === undefined || current.left) {
      replace(body, h('p', { class: 'muted' }, 'You are no longer a member of this group.'))
      return
    }
    const myRole = roleOf(me)
    const manages = myRole === 'owner' || myRole === 'admin'
    const order = (user: string): number => ROLES.length - ROLES.indexOf(roleOf(user))
    const members = [...current.members].sort((a, b) => order(a) - order(b) || a.localeCompare(b))

    const name = h('input', { type: 'text', name: 'group-rename', value: current.name, maxLength: 100, required: true, attrs: { 'aria-label': 'Group name' } })
    const rename = h('form', {
      class: 'rename',
      on: {
        submit: (event) => {
          event.preventDefault()
          const wanted = name.value.trim()
          if (wanted !== '' && wanted !== current.name) void change(async () => (await client()).groups.update(group, { name: wanted }))
        }
      }
    }, name, h('button', { type: 'submit' }, 'Rename'))

    const adding = h('input', { type: 'text', name: 'group-add', autocapitalize: 'none', spellcheck: false, placeholder: 'Add: dave, erin', attrs: { 'aria-label': 'Add members' } })
    const add = h('form', {
      class: 'add-members',
      on: {
        submit: (event) => {
          event.preventDefault()
          const users = [...new Set(adding.value.split(/[\s,]+/).filter((user) => user !== ''))]
          const invalid = users.find((user) => !USER_ID.test(user))
          if (invalid !== undefined) return fail(new Error(`"${invalid}" is not a user name: ${USER_ID_RULE}`))
          if (users.length > 0) void change(async () => (await client()).groups.addMembers(group, users))
        }
      }
    }, adding, h('button', { type: 'submit' }, 'Add'))

    const leave = confirming === 'leave'
      ? h('div', { class: 'confirm' },
        h('span', {}, 'Leave this group? You will not see what is sent after.'),
        h('button', { type: 'button', class: 'danger confirm-action', on: { click: () => { void change(async () => (await client()).groups.leave(group)) } } }, 'Leave'),
        h('button', { type: 'button', on: { click: () => { confirming = undefined; render() } } }, 'Cancel'))
      : h('button', { type: 'button', class: 'leave danger', on: { click: () => { confirming = 'leave'; render() } } }, 'Leave group')

    replace(body,
      h('div', { class: 'panel-head' },
        h('h2', {}, `${members.length} member${members.length === 1 ? '' : 's'}`),
        h('button', { type: 'button', class: 'link', on: { click: close } }, 'Close')),
      manages && rename,
      h('ul', { class: 'members' }, ...members.map((user) => memberRow(user, myRole))),
      manages && add,
      leave)
  }

  const unsubscribe = store.on('group', (which) => { if (which === group) render() })
  render()
  // The list as the server has it now (roles of members added since the page loaded, say).
  void client().then((c) => c.groups.get(group)).then((fresh) => { store.groupsLoaded([fresh]) }, (error: Error) => {
    notify(`Could not load the members: ${error.message}`)
  })
  return { element, dispose: unsubscribe }
}
