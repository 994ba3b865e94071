// The bound on the stores' per-user and per-group caches (history/bounded-map.ts).
import t from 'tap'
import { BoundedMap } from '../history/bounded-map.ts'

t.test('holds at most maxEntries, dropping the least recently set', async (t) => {
  const map = new BoundedMap<string, number>(3)
  for (const [i, key] of ['a', 'b', 'c'].entries()) map.set(key, i)
  map.set('a', 10) // set again: now the most recent
  map.set('d', 3)
  t.equal(map.size, 3)
  t.same([...map.keys()], ['c', 'a', 'd'], 'b, the least recently set, went')
  for (let i = 0; i < 10_000; i++) map.set(`k${i}`, i)
  t.equal(map.size, 3, 'stays bounded however many keys pass through')
  t.same([...map.entries()], [['k9997', 9997], ['k9998', 9998], ['k9999', 9999]])
})
