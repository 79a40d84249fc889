import type { Counter } from 'prom-client';

/**
 * Counts of a labelled prom-client counter kept in plain numbers and handed to it at scrape time
 * (from the counter's `collect`): its `inc` with labels validates and hashes them on every call,
 * and a login counts several. `key` names a label set (what `add` is given); the label sets are
 * the counter's own, as bounded as its series.
 */
export class Tally<L extends string> {
  private readonly pending = new Map<string, { labels: Partial<Record<L, string>>; n: number }>();

  constructor(private readonly key: (labels: Partial<Record<L, string>>) => string) {}

  add(labels: Partial<Record<L, string>>): void {
    const key = this.key(labels);
    const entry = this.pending.get(key);
    if (entry) entry.n++;
    else this.pending.set(key, { labels, n: 1 });
  }

  /** Hands the counts to `counter` (call from its `collect`). */
  publish(counter: Counter<L>): void {
    for (const entry of this.pending.values()) {
      if (entry.n === 0) continue;
      counter.inc(entry.labels, entry.n);
      entry.n = 0;
    }
  }
}
