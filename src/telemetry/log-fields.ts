/**
 * A prepared line's own fields (see `Logger.prepare`), rendered and joined with what does not
 * change from line to line.
 */

/**
 * The text of a prepared line's fields, between its `head` and its `end`. A line logged again
 * and again (one a statement) mostly repeats the one before but for a field or two (a
 * statement's duration), so it is joined from the texts before the first changed field (with
 * the head) and after the last (with the end), each kept as one string while those fields
 * repeat: three strings each line instead of one per field, and fewer concatenations to collect.
 */
export class PreparedFields {
  private readonly last = new LastFields();
  /** This line's field texts, and the last joined line's. */
  private readonly texts: string[] = [];
  private readonly joined: string[] = [];
  private count = -1;
  /** `head` and `joined[0, prefixCount)`, joined. */
  private prefix = '';
  private prefixCount = 0;
  /** `joined[suffixFrom, count)` and `end`, joined. */
  private suffix = '';
  private suffixFrom = 0;

  constructor(
    private readonly head: string,
    private readonly end: string,
    private readonly renders: (k: string) => boolean,
    private readonly render: (k: string, v: unknown) => string | undefined,
  ) {}

  /** The head, each field's text and the end; undefined when a field is not rendered here (the general path's). */
  line(fields: Record<string, unknown>): string | undefined {
    const texts = this.texts;
    let n = 0;
    for (const k in fields) {
      const text = this.last.text(n, k, fields[k], this.renders, this.render);
      if (text === undefined) return undefined;
      texts[n++] = text;
    }
    return this.join(n);
  }

  private join(n: number): string {
    const { texts, joined } = this;
    // The texts that differ from the last line's: [first, last].
    let first = 0;
    let last = n - 1;
    if (n === this.count) {
      while (first < n && texts[first] === joined[first]) first++;
      while (last >= first && texts[last] === joined[last]) last--;
    } else {
      this.count = n;
      this.prefix = this.head;
      this.prefixCount = 0;
      this.suffix = this.end;
      this.suffixFrom = n;
    }
    for (let i = first; i <= last; i++) joined[i] = texts[i]!;
    // Kept as they are while nothing changed (prefixCount <= suffixFrom holds either way).
    if (first <= last) {
      if (this.prefixCount !== first) {
        let prefix = this.head;
        for (let i = 0; i < first; i++) prefix += texts[i];
        this.prefix = prefix;
        this.prefixCount = first;
      }
      if (this.suffixFrom !== last + 1) {
        let suffix = '';
        for (let i = last + 1; i < n; i++) suffix += texts[i];
        this.suffix = suffix + this.end;
        this.suffixFrom = last + 1;
      }
    }
    let line = this.prefix;
    for (let i = this.prefixCount; i < this.suffixFrom; i++) line += texts[i];
    return line + this.suffix;
  }
}

/**
 * What a prepared line's fields rendered as, by position: a line logged again and again (one a
 * statement) mostly repeats the values of the one before (the statement's text, its command), so
 * their text is kept. Only primitives: an object's content may have changed since.
 */
class LastFields {
  private readonly names: string[] = [];
  private readonly values: unknown[] = [];
  private readonly texts: string[] = [];

  /** `render(k, v)` if `renders(k)`, else undefined; the same text as last time at position `i` when `k` and `v` are. */
  text(i: number, k: string, v: unknown, renders: (k: string) => boolean, render: (k: string, v: unknown) => string | undefined): string | undefined {
    if (this.names[i] === k && this.values[i] === v && (typeof v !== 'object' || v === null)) return this.texts[i];
    if (!renders(k)) return undefined;
    const text = render(k, v);
    if (text !== undefined && i < 64) {
      this.names[i] = k;
      this.values[i] = v;
      this.texts[i] = text;
    }
    return text;
  }
}
