/**
 * Where a person's editor would show the mistake in a config, backends or revocation file: the
 * line and column of the character to fix (a trailing comma, the opening quote of a string that
 * never closes), never the file's text, which may hold a password.
 */

/** The 1-based line and column of `offset` in `text` (a byte-order mark is not a column). */
export function lineColumn(text: string, offset: number): { line: number; col: number } {
  let line = 1;
  let start = 0;
  for (let i = text.indexOf('\n'); i >= 0 && i < offset; i = text.indexOf('\n', i + 1)) {
    line++;
    start = i + 1;
  }
  const bom = start === 0 && text.charCodeAt(0) === 0xfeff ? 1 : 0;
  return { line, col: Math.max(1, offset - start + 1 - bom) };
}

function at(text: string, offset: number): string {
  const { line, col } = lineColumn(text, offset);
  return `at line ${line}, column ${col}`;
}

/**
 * A `.json` file must be JSON: YAML (which reads JSON too) would accept a trailing comma or a
 * comment that every other JSON tool rejects. Returns the problem with its position, or undefined
 * when the text is JSON or the file is not named `.json`.
 */
export function jsonSyntaxProblem(path: string, text: string): string | undefined {
  if (!/\.json$/i.test(path)) return undefined;
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  try {
    JSON.parse(body);
    return undefined;
  } catch {
    const fault = locateJsonFault(text);
    return fault ? `${path}: invalid JSON ${at(text, fault.offset)}: ${fault.what}` : `${path}: invalid JSON`;
  }
}

class JsonFault {
  constructor(
    readonly offset: number,
    readonly what: string,
  ) {}
}

const WHITESPACE = new Set([' ', '\t', '\n', '\r']);
/** A character that starts a JSON value: after another value it means a missing comma. */
const VALUE_START = /["{[\-0-9tfn]/;
const NUMBER = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/;

/**
 * Finds the first mistake in text that JSON.parse refused. V8 reports where it stopped reading
 * (the `}` after a trailing comma, often on the next line) and sometimes no position at all; this
 * scanner names the character to fix instead.
 */
export function locateJsonFault(text: string): JsonFault | undefined {
  try {
    new JsonScanner(text).document();
    return undefined;
  } catch (err) {
    if (err instanceof JsonFault) return err;
    throw err;
  }
}

/** A JSON reader that only checks: it throws a {@link JsonFault} at the first mistake. */
class JsonScanner {
  private i: number;

  constructor(private readonly text: string) {
    this.i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  }

  document(): void {
    this.skip();
    if (this.atEnd) this.fail(this.i, 'the file is empty');
    this.value();
    this.skip();
    if (!this.atEnd) this.fail(this.i, 'text after the end of the JSON value');
  }

  private get atEnd(): boolean {
    return this.i >= this.text.length;
  }

  /** A method, not a getter: TypeScript would take a getter's value as fixed between calls. */
  private peek(): string | undefined {
    return this.text[this.i];
  }

  private fail(offset: number, what: string): never {
    throw new JsonFault(offset, what);
  }

  private skip(): void {
    while (!this.atEnd && WHITESPACE.has(this.peek()!)) this.i++;
  }

  /** `afterValue`: where the value before this character ended (a value here means a missing comma there). */
  private unexpected(expected: string, afterValue?: number): never {
    const c = this.peek();
    const next = this.text[this.i + 1];
    if (c === '/' && (next === '/' || next === '*')) this.fail(this.i, 'a comment; JSON has none');
    if (c === "'") this.fail(this.i, 'a single-quoted string; JSON needs double quotes');
    if (afterValue !== undefined && c !== undefined && VALUE_START.test(c)) this.fail(afterValue, 'a missing "," after this value');
    return this.fail(this.i, `expected ${expected}`);
  }

  private value(): void {
    const c = this.peek();
    if (c === '{') this.container('}');
    else if (c === '[') this.container(']');
    else if (c === '"') this.string();
    else if (c !== undefined && /[A-Za-z0-9\-]/.test(c)) this.word();
    else this.unexpected('a value');
  }

  private string(): void {
    const { text } = this;
    const open = this.i++;
    while (!this.atEnd) {
      const c = text[this.i]!;
      if (c === '"') return void this.i++;
      if (c === '\n' || c === '\r') this.fail(open, 'a string that is not closed on its line');
      if (c === '\\') {
        const e = text[this.i + 1] ?? '';
        if (e !== '' && '"\\/bfnrt'.includes(e)) this.i += 2;
        else if (e === 'u' && /^[0-9a-fA-F]{4}$/.test(text.slice(this.i + 2, this.i + 6))) this.i += 6;
        else this.fail(this.i, 'an invalid escape sequence');
        continue;
      }
      if (c < ' ') this.fail(this.i, 'a control character in a string; write it as an escape');
      this.i++;
    }
    this.fail(open, 'a string that is never closed');
  }

  /** A number, `true`, `false` or `null`. */
  private word(): void {
    const m = /[A-Za-z0-9_$.+\-]+/y;
    m.lastIndex = this.i;
    const w = m.exec(this.text)?.[0] ?? '';
    if (!['true', 'false', 'null'].includes(w) && !NUMBER.test(w)) {
      this.fail(this.i, 'an invalid value; expected "text", a number, true, false, null, [ or {');
    }
    this.i += w.length;
  }

  /** An object (`close` is `}`) or an array (`]`). */
  private container(close: ']' | '}'): void {
    const open = this.i++;
    const never = () => this.fail(open, `a ${this.text[open]} that is never closed`);
    const skipToMore = () => {
      this.skip();
      if (this.atEnd) never();
    };
    skipToMore();
    if (this.peek() === close) return void this.i++;
    for (;;) {
      skipToMore();
      if (close === '}') this.member(skipToMore);
      else this.value();
      const end = this.i;
      skipToMore();
      if (this.peek() === close) return void this.i++;
      // The other kind of bracket closes something outside: this one was never closed.
      if (this.peek() === (close === '}' ? ']' : '}')) never();
      if (this.peek() !== ',') this.unexpected(`"," or "${close}"`, end);
      const comma = this.i++;
      this.skip();
      if (this.peek() === close) this.fail(comma, 'a trailing comma');
    }
  }

  /** `"name": value` in an object. */
  private member(skipToMore: () => void): void {
    if (this.peek() !== '"') this.unexpected('a "name" in double quotes');
    this.string();
    skipToMore();
    if (this.peek() !== ':') this.unexpected('":" after the name');
    this.i++;
    skipToMore();
    this.value();
  }
}
