import type { BackendType, MiddlewareContext } from '../pipeline/middleware.js';
import { FRONTEND_MEANINGS, leadingCString, type BackendMessage, type FrontendMessage, type FrontendType } from '../protocol/index.js';
import { QueryReporter, type Settings } from './query-log-report.js';
import { RequestQueue } from './query-log-queue.js';
import { QueryShapes } from './query-log-shape.js';
import { isSensitive, queryStatements, StatementText } from './query-log-text.js';

interface Portal {
  readonly stmt: StatementText | undefined;
  readonly params: number;
}

/**
 * A simple Query still running: its statements complete one after another. Once answered it is
 * the session's next Query's (see `QueryTracker.queryRun`): every field is set anew then.
 */
interface QueryRun {
  kind: 'query';
  sql: string;
  sensitive: boolean;
  /** Split when the first statement completes. */
  statements: readonly StatementText[] | undefined;
  idx: number;
  start: number;
  rows: number;
  done: boolean;
}

/** A client request still waiting for its answer, in the order the backend will answer. */
type Pending =
  | QueryRun
  | { kind: 'parse'; stmt: StatementText; start: number }
  | { kind: 'bind'; stmt: StatementText | undefined; params: number; start: number }
  | { kind: 'execute'; stmt: StatementText | undefined; params: number; start: number; rows: number }
  | { kind: 'describe' | 'close' | 'sync' | 'call' };

/** The request each kind stands for; those the protocol table says await a ReadyForQuery end at one. */
const REQUESTS: Record<Pending['kind'], FrontendType> = {
  query: 'Query',
  parse: 'Parse',
  bind: 'Bind',
  execute: 'Execute',
  describe: 'Describe',
  close: 'Close',
  sync: 'Sync',
  call: 'FunctionCall',
};
const TERMINATORS = new Set((Object.keys(REQUESTS) as Pending['kind'][]).filter((k) => FRONTEND_MEANINGS[REQUESTS[k]].awaitsReady));

// Requests that carry nothing but their kind: one object each, shared.
const DESCRIBE: Pending = { kind: 'describe' };
const CLOSE: Pending = { kind: 'close' };
const SYNC: Pending = { kind: 'sync' };
const CALL: Pending = { kind: 'call' };

/** The backend types query-log only counts (`MessageInterest.count`): see `QueryTracker.catchUp`. */
export const COUNTED: readonly BackendType[] = ['DataRow', 'RowDescription', 'NoData'];

/** Bounds on what one session remembers (statements the client never closes, runaway pipelines). */
const MAX_STATEMENTS = 10_000;
const MAX_STATEMENT_CHARS = 1 << 20;
const MAX_PORTALS = 1_000;
const MAX_PENDING = 100_000;

/** One session's statements, followed through the messages `query-log` declares (see MESSAGES). */
export class QueryTracker {
  private readonly queue = new RequestQueue<Pending>();
  /** After an extended-protocol error with no Sync sent yet: the backend ignores all until Sync. */
  private awaitingSync = false;
  private readonly statements = new BoundedMap<StatementText>(MAX_STATEMENTS, MAX_STATEMENT_CHARS);
  private readonly portals = new BoundedMap<Portal>(MAX_PORTALS, Infinity);
  private readonly reporter: QueryReporter;
  private readonly shapes = new QueryShapes<readonly StatementText[]>();
  private failed = false;
  /** The counts of DataRow and of Describe answers (RowDescription, NoData) already accounted for. */
  private rowsSeen = 0;
  private describedSeen = 0;
  /** A Query answered (ReadyForQuery), no longer referred to: the object for the next one. */
  private spareRun: QueryRun | undefined;

