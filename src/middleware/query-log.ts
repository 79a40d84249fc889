import { tap } from 'rxjs';
import type { Middleware, MiddlewareContext, SessionHandlers } from '../pipeline/middleware.js';
import type { BackendMessage, FrontendMessage } from '../protocol/index.js';

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

export interface QueryLogOptions {
  /** Replace literals in statement text by `?` (default true). `proxy_login(…)` literals are always redacted. */
  redact?: boolean;
  /** Report only statements that took at least this long (default 0: all). */
  slowMs?: number;
  /** Longest statement text reported; longer text is cut and ends with `…` (default 4096). */
  maxStatementLength?: number;
  /** Where events go; by default each session's logger, as an info line `query`. */
  emit?: (event: QueryEvent) => void;
  /** Clock in milliseconds (tests); default `performance.now()`. */
  now?: () => number;
}

/**
 * `query-log`: one structured event per statement, for the simple protocol (each statement of a
 * multi-statement Query separately) and the extended protocol (Parse/Bind/Execute pipelines,
 * named and unnamed statements and portals, Sync, errors that make the backend skip to Sync).
 *
 * Only Query, Parse, Bind, Execute, CommandComplete and ErrorResponse bodies are decoded; every
 * other message is recognised by its type alone, so result rows are never decoded.
 */
export function queryLog(opts: QueryLogOptions = {}): Middleware {
  const settings: Settings = {
    redact: opts.redact ?? true,
    slowMs: opts.slowMs ?? 0,
    maxLength: opts.maxStatementLength ?? 4096,
    now: opts.now ?? (() => performance.now()),
    emit: opts.emit,
  };
  return {
    name: 'query-log',
    session(ctx: MiddlewareContext): SessionHandlers {
      const tracker = new QueryTracker(ctx, settings);
      return {
        frontend: tap(tracker.onClient),
        backend: tap(tracker.onBackend),
        onClose: () => tracker.reset(),
      };
    },
  };
}

interface Settings {
  redact: boolean;
  slowMs: number;
  maxLength: number;
  now: () => number;
  emit?: (event: QueryEvent) => void;
}

/** A prepared statement as the client defined it with Parse. */
interface StatementInfo {
  /** Text, already cut to the reporting limit. */
  readonly sql: string;
  /** The text was cut: reported with a trailing `…`. */
  readonly cut: boolean;
  /** Mentions proxy_login: its literals are redacted even when redaction is off. */
  readonly sensitive: boolean;
  redacted?: string;
}

interface Portal {
  readonly stmt: StatementInfo | undefined;
  readonly params: number;
}

/** A client request still waiting for its answer, in the order the backend will answer. */
type Pending =
  | { kind: 'query'; sql: string; sensitive: boolean; pieces?: string[]; idx: number; start: number; rows: number; done: boolean }
  | { kind: 'parse'; stmt: StatementInfo; start: number }
  | { kind: 'bind'; stmt: StatementInfo | undefined; params: number; start: number }
  | { kind: 'execute'; stmt: StatementInfo | undefined; params: number; start: number; rows: number }
  | { kind: 'describe' | 'close' | 'sync' | 'call' };

/** Requests answered by a ReadyForQuery. */
const TERMINATORS = new Set<Pending['kind']>(['sync', 'query', 'call']);
/** Bounds on what one session remembers (statements the client never closes, runaway pipelines). */
const MAX_STATEMENTS = 10_000;
const MAX_STATEMENT_CHARS = 1 << 20;
const MAX_PORTALS = 1_000;
const MAX_PENDING = 100_000;
const SENSITIVE = /proxy_login/i;

class QueryTracker {
  private queue: Pending[] = [];
  private head = 0;
  /** After an extended-protocol error with no Sync sent yet: the backend ignores all until Sync. */
  private awaitingSync = false;
  private readonly statements = new BoundedMap<StatementInfo>(MAX_STATEMENTS, MAX_STATEMENT_CHARS);
  private readonly portals = new BoundedMap<Portal>(MAX_PORTALS, Infinity);
  private failed = false;

  constructor(
    private readonly ctx: MiddlewareContext,
    private readonly s: Settings,
  ) {}

  readonly onClient = (m: FrontendMessage): void => {
    try {
      this.fromClient(m);
    } catch (err) {
      this.lostTrack(err);
    }
  };

  readonly onBackend = (m: BackendMessage): void => {
    try {
      this.fromBackend(m);
    } catch (err) {
      this.lostTrack(err);
    }
  };

