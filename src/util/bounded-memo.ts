/**
 * Results kept by key, at most `max` of them: when full, the oldest entry goes. For what is
 * computed again and again from the same few inputs (a configuration's TLS contexts, a backend's
 * certificate, a command tag) but whose keys could, in a hostile or odd case, be unbounded.
 */
export class BoundedMemo<K, V> {
  private readonly entries = new Map<K, V>();

  constructor(private readonly max: number) {}

  /** The value kept for `key`, or `make(key)` kept from now on. */
  get(key: K, make: (key: K) => V): V {
    let value = this.entries.get(key);
    if (value === undefined && !this.entries.has(key)) {
      value = make(key);
      if (this.entries.size >= this.max) this.entries.delete(this.entries.keys().next().value!);
      this.entries.set(key, value);
    }
    return value as V;
  }

  get size(): number {
    return this.entries.size;
  }

  clear(): void {
    this.entries.clear();
  }
}
