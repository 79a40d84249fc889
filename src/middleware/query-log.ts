import { observer } from '../pipeline/lane-operators.js';
import type { Middleware, MiddlewareContext, SessionHandlers } from '../pipeline/middleware.js';
import type { QueryEvent, Settings } from './query-log-report.js';
import { COUNTED, QueryTracker } from './query-log-tracker.js';

export type { QueryEvent } from './query-log-report.js';

export interface QueryLogOptions {
  /** Replace literals in statement text by `?` (default true). `proxy_login(…)` literals are always redacted. */
  redact?: boolean;
  /** Report only statements that took at least this long (default 0: all). */
  slowMs?: number;
  /** Longest statement text reported; longer text is cut and ends with `…` (default 4096). */
  maxStatementLength?: number;
  /** Where events go; by default each session's logger, as an info line `query`. */
  emit?: (event: QueryEvent) => void;
  /**
   * Clock in milliseconds (tests); by default when each message was read (`ctx.readTime()`),
   * so durations hold although query-log sees the messages a little later.
   */
  now?: () => number;
}

/**
 * What the tracker reads (`fromClient`, `fromBackend`); every other message passes it by, on the
 * native carrier without leaving C. Only observed: query-log never changes a message, so none
 * waits for it (see `MessageInterest.observeOnly`). Only counted, never shown (COUNTED, see the
 * tracker's `catchUp`): DataRow, for the rows of a result whose command tag has no count (a
 * suspended portal, SHOW), and RowDescription and NoData, the answers to a Describe.
 */
const MESSAGES = {
  observeOnly: true,
  frontend: ['Query', 'Parse', 'Bind', 'Execute', 'Describe', 'Close', 'Sync', 'FunctionCall'],
  backend: ['ParseComplete', 'BindComplete', 'CloseComplete', 'CommandComplete', 'EmptyQueryResponse', 'PortalSuspended', 'ErrorResponse', 'ReadyForQuery'],
  count: { backend: [...COUNTED] },
} as const;

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
    messages: MESSAGES,
    session(ctx: MiddlewareContext): SessionHandlers {
      const tracker = new QueryTracker(ctx, opts.now ? settings : { ...settings, now: () => ctx.readTime() });
      return {
        frontend: observer(tracker.onClient),
        backend: observer(tracker.onBackend),
        onClose: () => tracker.reset(),
      };
    },
  };
}
