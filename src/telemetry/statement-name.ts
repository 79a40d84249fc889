/**
 * Low-cardinality statement names for span names and `db.query.summary`, read from keywords and
 * identifiers only, never from literals.
 */

/** Most characters of a statement looked at to name it: naming stays cheap on huge statements. */
const SUMMARY_SCAN_LIMIT = 4096;

/**
 * A low-cardinality name for a statement, used as `db.query.summary` and as the span name:
 * `{operation} {table}` when the statement has a plain target (`INSERT orders`, `SELECT orders`,
 * `UPDATE public.orders`), else `{operation}` (`SELECT`, `BEGIN`). Only keywords and identifiers
 * are read — never a literal.
 */
export function statementSummary(sql: string, operation?: string): { operation?: string; collection?: string; summary?: string } {
  const tokens = topLevelWords(sql.length > SUMMARY_SCAN_LIMIT ? sql.slice(0, SUMMARY_SCAN_LIMIT) : sql);
  const first = tokens[0]?.toUpperCase();
  const op = operation?.trim() ? operation.trim().toUpperCase() : first;
  if (op === undefined || !/^[A-Z][A-Z ]{0,31}$/.test(op)) return {};
  let collection: string | undefined;
  const after = (kw: string) => {
    const i = tokens.findIndex((t) => t.toUpperCase() === kw);
    return i >= 0 ? tokens[i + 1] : undefined;
  };
  switch (first) {
    case 'SELECT':
      collection = after('FROM');
      break;
    case 'INSERT':
      collection = after('INTO');
      break;
    case 'UPDATE':
      collection = tokens[1]?.toUpperCase() === 'ONLY' ? tokens[2] : tokens[1];
      break;
    case 'DELETE':
      collection = after('FROM');
      if (collection?.toUpperCase() === 'ONLY') collection = tokens[tokens.indexOf(collection) + 1];
      break;
  }
  if (collection !== undefined && (KEYWORDS.has(collection.toUpperCase()) || !IDENT_PATH.test(collection))) collection = undefined;
  return collection ? { operation: op, collection, summary: `${op} ${collection}` } : { operation: op, summary: op };
}

const IDENT_PATH = /^(?:[A-Za-z_][A-Za-z0-9_$]*|"[^"]{1,63}")(?:\.(?:[A-Za-z_][A-Za-z0-9_$]*|"[^"]{1,63}")){0,2}$/;
const KEYWORDS = new Set(['ONLY', 'LATERAL', 'SELECT', 'VALUES', 'WITH', 'DEFAULT', 'WHERE', 'SET']);

/**
 * Words (keywords, identifiers and dotted/quoted identifier paths) outside parentheses, in
 * order, with `(` standing for each parenthesised group; strings, comments, numbers, parameters
 * and other punctuation are skipped.
 */
function topLevelWords(sql: string): string[] {
  const words: string[] = [];
  let depth = 0;
  let i = 0;
  const n = sql.length;
  while (i < n && words.length < 64) {
    const ch = sql[i] as string;
    if (ch === '-' && sql[i + 1] === '-') {
      const nl = sql.indexOf('\n', i);
      i = nl < 0 ? n : nl + 1;
    } else if (ch === '/' && sql[i + 1] === '*') {
      const end = sql.indexOf('*/', i + 2);
      i = end < 0 ? n : end + 2;
    } else if (ch === "'") {
      i = skipString(sql, i, false);
    } else if (ch === '$' && /[A-Za-z_$]/.test(sql[i + 1] ?? '')) {
      const m = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(sql.slice(i, i + 66));
      if (m) {
        const end = sql.indexOf(m[0], i + m[0].length);
        i = end < 0 ? n : end + m[0].length;
      } else i++;
    } else if (ch === '(') {
      if (depth++ === 0) words.push('(');
      i++;
    } else if (ch === ')') {
      depth = Math.max(0, depth - 1);
      i++;
    } else if (/[A-Za-z_"]/.test(ch)) {
      const m = /^(?:[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"]|"")*")(?:\.(?:[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"]|"")*"))*/.exec(sql.slice(i, i + 256));
      const word = m ? m[0] : ch;
      if (depth === 0) words.push(word);
      i += word.length;
      // E'…' (backslash escapes), B'…', X'…' and N'…': skip the string that follows the prefix.
      if (sql[i] === "'") i = skipString(sql, i, word === 'E' || word === 'e');
    } else i++;
  }
  return words;
}

/** The index after the string literal opening at `start` ('' doubles a quote; \\ escapes only in E'…'). */
function skipString(sql: string, start: number, backslashEscapes: boolean): number {
  let i = start + 1;
  while (i < sql.length) {
    const ch = sql[i];
    if (backslashEscapes && ch === '\\') i += 2;
    else if (ch === "'") {
      if (sql[i + 1] === "'") i += 2;
      else return i + 1;
    } else i++;
  }
  return sql.length;
}