  constructor(
    private readonly ctx: MiddlewareContext,
    private readonly s: Settings,
  ) {
    this.reporter = new QueryReporter(ctx, s);
  }

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
    this.queue.clear();
    this.awaitingSync = false;
  }

  fromClient(m: FrontendMessage): void {
    if (this.awaitingSync) {
      if (m.type !== 'Sync') return;
      this.awaitingSync = false;
    }
    switch (m.type) {
      case 'Query': {
        const sql = leadingCString(m); // body().sql, without a view of the message or a body kept with it
        this.push(this.queryRun(sql, this.s.now()));
        return;
      }
      case 'Parse': {
        const { name, sql } = m.body();
        const stmt = StatementText.of(sql, isSensitive(sql), this.s.maxLength);
        this.statements.set(name, stmt, stmt.length);
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
        return this.push(DESCRIBE);
      case 'Close':
        return this.push(CLOSE);
      case 'Sync':
        return this.push(SYNC);
      case 'FunctionCall':
        return this.push(CALL);
      default:
        return; // Flush, CopyData/CopyDone/CopyFail (part of the current command), Terminate, unknown
    }
  }

  /**
   * Accounts for the counted messages that came since the last backend message seen, all before
   * this one: Describe answers first (one that came after rows would have come after the
   * CommandComplete or PortalSuspended that ends them, a message seen), then the rows, which
   * belong to the request at the head then. A RowDescription of a simple query's result finds a
   * query at the head and is passed by, as before.
   */
  private catchUp(): void {
    const { ctx } = this;
    const described = ctx.messageCount('backend', 'RowDescription') + ctx.messageCount('backend', 'NoData');
    for (; this.describedSeen < described && this.peek()?.kind === 'describe'; this.describedSeen++) this.queue.shift();
    this.describedSeen = described;
    const rows = ctx.messageCount('backend', 'DataRow');
    const head = this.peek();
    if (head?.kind === 'execute' || head?.kind === 'query') head.rows += rows - this.rowsSeen;
    this.rowsSeen = rows;
  }

  fromBackend(m: BackendMessage): void {
    this.catchUp();
    const head = this.peek();
    switch (m.type) {
      case 'ParseComplete':
        return this.popIf('parse');
      case 'BindComplete':
        return this.popIf('bind');
      case 'CloseComplete':
        return this.popIf('close');
      case 'CommandComplete':
      case 'EmptyQueryResponse':
      case 'PortalSuspended': {
        const tag = m.type === 'CommandComplete' ? leadingCString(m) : undefined; // body().tag
        if (head?.kind === 'query') this.queryStep(head, tag, undefined);
        else if (head?.kind === 'execute') {
          this.queue.shift();
          this.reporter.report(head.stmt, head.params, head.start, head.rows, tag, undefined, m.type === 'PortalSuspended');
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
        if (!head.done) this.queryStep(head, undefined, sqlstate);
        head.done = true;
        return;
      case 'sync': // e.g. the implicit COMMIT at Sync failed; ReadyForQuery follows
      case 'call':
        return;
      case 'parse':
        this.reporter.report(head.stmt, 0, head.start, 0, undefined, sqlstate);
        break;
      case 'bind':
      case 'execute':
        this.reporter.report(head.stmt, head.params, head.start, 0, undefined, sqlstate);
        break;
      case 'describe':
      case 'close':
        break;
    }
    // Extended protocol: the backend discards everything up to the next Sync.
    while (this.queue.size > 0 && this.queue.peek()!.kind !== 'sync') this.queue.shift();
    if (this.queue.size === 0) {
      this.reset();
      this.awaitingSync = true;
    }
  }

  private onReady(): void {
    for (let i = 0; i < this.queue.size; i++) {
      const request = this.queue.at(i)!;
      if (TERMINATORS.has(request.kind)) {
        for (let n = i + 1; n > 0; n--) this.queue.shift();
        if (request.kind === 'query') this.spareRun = request;
        return;
      }
    }
  }

  /**
   * A Query's run, in the object of the last one answered when there is one: most sessions send
   * one Query at a time, and one object less a statement means fewer collections.
   */
  private queryRun(sql: string, start: number): QueryRun {
    const run = this.spareRun;
    if (!run) return { kind: 'query', sql, sensitive: isSensitive(sql), statements: undefined, idx: 0, start, rows: 0, done: false };
    this.spareRun = undefined;
    run.sql = sql;
    run.sensitive = isSensitive(sql);
    run.statements = undefined;
    run.idx = 0;
    run.start = start;
    run.rows = 0;
    run.done = false;
    return run;
  }

  /** One statement of a simple query finished; the next one is timed from here. */
  private queryStep(q: QueryRun, tag: string | undefined, sqlstate: string | undefined): void {
    q.statements ??= queryStatements(q.sql, q.sensitive, this.s.redact, this.s.maxLength, this.reporter.standardConformingStrings, this.shapes);
    // More completions than statements found: the split disagrees with the server; report it all.
    const stmt = q.statements[q.idx] ?? StatementText.of(q.sql.trim(), q.sensitive, this.s.maxLength);
    q.idx++;
    q.start = this.reporter.report(stmt, 0, q.start, q.rows, tag, sqlstate);
    q.rows = 0;
  }

  private push(p: Pending): void {
    if (this.queue.size >= MAX_PENDING) {
      this.ctx.log.warn('query-log: too many requests in flight, tracking restarted');
      this.reset();
    }
    this.queue.push(p);
  }

  private peek(): Pending | undefined {
    return this.queue.peek();
  }

  private popIf(kind: Pending['kind']): void {
    if (this.peek()?.kind === kind) this.queue.shift();
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
