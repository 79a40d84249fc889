import { redactSql, splitStatementsRedacted } from '../sql/text.js';
import type { QueryShapes } from './query-log-shape.js';

/** Mentions proxy_login: its literals are redacted even when redaction is off. */
const SENSITIVE = /proxy_login/i;

/**
 * A statement's text as `query-log` reports it: cut to the reporting limit (then ending with `…`)
 * and, when redacting or when it mentions proxy_login, with its literals replaced by `?`. Made
 * once, when first reported: a prepared statement run again reports the same text.
 */
export class StatementText {
  private reported: string | undefined;

  private constructor(
    /** The text, already cut to the reporting limit. */
    private readonly sql: string,
    private readonly cut: boolean,
    private readonly sensitive: boolean,
    /** `sql` redacted, when it was made with the split (see `splitStatementsRedacted`). */
    private redacted: string | undefined,
  ) {}

  /** `sql` as the client sent it (a Parse, or one statement of a Query). */
  static of(sql: string, sensitive: boolean, maxLength: number, redacted?: string): StatementText {
    if (sql.length > maxLength) return new StatementText(sql.slice(0, maxLength), true, sensitive, undefined);
    return new StatementText(sql, false, sensitive, redacted);
  }

  /** Its length, for the bound on what a session remembers. */
  get length(): number {
    return this.sql.length;
  }

  /** `standardConformingStrings` is asked only when the text must be lexed here. */
  text(redact: boolean, standardConformingStrings: () => boolean): string {
    if (this.reported !== undefined) return this.reported;
    const mark = this.cut ? '…' : '';
    if (!redact && !this.sensitive) this.reported = this.sql + mark;
    // A literal cut short is unterminated, and so hidden to the end.
    else this.reported = (this.redacted ?? redactSql(this.sql, { standardConformingStrings: standardConformingStrings() }).trim()) + mark;
    this.redacted = undefined;
    return this.reported;
  }
}

export function isSensitive(sql: string): boolean {
  return SENSITIVE.test(sql);
}

/**
 * The statements of a simple Query, in the order the server runs them, split and (when they will
 * be reported redacted) redacted in one pass over the text; none when it holds only whitespace
 * and comments.
 */
export function queryStatements(
  sql: string,
  sensitive: boolean,
  redact: boolean,
  maxLength: number,
  standardConformingStrings: () => boolean,
  shapes: QueryShapes<readonly StatementText[]>,
): readonly StatementText[] {
  // The setting changes only how backslashes in '…' literals read: without a quote it is not asked (a lookup per query).
  const scs = sql.includes("'") ? standardConformingStrings() : true;
  const redacting = redact || sensitive;
  // A shape gives the redacted text only: kept for queries reported redacted and not cut.
  const shaped = redacting && sql.length <= maxLength;
  if (shaped) {
    const known = shapes.known(sql, scs, shapeStatements);
    if (known) return known;
  }
  const pieces = splitStatementsRedacted(sql, redacting, { standardConformingStrings: scs });
  if (shaped) shapes.learn(sql, scs, pieces);
  // A loop, not map: its callback's closure would hold sensitive and maxLength in a context made on every call.
  const statements: StatementText[] = [];
  for (const p of pieces) statements.push(StatementText.of(p.text, sensitive, maxLength, p.redacted));
  return statements;
}

/**
 * The statements of a query of a trusted shape, shared by every query of it in the session: its
 * one statement reports the shape's redacted text, as each query's own would (reported redacted,
 * not cut), so nothing is made per query.
 */
function shapeStatements(redacted: string): readonly StatementText[] {
  return Object.freeze([StatementText.of(redacted, true, Infinity, redacted)]);
}
