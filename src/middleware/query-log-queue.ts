/**
 * The requests a session has in flight, oldest first. Most sessions have one at a time: emptied,
 * the queue keeps its array, so the next request is stored without allocating a new one (an
 * array emptied with `length = 0` gives up its storage, and the next push makes another).
 * An array a long pipeline grew is not kept once emptied, and one long drained from the front
 * is compacted, so what a session holds stays in proportion to what is in flight.
 */
export class RequestQueue<T> {
  private items: (T | undefined)[] = [];
  private head = 0;
  private tail = 0;

  get size(): number {
    return this.tail - this.head;
  }

  /** The oldest request, if any. */
  peek(): T | undefined {
    return this.head < this.tail ? this.items[this.head] : undefined;
  }

  /** The `n`th request from the oldest (0: the oldest). */
  at(n: number): T | undefined {
    return n >= 0 && this.head + n < this.tail ? this.items[this.head + n] : undefined;
  }

  push(item: T): void {
    if (this.tail === this.items.length) this.items.push(item);
    else this.items[this.tail] = item;
    this.tail++;
  }

  /** Drops the oldest request (none when empty). */
  shift(): void {
    if (this.head === this.tail) return;
    this.items[this.head++] = undefined;
    if (this.head === this.tail) this.clear();
    else if (this.head >= COMPACT_AFTER && this.head * 2 >= this.tail) {
      this.items = this.items.slice(this.head, this.tail);
      this.tail -= this.head;
      this.head = 0;
    }
  }

  clear(): void {
    if (this.items.length > KEPT_LENGTH) this.items = [];
    else for (let i = this.head; i < this.tail; i++) this.items[i] = undefined;
    this.head = 0;
    this.tail = 0;
  }
}

/** Longest array kept when the queue empties. */
const KEPT_LENGTH = 16;
/** Requests drained from the front before the array is compacted (once at least half of it). */
const COMPACT_AFTER = 1024;
