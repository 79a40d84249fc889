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

/**
 * Finds the first mistake in text that JSON.parse refused. V8 reports where it stopped reading
 * (the `}` after a trailing comma, often on the next line) and sometimes no position at all; this
 * scanner names the character to fix instead.
 */
export function locateJsonFault(text: string): JsonFault | undefined {
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  const n = text.length;
  const fail = (offset: number, what: string): never => {
    throw new JsonFault(offset, what);
  };
  const skip = () => {
    while (i < n && WHITESPACE.has(text[i]!)) i++;
  };
  const unexpected = (expected: string, afterValue?: number): never => {
    const c = text[i];
    if (c === '/' && (text[i + 1] === '/' || text[i + 1] === '*')) fail(i, 'a comment; JSON has none');
    if (c === "'") fail(i, 'a single-quoted string; JSON needs double quotes');
    if (afterValue !== undefined && c !== undefined && VALUE_START.test(c)) fail(afterValue, `a missing "," after this value`);
    return fail(i, `expected ${expected}`);
  };
  const string = () => {
    const open = i++;
    while (i < n) {
      const c = text[i]!;
      if (c === '"') return void i++;
      if (c === '\n' || c === '\r') fail(open, 'a string that is not closed on its line');
      if (c === '\\') {
        const e = text[i + 1] ?? '';
        if ('"\\/bfnrt'.includes(e) && e !== '') i += 2;
        else if (e === 'u' && /^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) i += 6;
        else fail(i, 'an invalid escape sequence');
        continue;
      }
      if (c < ' ') fail(i, 'a control character in a string; write it as an escape');
      i++;
    }
    fail(open, 'a string that is never closed');
  };
  const word = () => {
    const m = /[A-Za-z0-9_$.+\-]+/y;
    m.lastIndex = i;
    const w = m.exec(text)?.[0] ?? '';
    if (!['true', 'false', 'null'].includes(w) && !/^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/.test(w)) {
      fail(i, 'an invalid value; expected "text", a number, true, false, null, [ or {');
    }
    i += w.length;
  };
  const container = (close: ']' | '}') => {
    const open = i++;
    const never = () => fail(open, `a ${text[open]} that is never closed`);
    skip();
    if (text[i] === close) return void i++;
    for (;;) {
      skip();
      if (i >= n) never();
      if (close === '}') {
        if (text[i] !== '"') unexpected('a "name" in double quotes');
        string();
        skip();
        if (i >= n) never();
        if (text[i] !== ':') unexpected('":" after the name');
        i++;
        skip();
        if (i >= n) never();
      }
      value();
      const end = i;
      skip();
      if (i >= n) never();
      if (text[i] === close) return void i++;
      // The other kind of bracket closes something outside: this one was never closed.
      if (text[i] === (close === '}' ? ']' : '}')) never();
      if (text[i] !== ',') unexpected(`"," or "${close}"`, end);
      const comma = i++;
      skip();
      if (text[i] === close) fail(comma, 'a trailing comma');
    }
  };
  const value = () => {
    const c = text[i];
    if (c === '{') container('}');
    else if (c === '[') container(']');
    else if (c === '"') string();
    else if (c !== undefined && /[A-Za-z0-9\-]/.test(c)) word();
    else unexpected('a value');
  };
  try {
    skip();
    if (i >= n) fail(i, 'the file is empty');
    value();
    skip();
    if (i < n) fail(i, 'text after the end of the JSON value');
    return undefined;
  } catch (err) {
    if (err instanceof JsonFault) return err;
    throw err;
  }
}
