import type { MiddlewareContext } from '../pipeline/middleware.js';
import { firstKeyword, commandTagOf } from '../sql/text.js';
import type { StatementText } from './query-log-text.js';

/** One finished statement, as `query-log` reports it (SPEC §5). */
export interface QueryEvent {
  event: 'query';
  session: string;
  user: string;
  database: string;
  /** The statement text, literals replaced by `?` when redacting; never a `proxy_login` literal. */
  statement: string;
  /** Number of bind parameters (0 for the simple protocol); values are never reported. */
  params: number;
  /** From the statement passing this middleware to its completion, in milliseconds. */
  duration_ms: number;
  /** From the command tag (SELECT n, INSERT 0 n, UPDATE n, …), or the rows sent when the tag has none. */
  rows?: number;
  /** SQLSTATE when the statement failed. */
  sqlstate?: string;
  /** First word of the command tag, or of the statement when there is no tag. */
  command?: string;
}

/** `query-log`'s options with their defaults applied. */
export interface Settings {
  redact: boolean;
  slowMs: number;
  maxLength: number;
  now: () => number;
  emit?: (event: QueryEvent) => void;
}

/** A line's own fields, after the session's (event, session, user, database). */
interface LineFields extends Record<string, unknown> {
  statement: string;
  params: number;
  duration_ms: number;
  rows: number | undefined;
  sqlstate: string | undefined;
  command: string | undefined;
}

/**
 * Turns finished statements into events: to `emit` when given, otherwise to the session's log as
 * an info line `query`. Per statement it renders only what changes: the session's fields are
 * rendered once, when the logger can (`SessionLogger.prepare`).
 */
export class QueryReporter {
  private readonly line: (fields: LineFields) => void;
  /**
   * Each line's fields, filled in anew for each statement: the prepared line and the general
   * path read them during the call and keep nothing of the object (see `Logger.prepare`).
   */
  private readonly fields: LineFields = { statement: '', params: 0, duration_ms: 0, rows: undefined, sqlstate: undefined, command: undefined };

  constructor(
    private readonly ctx: MiddlewareContext,
    private readonly s: Settings,
  ) {
    const fixed = { event: 'query', session: ctx.id, user: ctx.user, database: ctx.database };
    const log = ctx.log;
    if (s.emit) this.line = () => {};
    else this.line = log.prepare?.('info', 'query', fixed) ?? ((fields) => log.info('query', { ...fixed, ...fields }));
  }

  /**
   * Reports a statement unless it is faster than `slowMs`; returns the clock reading it ended at.
   * How it ended: its command tag, its SQLSTATE, or a suspended portal.
   */
  report(stmt: StatementText | undefined, params: number, start: number, rowsSent: number, tagText: string | undefined, sqlstate?: string, suspended = false): number {
    const end = this.s.now();
    // Never below zero: clocks read a moment apart (an observed message's read time) must not hide a statement.
    const duration = Math.max(0, end - start);
    if (duration < this.s.slowMs) return end;
    const text = stmt ? stmt.text(this.s.redact, this.standardConformingStrings) : '';
    const tag = tagText !== undefined ? commandTagOf(tagText) : undefined;
    const fields = this.fields;
    fields.statement = text;
    fields.params = params;
    fields.duration_ms = Math.round(duration * 1000) / 1000;
    fields.rows = tag?.rows ?? (rowsSent > 0 || suspended ? rowsSent : undefined);
    fields.sqlstate = sqlstate;
    fields.command = tag?.command || firstKeyword(text) || undefined;
    try {
      if (this.s.emit) this.s.emit(this.event(fields));
      else this.line(fields);
    } catch (err) {
      this.ctx.log.warn('query-log: emit failed', { error: (err as Error)?.message ?? String(err) });
    }
    return end;
  }

  /** The session's `standard_conforming_strings`: when off, backslashes escape quotes in '…' literals. */
  readonly standardConformingStrings = (): boolean => this.ctx.serverParams.get('standard_conforming_strings') !== 'off';

  /** The event as `emit` gets it: absent fields left out. */
  private event(f: LineFields): QueryEvent {
    const { ctx } = this;
    const event: QueryEvent = {
      event: 'query',
      session: ctx.id,
      user: ctx.user,
      database: ctx.database,
      statement: f.statement,
      params: f.params,
      duration_ms: f.duration_ms,
    };
    if (f.rows !== undefined) event.rows = f.rows;
    if (f.sqlstate !== undefined) event.sqlstate = f.sqlstate;
    if (f.command !== undefined) event.command = f.command;
    return event;
  }
}
