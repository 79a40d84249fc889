/**
 * The SQL text toolkit shared by the query log (`src/middleware/query-log.ts`), statement
 * telemetry (`src/server/statement-telemetry.ts`) and plugins (through the public entry point):
 * lexing by PostgreSQL's rules, literal redaction, splitting multi-statement queries, comment
 * removal, and command tags.
 */

const ROW_COUNT_TAGS = new Set(['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'COPY', 'FETCH', 'MOVE', 'MERGE']);

/** `INSERT 0 5` → { command: 'INSERT', rows: 5 }; tags without a count have no rows. */
export function parseCommandTag(tag: string): { command: string; rows?: number } {
  const parts = tag.trim().split(/\s+/);
  const command = parts[0] ?? '';
  const last = parts[parts.length - 1]!;
  if (parts.length >= 2 && ROW_COUNT_TAGS.has(command) && /^\d+$/.test(last)) {
    const rows = Number(last);
    if (Number.isSafeInteger(rows)) return { command, rows };
  }
  return { command };
}

/* ------------------------------------------------------------------------------------------------
 * SQL lexing (PostgreSQL's rules), for redaction and for splitting multi-statement queries.
 * ---------------------------------------------------------------------------------------------- */

type TokenKind = 'space' | 'comment' | 'string' | 'qident' | 'ident' | 'param' | 'number' | 'punct';

const NUMBER =
  /0[xX](?:_?[0-9a-fA-F])+|0[oO](?:_?[0-7])+|0[bB](?:_?[01])+|(?:\d(?:_?\d)*(?:\.(?:\d(?:_?\d)*)?)?|\.\d(?:_?\d)*)(?:[eE][-+]?\d(?:_?\d)*)?/y;
const DOLLAR_TAG = /\$(?:[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$/y;

function isSpace(c: number): boolean {
  return c === 32 || (c >= 9 && c <= 13);
}
function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}
function isIdentStart(c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95 || c >= 0x80;
}
function isIdentCont(c: number): boolean {
  return isIdentStart(c) || isDigit(c) || c === 36;
}

/** End of a '…' literal whose opening quote is at `q`; the input's end when unterminated. */
function scanQuoted(sql: string, q: number, backslashEscapes: boolean): number {
  const n = sql.length;
  let i = q + 1;
  while (i < n) {
    const c = sql.charCodeAt(i);
    if (c === 92 && backslashEscapes) i += 2;
    else if (c === 39) {
      if (sql.charCodeAt(i + 1) === 39) i += 2;
      else return i + 1;
    } else i++;
  }
  return n;
}

/**
 * Splits `sql` into tokens that cover it exactly. Unterminated strings, dollar quotes, comments
 * and quoted identifiers run to the end of the input (an unterminated quoted identifier is
 * reported as a string so that redaction hides it).
 */
function lex(sql: string, scs: boolean, visit: (kind: TokenKind, start: number, end: number) => void | false): void {
  const n = sql.length;
  let i = 0;
  let stopped = false;
  const emit = (kind: TokenKind, start: number, end: number) => {
    if (visit(kind, start, end) === false) stopped = true;
  };
  while (i < n && !stopped) {
    const c = sql.charCodeAt(i);
    const start = i;
    if (isSpace(c)) {
      while (i < n && isSpace(sql.charCodeAt(i))) i++;
      emit('space', start, i);
    } else if (c === 45 /* - */ && sql.charCodeAt(i + 1) === 45) {
      while (i < n && sql.charCodeAt(i) !== 10 && sql.charCodeAt(i) !== 13) i++;
      emit('comment', start, i);
    } else if (c === 47 /* / */ && sql.charCodeAt(i + 1) === 42 /* * */) {
      let depth = 1;
      i += 2;
      while (i < n && depth > 0) {
        if (sql.charCodeAt(i) === 47 && sql.charCodeAt(i + 1) === 42) {
          depth++;
          i += 2;
        } else if (sql.charCodeAt(i) === 42 && sql.charCodeAt(i + 1) === 47) {
          depth--;
          i += 2;
        } else i++;
      }
      emit('comment', start, Math.min(i, n));
    } else if (c === 39 /* ' */) {
      i = scanQuoted(sql, i, !scs);
      emit('string', start, i);
    } else if (c === 34 /* " */) {
      i++;
      for (;;) {
        const q = sql.indexOf('"', i);
        if (q < 0) {
          i = n;
          emit('string', start, n);
          break;
        }
        if (sql.charCodeAt(q + 1) === 34) {
          i = q + 2;
          continue;
        }
        i = q + 1;
        emit('qident', start, i);
        break;
      }
    } else if (c === 36 /* $ */) {
      if (isDigit(sql.charCodeAt(i + 1))) {
        i++;
        while (i < n && isDigit(sql.charCodeAt(i))) i++;
        emit('param', start, i);
        continue;
      }
      DOLLAR_TAG.lastIndex = i;
      const m = DOLLAR_TAG.exec(sql);
      if (m) {
        const close = sql.indexOf(m[0], i + m[0].length);
        i = close < 0 ? n : close + m[0].length;
        emit('string', start, i);
      } else {
        i++;
        emit('punct', start, i);
      }
    } else if (isIdentStart(c)) {
      i++;
      while (i < n && isIdentCont(sql.charCodeAt(i))) i++;
      // E'…' (backslash escapes), B'…', X'…', N'…': the prefix belongs to the literal.
      if (i === start + 1 && sql.charCodeAt(i) === 39 && 'eEbBxXnN'.includes(sql[start]!)) {
        const backslashes = c === 69 || c === 101 ? true : c === 78 || c === 110 ? !scs : false;
        i = scanQuoted(sql, i, backslashes);
        emit('string', start, i);
      } else emit('ident', start, i);
    } else if (isDigit(c) || (c === 46 /* . */ && isDigit(sql.charCodeAt(i + 1)))) {
      NUMBER.lastIndex = i;
      NUMBER.exec(sql);
      i = NUMBER.lastIndex > i ? NUMBER.lastIndex : i + 1;
      emit('number', start, i);
    } else {
      // Keep surrogate pairs together.
      i += c >= 0xd800 && c <= 0xdbff && i + 1 < n ? 2 : 1;
      emit('punct', start, i);
    }
  }
}

export interface SqlTextOptions {
  /**
   * The session's `standard_conforming_strings` (default on, as since PostgreSQL 9.1): when off,
   * backslashes escape quotes inside '…' literals too. A middleware reads it from
   * `ctx.serverParams.get('standard_conforming_strings')`.
   */
  standardConformingStrings?: boolean;
}

/**
 * Replaces every literal in `sql` by `?`: strings ('…' with '' escapes, E'…' with backslash
 * escapes, B'…', X'…', N'…', U&'…', $tag$…$tag$ dollar quotes) and numbers (not digits inside
 * identifiers such as t1, nor $1 parameters). Identifiers, keywords, quoted identifiers,
 * operators and whitespace are kept; comments are removed. An unterminated literal or quoted
 * identifier hides everything up to the end.
 */
export function redactSql(sql: string, opts: SqlTextOptions = {}): string {
  let out = '';
  lex(sql, opts.standardConformingStrings ?? true, (kind, start, end) => {
    switch (kind) {
      case 'string':
      case 'number':
        out += '?';
        return;
      case 'comment': {
        const last = out.charCodeAt(out.length - 1);
        if (out.length > 0 && !isSpace(last)) out += ' ';
        return;
      }
      default:
        out += sql.slice(start, end);
    }
  });
  return out;
}

/**
 * Splits a simple-protocol query string into its statements, as the server runs them: at
 * semicolons outside literals, comments and `BEGIN ATOMIC … END` bodies; empty statements
 * (nothing but whitespace and comments) are dropped, as the server skips them.
 */
export function splitStatements(sql: string, opts: SqlTextOptions = {}): string[] {
  const out: string[] = [];
  let start = 0;
  let significant = false;
  let first: string | undefined;
  let prevWord: string | undefined;
  let atomicDepth = 0;
  lex(sql, opts.standardConformingStrings ?? true, (kind, s, e) => {
    if (kind === 'space' || kind === 'comment') return;
    if (kind === 'punct' && sql.charCodeAt(s) === 59 /* ; */ && atomicDepth === 0) {
      if (significant) out.push(sql.slice(start, s).trim());
      start = e;
      significant = false;
      first = prevWord = undefined;
      return;
    }
    const word = kind === 'ident' ? sql.slice(s, e).toLowerCase() : undefined;
    if (!significant) first = word ?? '';
    significant = true;
    if (word !== undefined && first === 'create') {
      if (word === 'atomic' && prevWord === 'begin') atomicDepth++;
      else if (atomicDepth > 0 && word === 'case') atomicDepth++;
      else if (atomicDepth > 0 && word === 'end') atomicDepth--;
    }
    prevWord = word;
  });
  if (significant) out.push(sql.slice(start).trim());
  return out;
}

/**
 * `sql` with its comments removed and trimmed. A comment counts as the whitespace PostgreSQL
 * reads it as, so one between two words leaves a space; literals and quoted identifiers are
 * kept as written, comment-like text inside them too.
 */
export function withoutComments(sql: string, opts: SqlTextOptions = {}): string {
  let out = '';
  lex(sql, opts.standardConformingStrings ?? true, (kind, start, end) => {
    if (kind !== 'comment') out += sql.slice(start, end);
    else if (out.length > 0 && !isSpace(out.charCodeAt(out.length - 1))) out += ' ';
  });
  return out.trim();
}

/** The first keyword of a statement, upper-cased (`WITH`, `SELECT`…), skipping comments and parentheses. */
export function firstKeyword(sql: string): string | undefined {
  let word: string | undefined;
  lex(sql, true, (kind, s, e) => {
    if (kind === 'ident') {
      word = sql.slice(s, e).toUpperCase();
      return false;
    }
    if (kind !== 'space' && kind !== 'comment' && !(kind === 'punct' && sql[s] === '(')) return false;
  });
  return word;
}
