import type { SplitStatement } from '../sql/text.js';

/**
 * A session's last simple Query shape, so that the same statement sent again and again with
 * other numbers in it (pgbench, an application's queries built with literals) is not lexed and
 * redacted each time: a query that differs from the shape only in its digit runs is reported with
 * the shape's redacted text.
 *
 * Why that holds. A *digit run* here is a maximal run of ASCII digits with neither neighbour a
 * letter, digit, `_`, `$`, `.` or non-ASCII character. The lexer (src/sql/text.ts) reads every
 * digit alike, except after `0x`/`0o`/`0b` — a letter neighbour, excluded — so replacing digit runs
 * by others leaves every token boundary where it was: a run is a whole number (redacted to `?`),
 * inside a literal or comment (hidden) or inside a quoted identifier (kept as written). Only the
 * last shows in the redacted text, and then two queries whose runs all differ give different
 * text. So the shape is trusted only after a second query of it, each of its runs different, was
 * lexed in full and gave the same redacted text; until then every query is lexed as before.
 */
class QueryShape<Made> {
  /** The shape's text between its digit runs (one more than the runs; the first and last may be empty). */
  private segments: string[] = [];
  private runs: string[] = [];
  private scs = true;
  redacted = '';
  /** What `QueryShapes.known` made of `redacted`, once. */
  made: Made | undefined;
  /** Where the statement's text starts, and the characters after it (whitespace and `;` only). */
  private from = 0;
  private suffix = 0;
  private trusted = false;
  /** What the last `match` found for `learn`: a query of the shape to check it with, or one to keep it for. */
  seen: 'other' | 'check' | 'keep' = 'other';

  /** Whether `sql` has this shape, trusted (then its statement is `statement(sql)`). */
  match(sql: string, scs: boolean): boolean {
    this.seen = 'other';
    const { segments, runs } = this;
    if (segments.length === 0 || scs !== this.scs || !has(sql, 0, segments[0]!)) return false;
    let pos = segments[0]!.length;
    let allDiffer = true;
    for (let k = 1; k < segments.length; k++) {
      const start = pos;
      while (pos < sql.length && isDigit(sql.charCodeAt(pos))) pos++;
      if (pos === start) return false;
      const run = runs[k - 1]!;
      if (!this.trusted && pos - start === run.length && has(sql, start, run)) allDiffer = false;
      const segment = segments[k]!;
      if (!has(sql, pos, segment)) return false;
      pos += segment.length;
    }
    if (pos !== sql.length) return false;
    if (this.trusted) return true;
    this.seen = allDiffer ? 'check' : 'keep';
    return false;
  }

  /** The one statement of `sql`, a query of this shape, and its redaction. */
  statement(sql: string): SplitStatement {
    return { text: sql.slice(this.from, sql.length - this.suffix), redacted: this.redacted };
  }

  /** `sql` was split (and redacted) in full: it checks the shape, or becomes the shape. */
  learn(sql: string, scs: boolean, pieces: readonly SplitStatement[]): void {
    const seen = this.seen;
    this.seen = 'other';
    if (seen === 'keep') return;
    const one = pieces.length === 1 ? pieces[0]! : undefined;
    if (seen === 'check' && one && one.redacted === this.redacted && one.text === sql.slice(this.from, sql.length - this.suffix)) {
      this.trusted = true;
      return;
    }
    this.segments = [];
    this.runs = [];
    this.trusted = false;
    this.made = undefined;
    if (!one || one.redacted === undefined) return;
    const from = sql.indexOf(one.text);
    const to = from + one.text.length;
    if (!onlySeparators(sql, 0, from) || !onlySeparators(sql, to, sql.length)) return;
    this.scs = scs;
    this.redacted = one.redacted;
    this.from = from;
    this.suffix = sql.length - to;
    let kept = 0;
    for (let i = 0; i < sql.length; ) {
      if (!isDigit(sql.charCodeAt(i))) {
        i++;
        continue;
      }
      const start = i;
      while (i < sql.length && isDigit(sql.charCodeAt(i))) i++;
      if ((start > 0 && joins(sql.charCodeAt(start - 1))) || (i < sql.length && joins(sql.charCodeAt(i)))) continue;
      this.segments.push(sql.slice(kept, start));
      this.runs.push(sql.slice(start, i));
      kept = i;
    }
    this.segments.push(sql.slice(kept));
  }
}

