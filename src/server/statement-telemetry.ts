import type { RelayObserver, Session } from '../pipeline/index.js';
import {
  BACKEND_MEANINGS,
  backendFlags,
  BE_ENDS_ERROR,
  BE_ENDS_OK,
  BE_READY,
  FE_STARTS_STATEMENT,
  frontendFlags,
  type BackendMessage,
  type BackendType,
  type FrontendMessage,
} from '../protocol/index.js';
import { commandTagOf, redactSql } from '../sql/text.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { SessionSpan, StatementSpan } from '../telemetry/spans.js';

/** Where a session keeps its span for the telemetry middleware. */
export const SESSION_SPAN = 'pgward.session-span';

const STATEMENT_COUNT = 'pgward.statement-count';
const NOTHING_TO_SYNC = (): void => {};

/** A session's statements so far; `sync` first hands in what the native carrier measured but has not reported yet. */
interface StatementCount {
  n: number;
  sync(): void;
}

/** The session's statement counter, made on first use (the relay's observer and the console count into it). */
export function statementCounter(session: Session): StatementCount {
  let c = session.attributes.get(STATEMENT_COUNT) as StatementCount | undefined;
  if (!c) session.attributes.set(STATEMENT_COUNT, (c = { n: 0, sync: NOTHING_TO_SYNC }));
  return c;
}

/** How many statements the session ran, or undefined when nothing counts them (no metrics, tracing or console). */
export function statementsOf(session: Session): number | undefined {
  const c = session.attributes.get(STATEMENT_COUNT) as StatementCount | undefined;
  if (!c) return undefined;
  c.sync();
  return c.n;
}

/** The backend messages that end statements (and ReadyForQuery, which ends those skipped), from the protocol table. */
const STATEMENT_ENDS = (Object.keys(BACKEND_MEANINGS) as BackendType[]).filter((t) => BACKEND_MEANINGS[t].endsStatement || BACKEND_MEANINGS[t].ready);

/** What a recording session's observer sees: one object for every session, so its carrier wants are made once (see relay.ts). */
const STATEMENT_MESSAGES: RelayObserver['messages'] = { frontend: ['Query', 'Parse', 'Bind', 'Execute'], backend: STATEMENT_ENDS };

interface Pending {
  started: number;
  span: StatementSpan;
}

/**
 * Statement metrics and spans for every session, whether or not `query-log` is configured. With
 * tracing off (or the session unsampled) only each statement's duration and outcome count, and
 * the carrier measures them (in C on the native carrier). For a recording span it sees the
 * statements' messages: what the backend is actually asked (after every middleware) and what it
 * answers; statement text is decoded and redacted for the span.
 */
export function statementTelemetry(metrics: Metrics): (session: Session) => RelayObserver {
  return (session) => {
    const span = session.attributes.get(SESSION_SPAN) as SessionSpan | undefined;
    const count = statementCounter(session);
    if (span?.recording !== true) {
      return {
        timings: {
          statement: (seconds, ok) => {
            count.n++;
            metrics.query(seconds, ok);
          },
          pull: (drain) => {
            // The console reads one session's count between scrapes: it drains that session first.
            count.sync = drain;
            const stop = metrics.beforeStatementScrape(drain);
            return () => {
              // A module-level no-op: one made here would keep this scope, and the carrier, alive.
              count.sync = NOTHING_TO_SYNC;
              stop();
            };
          },
        },
      };
    }
    const pending: Pending[] = [];
    let head = 0;
    const statements = new Map<string, string>();
    const portals = new Map<string, string>();

    const finish = (m: BackendMessage, ok: boolean) => {
      const p = pending[head];
      if (!p) return;
      pending[head++] = undefined as unknown as Pending;
      count.n++;
      metrics.query((performance.now() - p.started) / 1000, ok);
      if (m.type === 'ErrorResponse') p.span.end({ sqlstate: m.body().code });
      else if (m.type === 'CommandComplete') p.span.end({ rows: commandTagOf(m.body().tag).rows });
      else p.span.end({});
    };

    const toBackend = (m: FrontendMessage) => {
      if (m.type === 'Parse') statements.set(m.body().name, m.body().sql);
      else if (m.type === 'Bind') portals.set(m.body().portal, statements.get(m.body().statement) ?? '');
      if (!(frontendFlags[m.code]! & FE_STARTS_STATEMENT)) return;
      const sql = m.type === 'Query' ? m.body().sql : m.type === 'Execute' ? (portals.get(m.body().portal) ?? '') : '';
      pending.push({ started: performance.now(), span: span.statement(redactSql(sql)) });
    };

    const fromBackend = (m: BackendMessage) => {
      const flags = backendFlags[m.code]!;
      if (flags & BE_ENDS_OK) finish(m, true);
      else if (flags & BE_ENDS_ERROR) finish(m, false);
      else if (flags & BE_READY) {
        // Executes skipped after an error never ran: close their spans, count nothing.
        for (let i = head; i < pending.length; i++) pending[i]!.span.end({ error: new Error('not executed: an earlier message in the batch failed') });
        pending.length = 0;
        head = 0;
      }
    };
    return { messages: STATEMENT_MESSAGES, toBackend, fromBackend };
  };
}
