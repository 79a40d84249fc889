/**
 * The SQL text toolkit shared by the query log (`src/middleware/query-log.ts`), statement
 * telemetry (`src/server/statement-telemetry.ts`) and plugins (through the public entry point):
 * lexing by PostgreSQL's rules, literal redaction, splitting multi-statement queries, comment
 * removal, and command tags.
 */
import { BoundedMemo } from '../util/bounded-memo.js';

const ROW_COUNT_TAGS = new Set(['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'COPY', 'FETCH', 'MOVE', 'MERGE']);

/** Tags seen, and what they read as: a session sends the same few (`SELECT 1`) over and over. */
const parsedTags = new BoundedMemo<string, Readonly<{ command: string; rows?: number }>>(512);

/** `INSERT 0 5` → { command: 'INSERT', rows: 5 }; tags without a count have no rows. A new object each call (plugins may keep or change it). */
export function parseCommandTag(tag: string): { command: string; rows?: number } {
  return { ...commandTagOf(tag) };
}

/** As `parseCommandTag`, for pgward's own per-statement paths: frozen and shared, from a bounded cache. */
export function commandTagOf(tag: string): Readonly<{ command: string; rows?: number }> {
  // Row counts vary without end: the memo's bound keeps the latest tags, not all of them.
  return parsedTags.get(tag, frozenCommandTag);
}

function frozenCommandTag(tag: string): Readonly<{ command: string; rows?: number }> {
  return Object.freeze(readCommandTag(tag));
}

function readCommandTag(tag: string): { command: string; rows?: number } {
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

// Token kinds, as numbers: the lexer is on every statement's path (query-log, statement spans).
const SPACE = 0;
const COMMENT = 1;
const STRING = 2;
const QIDENT = 3;
const IDENT = 4;
const PARAM = 5;
const NUMBER_TOKEN = 6;
const PUNCT = 7;

/** The kind of the token {@link nextToken} read last (one lexer runs at a time: it never yields). */
let tokenKind = SPACE;

/**
 * Reads the token that starts at `i` and returns where it ends; its kind is left in `tokenKind`.
 * Tokens cover the input exactly. Unterminated strings, dollar quotes, comments and quoted
 * identifiers run to the end of the input (an unterminated quoted identifier is reported as a
 * string so that redaction hides it). A cursor rather than a visitor: no closure per call.
 */
function nextToken(sql: string, i: number, scs: boolean): number {
  const n = sql.length;
  const c = sql.charCodeAt(i);
  const start = i;
  if (isSpace(c)) {
    i++;
    while (i < n && isSpace(sql.charCodeAt(i))) i++;
    tokenKind = SPACE;
    return i;
  }
  if (c === 45 /* - */ && sql.charCodeAt(i + 1) === 45) {
    while (i < n && sql.charCodeAt(i) !== 10 && sql.charCodeAt(i) !== 13) i++;
    tokenKind = COMMENT;
    return i;
  }
  if (c === 47 /* / */ && sql.charCodeAt(i + 1) === 42 /* * */) {
    tokenKind = COMMENT;
    return blockCommentEnd(sql, i);
  }
  if (c === 39 /* ' */) {
    tokenKind = STRING;
    return scanQuoted(sql, i, !scs);
  }
  if (c === 34 /* " */) return quotedIdentEnd(sql, i);
  if (c === 36 /* $ */) return dollarEnd(sql, i);
  if (isIdentStart(c)) {
    i++;
    while (i < n && isIdentCont(sql.charCodeAt(i))) i++;
    // E'…' (backslash escapes), B'…', X'…', N'…': the prefix belongs to the literal.
    if (i === start + 1 && sql.charCodeAt(i) === 39 && isLiteralPrefix(c)) {
      const backslashes = c === 69 || c === 101 ? true : c === 78 || c === 110 ? !scs : false;
      tokenKind = STRING;
      return scanQuoted(sql, i, backslashes);
    }
    tokenKind = IDENT;
    return i;
  }
  if (isDigit(c) || (c === 46 /* . */ && isDigit(sql.charCodeAt(i + 1)))) {
    tokenKind = NUMBER_TOKEN;
    NUMBER.lastIndex = i;
    NUMBER.exec(sql);
    return NUMBER.lastIndex > i ? NUMBER.lastIndex : i + 1;
  }
  // Keep surrogate pairs together.
  tokenKind = PUNCT;
  return i + (c >= 0xd800 && c <= 0xdbff && i + 1 < n ? 2 : 1);
}

/** e E b B x X n N */
function isLiteralPrefix(c: number): boolean {
  const lower = c | 0x20;
  return lower === 101 || lower === 98 || lower === 120 || lower === 110;
}

/** Block comments nest, as in PostgreSQL. */
function blockCommentEnd(sql: string, i: number): number {
  const n = sql.length;
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
  return Math.min(i, n);
}

function quotedIdentEnd(sql: string, i: number): number {
  i++;
  for (;;) {
    const q = sql.indexOf('"', i);
    if (q < 0) {
      tokenKind = STRING;
      return sql.length;
    }
    if (sql.charCodeAt(q + 1) === 34) {
      i = q + 2;
      continue;
    }
    tokenKind = QIDENT;
    return q + 1;
  }
}

/** `$1` (a parameter), `$tag$…$tag$` (a dollar-quoted string), or a lone `$`. */
function dollarEnd(sql: string, i: number): number {
  if (isDigit(sql.charCodeAt(i + 1))) {
    i++;
    while (i < sql.length && isDigit(sql.charCodeAt(i))) i++;
    tokenKind = PARAM;
    return i;
  }
  DOLLAR_TAG.lastIndex = i;
  const m = DOLLAR_TAG.exec(sql);
  if (!m) {
    tokenKind = PUNCT;
    return i + 1;
  }
  const close = sql.indexOf(m[0], i + m[0].length);
  tokenKind = STRING;
  return close < 0 ? sql.length : close + m[0].length;
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
  const scs = opts.standardConformingStrings ?? true;
  // Runs of kept tokens are copied as one slice: most of a statement is kept as written.
  let out = '';
  let kept = 0;
  for (let i = 0; i < sql.length; ) {
    const start = i;
    i = nextToken(sql, i, scs);
    if (tokenKind === STRING || tokenKind === NUMBER_TOKEN) {
      out += sql.slice(kept, start) + '?';
      kept = i;
    } else if (tokenKind === COMMENT) {
      out += sql.slice(kept, start);
      if (out.length > 0 && !isSpace(out.charCodeAt(out.length - 1))) out += ' ';
      kept = i;
    }
  }
  return kept === 0 ? sql : out + sql.slice(kept);
}

/**
 * Splits a simple-protocol query string into its statements, as the server runs them: at
 * semicolons outside literals, comments and `BEGIN ATOMIC … END` bodies; empty statements
 * (nothing but whitespace and comments) are dropped, as the server skips them.
 */
export function splitStatements(sql: string, opts: SqlTextOptions = {}): string[] {
  return splitStatementsRedacted(sql, false, opts).map((st) => st.text);
}

/** A statement of a query string, as {@link splitStatementsRedacted} gives it. */
export interface SplitStatement {
  /** As {@link splitStatements} gives it. */
  readonly text: string;
  /**
   * `redactSql(text).trim()`, made in the same pass; undefined when not asked for, or when
   * trimming cut into a token (a non-ASCII space, the end of a literal or comment left open at
   * the input's end), where the text alone may lex otherwise.
   */
  readonly redacted: string | undefined;
}

/**
 * {@link splitStatements} and, with `redact`, each statement redacted as {@link redactSql} would
 * redact it alone, in one pass: the tokens of a statement lexed alone are the tokens the whole
 * string has between the statement's ends, so they need not be read twice.
 */
export function splitStatementsRedacted(sql: string, redact: boolean, opts: SqlTextOptions = {}): SplitStatement[] {
  const scs = opts.standardConformingStrings ?? true;
  const out: SplitStatement[] = [];
  let start = 0;
  let significant = false;
  // Only a CREATE statement can hold a BEGIN ATOMIC body: its words are read, no other's.
  let create = false;
  let prevBegin = false;
  let atomicDepth = 0;
  // The current statement: its first and last tokens other than whitespace, and its redaction so
  // far (`redacted`, then the source from `kept` on).
  let first = -1;
  let last = 0;
  let redacted = '';
  let kept = 0;
  for (let i = 0; i < sql.length; ) {
    const s = i;
    i = nextToken(sql, i, scs);
    if (tokenKind === SPACE) continue;
    if (first < 0) {
      first = kept = s;
      redacted = '';
    }
    if (tokenKind === PUNCT && sql.charCodeAt(s) === 59 /* ; */ && atomicDepth === 0) {
      if (significant) out.push(statement(sql, start, s, first, last, redact ? redacted + sql.slice(kept, last) : undefined));
      start = i;
      first = -1;
      significant = create = prevBegin = false;
      continue;
    }
    last = i;
    if (tokenKind === COMMENT) {
      if (redact) {
        redacted += sql.slice(kept, s);
        if (redacted.length > 0 && !isSpace(redacted.charCodeAt(redacted.length - 1))) redacted += ' ';
        kept = i;
      }
      continue;
    }
    if (redact && (tokenKind === STRING || tokenKind === NUMBER_TOKEN)) {
      redacted += sql.slice(kept, s) + '?';
      kept = i;
    }
    const ident = tokenKind === IDENT;
    if (!significant) create = ident && wordIs(sql, s, i, 'create');
    significant = true;
    if (!create) continue;
    if (ident && prevBegin && wordIs(sql, s, i, 'atomic')) atomicDepth++;
    else if (ident && atomicDepth > 0 && wordIs(sql, s, i, 'case')) atomicDepth++;
    else if (ident && atomicDepth > 0 && wordIs(sql, s, i, 'end')) atomicDepth--;
    prevBegin = ident && wordIs(sql, s, i, 'begin');
  }
  if (significant) out.push(statement(sql, start, sql.length, first, last, redact ? redacted + sql.slice(kept, last) : undefined));
  return out;
}

/** A statement from `sql[start, end)`, whose tokens other than whitespace span `[first, last)`. */
function statement(sql: string, start: number, end: number, first: number, last: number, redacted: string | undefined): SplitStatement {
  const text = sql.slice(start, end).trim();
  // trim() drops whitespace the lexer does not (U+00A0…): then the text alone lexes otherwise.
  return { text, redacted: redacted !== undefined && text.length === last - first ? redacted.trim() : undefined };
}

/**
 * Whether `sql[s, e)` is `word` (lower-case ASCII letters) in any case, as `toLowerCase` would
 * compare it: only ASCII letters fold to these letters at the same length.
 */
function wordIs(sql: string, s: number, e: number, word: string): boolean {
  if (e - s !== word.length) return false;
  for (let k = 0; k < word.length; k++) if ((sql.charCodeAt(s + k) | 0x20) !== word.charCodeAt(k)) return false;
  return true;
}

/**
 * `sql` with its comments removed and trimmed. A comment counts as the whitespace PostgreSQL
 * reads it as, so one between two words leaves a space; literals and quoted identifiers are
 * kept as written, comment-like text inside them too.
 */
export function withoutComments(sql: string, opts: SqlTextOptions = {}): string {
  const scs = opts.standardConformingStrings ?? true;
  let out = '';
  let kept = 0;
  for (let i = 0; i < sql.length; ) {
    const start = i;
    i = nextToken(sql, i, scs);
    if (tokenKind !== COMMENT) continue;
    out += sql.slice(kept, start);
    if (out.length > 0 && !isSpace(out.charCodeAt(out.length - 1))) out += ' ';
    kept = i;
  }
  return (out + sql.slice(kept)).trim();
}

/** The first keyword of a statement, upper-cased (`WITH`, `SELECT`…), skipping comments and parentheses. */
export function firstKeyword(sql: string): string | undefined {
  for (let i = 0; i < sql.length; ) {
    const s = i;
    i = nextToken(sql, i, true);
    if (tokenKind === IDENT) return sql.slice(s, i).toUpperCase();
    if (tokenKind !== SPACE && tokenKind !== COMMENT && !(tokenKind === PUNCT && sql.charCodeAt(s) === 40 /* ( */)) return undefined;
  }
  return undefined;
}