/** Shapes a session keeps: pgbench's TPC-B-like script, say, sends five in turn. */
const SHAPES = 8;
/** Longer queries are lexed each time: what a session keeps stays small. */
const MAX_SHAPE_LENGTH = 1024;

/**
 * A session's recent Query shapes (see QueryShape). `Made` is what `known` gives for a query of a
 * trusted shape, made once per shape: the same for every query of it.
 */
export class QueryShapes<Made = unknown> {
  private readonly shapes: QueryShape<Made>[] = [];
  private next = 0;
  /** The shape the last `find` found a query of to check or to keep, for the `learn` after it. */
  private candidate: QueryShape<Made> | undefined;

  /**
   * The statements of `sql` split and redacted, as `split()` gives them: by a shape's redacted
   * text when `sql` has a trusted shape, else by `split()`, which checks or makes a shape.
   */
  statements(sql: string, scs: boolean, split: () => SplitStatement[]): SplitStatement[] {
    const shape = this.find(sql, scs);
    if (shape) return [shape.statement(sql)];
    const pieces = split();
    this.learn(sql, scs, pieces);
    return pieces;
  }

  /**
   * For a query of a trusted shape, `make(redacted)` of the shape's redacted text (the query's one
   * statement redacted), made once per shape and given again for each query of it. Otherwise
   * undefined: then `learn` is to be told the query's split, as `statements` does.
   */
  known(sql: string, scs: boolean, make: (redacted: string) => Made): Made | undefined {
    const shape = this.find(sql, scs);
    if (!shape) return undefined;
    return (shape.made ??= make(shape.redacted));
  }

  /** `sql` (which `known` did not know) was split and redacted in full: it checks a shape or makes one. */
  learn(sql: string, scs: boolean, pieces: readonly SplitStatement[]): void {
    let candidate = this.candidate;
    this.candidate = undefined;
    if (sql.length > MAX_SHAPE_LENGTH) return;
    if (!candidate) {
      if (this.shapes.length < SHAPES) this.shapes.push((candidate = new QueryShape<Made>()));
      else candidate = this.shapes[this.next]!;
      this.next = (this.next + 1) % SHAPES;
    }
    candidate.learn(sql, scs, pieces);
  }

  /** The trusted shape `sql` has; else none, and the shape it checks or is kept for is the candidate. */
  private find(sql: string, scs: boolean): QueryShape<Made> | undefined {
    this.candidate = undefined;
    if (sql.length > MAX_SHAPE_LENGTH) return undefined;
    for (let i = 0; i < this.shapes.length; i++) {
      const shape = this.shapes[i]!;
      if (shape.match(sql, scs)) return shape;
      if (shape.seen !== 'other') {
        this.candidate = shape;
        return undefined;
      }
    }
    return undefined;
  }
}

/**
 * `sql.startsWith(part, at)`: a slice compared with `===` is several times faster in V8 (Node 20)
 * than `startsWith` or a loop over the characters, once the text is a few dozen characters.
 */
function has(sql: string, at: number, part: string): boolean {
  return sql.length - at >= part.length && sql.slice(at, at + part.length) === part;
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

/** A neighbour that could make a digit run part of a word, a parameter, a decimal or a prefixed number. */
function joins(c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95 || c === 36 || c === 46 || c >= 0x80;
}

/** Whitespace and `;` only: what the split drops around a query's one statement. */
function onlySeparators(sql: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = sql.charCodeAt(i);
    if (c !== 59 && c !== 32 && (c < 9 || c > 13)) return false;
  }
  return true;
}