  /** Bookkeeping never ends a session: on an unexpected error (a malformed message), start over. */
  private lostTrack(err: unknown): void {
    this.reset();
    if (!this.failed) {
      this.failed = true;
      this.ctx.log.warn('query-log: lost track of the session', { error: (err as Error)?.message ?? String(err) });
    }
  }

  reset(): void {
    this.queue = [];
    this.head = 0;
    this.awaitingSync = false;
  }

  fromClient(m: FrontendMessage): void {
    if (this.awaitingSync) {
      if (m.type !== 'Sync') return;
      this.awaitingSync = false;
    }
    switch (m.type) {
      case 'Query': {
        const sql = m.body().sql;
        this.push({ kind: 'query', sql, sensitive: SENSITIVE.test(sql), idx: 0, start: this.s.now(), rows: 0, done: false });
        return;
      }
      case 'Parse': {
        const { name, sql } = m.body();
        const stmt = statementInfo(sql, SENSITIVE.test(sql), this.s.maxLength);
        this.statements.set(name, stmt, stmt.sql.length);
        this.push({ kind: 'parse', stmt, start: this.s.now() });
        return;
      }
      case 'Bind': {
        const b = m.body();
        const portal: Portal = { stmt: this.statements.get(b.statement), params: b.params.length };
        this.portals.set(b.portal, portal, 1);
        this.push({ kind: 'bind', ...portal, start: this.s.now() });
        return;
      }
      case 'Execute': {
        const portal = this.portals.get(m.body().portal);
        this.push({ kind: 'execute', stmt: portal?.stmt, params: portal?.params ?? 0, start: this.s.now(), rows: 0 });
        return;
      }
      case 'Describe':
        return this.push({ kind: 'describe' });
      case 'Close':
        return this.push({ kind: 'close' });
      case 'Sync':
        return this.push({ kind: 'sync' });
      case 'FunctionCall':
        return this.push({ kind: 'call' });
      default:
        return; // Flush, CopyData/CopyDone/CopyFail (part of the current command), Terminate, unknown
    }
  }

  fromBackend(m: BackendMessage): void {
    const head = this.peek();
    switch (m.type) {
      case 'DataRow':
        if (head?.kind === 'execute' || head?.kind === 'query') head.rows++;
        return;
      case 'ParseComplete':
        return this.popIf('parse');
      case 'BindComplete':
        return this.popIf('bind');
      case 'CloseComplete':
        return this.popIf('close');
      case 'NoData':
      case 'RowDescription': // also sent inside a simple query: popIf ignores it there
        return this.popIf('describe');
      case 'CommandComplete':
      case 'EmptyQueryResponse':
      case 'PortalSuspended': {
        const tag = m.type === 'CommandComplete' ? m.body().tag : undefined;
        if (head?.kind === 'query') this.queryStep(head, { tag });
        else if (head?.kind === 'execute') {
          this.shift();
          this.report(head.stmt, head.params, head.start, head.rows, { tag, suspended: m.type === 'PortalSuspended' });
        }
        return;
      }
      case 'ErrorResponse':
        return this.onError(m.body().code);
      case 'ReadyForQuery':
        return this.onReady();
      default:
        return;
    }
  }

  private onError(sqlstate: string | undefined): void {
    const head = this.peek();
    if (!head) return;
    switch (head.kind) {
      case 'query':
        // The rest of a multi-statement query is not run; ReadyForQuery follows.
        if (!head.done) this.queryStep(head, { sqlstate });
        head.done = true;
        return;
      case 'sync': // e.g. the implicit COMMIT at Sync failed; ReadyForQuery follows
      case 'call':
        return;
      case 'parse':
        this.report(head.stmt, 0, head.start, 0, { sqlstate });
        break;
      case 'bind':
      case 'execute':
        this.report(head.stmt, head.params, head.start, 0, { sqlstate });
        break;
      case 'describe':
      case 'close':
        break;
    }
    // Extended protocol: the backend discards everything up to the next Sync.
    while (this.head < this.queue.length && this.queue[this.head]!.kind !== 'sync') this.shift();
    if (this.head >= this.queue.length) {
      this.reset();
      this.awaitingSync = true;
    }
  }

  private onReady(): void {
    for (let i = this.head; i < this.queue.length; i++) {
      if (TERMINATORS.has(this.queue[i]!.kind)) {
        for (let n = i - this.head + 1; n > 0; n--) this.shift();
        return;
      }
    }
  }

