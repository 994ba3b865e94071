// A Map kept to a fixed number of entries, for per-user and per-group caches
// of a store: the least recently set entry goes first. What is evicted is
// only a cache (read again from the store, or a trim run a little early), so
// memory stays bounded however many users or groups the server ever sees.
export class BoundedMap<K, V> extends Map<K, V> {
  constructor (readonly maxEntries: number) {
    super()
  }

  override set (key: K, value: V): this {
    // Re-inserted, so iteration order is the order of the last set.
    super.delete(key)
    super.set(key, value)
    if (this.size > this.maxEntries) super.delete(this.keys().next().value as K)
    return this
  }
}
