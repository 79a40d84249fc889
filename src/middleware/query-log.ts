import { tap } from 'rxjs';
import type { Middleware, MiddlewareContext, SessionHandlers } from '../pipeline/middleware.js';
import type { BackendMessage, FrontendMessage } from '../protocol/index.js';
import { firstKeyword, parseCommandTag, redactSql, splitStatements } from '../sql/text.js';

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
    q.pieces ??= splitStatements(q.sql, { standardConformingStrings: this.scs() });
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