  /** One statement of a simple query finished; the next one is timed from here. */
  private queryStep(q: Extract<Pending, { kind: 'query' }>, outcome: { tag?: string; sqlstate?: string }): void {
    q.pieces ??= splitStatements(q.sql, this.scs());
    const text = q.pieces[q.idx] ?? q.sql.trim();
    q.idx++;
    const stmt = statementInfo(text, q.sensitive, this.s.maxLength);
    const end = this.report(stmt, 0, q.start, q.rows, outcome);
    q.start = end;
    q.rows = 0;
  }

  /** Builds and emits one event unless it is faster than `slowMs`; returns the clock reading. */
  private report(
    stmt: StatementInfo | undefined,
    params: number,
    start: number,
    rowsSent: number,
    outcome: { tag?: string; sqlstate?: string; suspended?: boolean },
  ): number {
    const end = this.s.now();
    const duration = end - start;
    if (duration < this.s.slowMs) return end;
    const statement = stmt ? this.textOf(stmt) : '';
    const event: QueryEvent = {
      event: 'query',
      session: this.ctx.id,
      user: this.ctx.user,
      database: this.ctx.database,
      statement,
      params,
      duration_ms: Math.round(duration * 1000) / 1000,
    };
    const tag = outcome.tag !== undefined ? parseCommandTag(outcome.tag) : undefined;
    const rows = tag?.rows ?? (rowsSent > 0 || outcome.suspended ? rowsSent : undefined);
    if (rows !== undefined) event.rows = rows;
    if (outcome.sqlstate !== undefined) event.sqlstate = outcome.sqlstate;
    const command = tag?.command || firstKeyword(statement);
    if (command) event.command = command;
    try {
      if (this.s.emit) this.s.emit(event);
      else this.ctx.log.info('query', { ...event });
    } catch (err) {
      this.ctx.log.warn('query-log: emit failed', { error: (err as Error)?.message ?? String(err) });
    }
    return end;
  }

  private textOf(stmt: StatementInfo): string {
    const mark = stmt.cut ? '…' : '';
    if (!this.s.redact && !stmt.sensitive) return stmt.sql + mark;
    // A literal cut short is unterminated, and so hidden to the end.
    stmt.redacted ??= redactSql(stmt.sql, { standardConformingStrings: this.scs() }).trim() + mark;
    return stmt.redacted;
  }

  private scs(): boolean {
    return this.ctx.serverParams.get('standard_conforming_strings') !== 'off';
  }

  private push(p: Pending): void {
    if (this.queue.length - this.head >= MAX_PENDING) {
      this.ctx.log.warn('query-log: too many requests in flight, tracking restarted');
      this.reset();
    }
    this.queue.push(p);
  }

  private peek(): Pending | undefined {
    return this.queue[this.head];
  }

  private shift(): void {
    this.queue[this.head++] = undefined as unknown as Pending;
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
  }

  private popIf(kind: Pending['kind']): void {
    if (this.peek()?.kind === kind) this.shift();
  }
}

/** A Map bounded in entries and in a weight total; the oldest entries are dropped first. */
class BoundedMap<V> {
  private readonly map = new Map<string, { value: V; weight: number }>();
  private total = 0;

  constructor(
    private readonly maxEntries: number,
    private readonly maxWeight: number,
  ) {}

  get(key: string): V | undefined {
    return this.map.get(key)?.value;
  }

  set(key: string, value: V, weight: number): void {
    const old = this.map.get(key);
    if (old) {
      this.total -= old.weight;
      this.map.delete(key);
    }
    this.map.set(key, { value, weight });
    this.total += weight;
    for (const [k, e] of this.map) {
      if (this.map.size <= this.maxEntries && this.total <= this.maxWeight) break;
      if (k === key) break;
      this.map.delete(k);
      this.total -= e.weight;
    }
  }
}

function statementInfo(sql: string, sensitive: boolean, max: number): StatementInfo {
  return sql.length > max ? { sql: sql.slice(0, max), cut: true, sensitive } : { sql, cut: false, sensitive };
}

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

export interface RedactOptions {
  /**
   * The session's `standard_conforming_strings` (default on, as since PostgreSQL 9.1): when off,
   * backslashes escape quotes inside '…' literals too.
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
export function redactSql(sql: string, opts: RedactOptions = {}): string {
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
export function splitStatements(sql: string, scs = true): string[] {
  const out: string[] = [];
  let start = 0;
  let significant = false;
  let first: string | undefined;
  let prevWord: string | undefined;
  let atomicDepth = 0;
  lex(sql, scs, (kind, s, e) => {
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

/** The first keyword of a statement, upper-cased (`WITH`, `SELECT`…), skipping comments and parentheses. */
function firstKeyword(sql: string): string | undefined {
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
