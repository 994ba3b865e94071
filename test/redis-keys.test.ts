// The key scheme: one owner's keys share one slot, and every slot has a tag.
import t from 'tap'
import { bySlot, groupTag, ownerKey, slotOf, SLOTS, tagOfSlot, userTag } from '../storage/redis-keys.ts'

t.test("an owner's keys of every family share one slot", async (t) => {
  const slot = slotOf(ownerKey('h', userTag('alice'), 'seq'))
  t.equal(slotOf(ownerKey('h', userTag('alice'), 'ev')), slot)
  t.equal(slotOf(ownerKey('presence', userTag('alice'), 'p')), slot)
  t.equal(slotOf(ownerKey('keys', userTag('alice'))), slot)
  t.equal(slotOf(ownerKey('mlskp', userTag('alice'), 'q')), slot, 'MLS KeyPackages too')
  t.not(slotOf(ownerKey('g', groupTag('alice'), 'seq')), slot, 'a group named like a user is another owner')
})

t.test('every slot has a tag that hashes to it', async (t) => {
  for (const slot of [0, 1, 777, 8000, SLOTS - 1]) t.equal(slotOf(`x:${tagOfSlot(slot)}:y`), slot)
  const all = new Set(Array.from({ length: SLOTS }, (_, slot) => slotOf(tagOfSlot(slot))))
  t.equal(all.size, SLOTS)
})

t.test('bySlot groups items by their key slot, in first-seen order', async (t) => {
  const users = ['a', 'b', 'a', 'c', 'b']
  const groups = bySlot(users, (user) => ownerKey('h', userTag(user), 'seq'))
  t.same(groups.map((group) => group[0]), ['a', 'b', 'c'])
  t.same(groups.flat().sort(), [...users].sort())
})
