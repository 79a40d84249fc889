import type { RelayObserver, Session } from '../pipeline/index.js';
import type { BackendMessage, FrontendMessage } from '../protocol/index.js';
import { parseCommandTag, redactSql } from '../sql/text.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { SessionSpan, StatementSpan } from '../telemetry/spans.js';

/** Where a session keeps its span for the telemetry middleware. */
export const SESSION_SPAN = 'pgward.session-span';

const STATEMENT_COUNT = 'pgward.statement-count';
const NOTHING_TO_SYNC = (): void => {};

/** A session's statements so far; `sync` first hands in what the native relay measured but has not reported yet. */
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

const Q = 0x51; // Query
const P = 0x50; // Parse
const B = 0x42; // Bind
const E = 0x45; // Execute (frontend) / ErrorResponse (backend)
const C = 0x43; // CommandComplete
const I = 0x49; // EmptyQueryResponse
const s = 0x73; // PortalSuspended
const Z = 0x5a; // ReadyForQuery

interface Pending {
  started: number;
  span?: StatementSpan;
}

/**
 * Statement metrics and spans for every session, whether or not `query-log` is configured. With
 * tracing off (or the session unsampled) it works from message codes alone; statement text is
 * decoded and redacted only for a recording span. It observes the relay rather than being a
 * chain stage: it sees what the backend is actually asked (after every middleware) and what it
 * answers, at the cost of a function call per message.
 */
export function statementTelemetry(metrics: Metrics): (session: Session) => RelayObserver {
  return (session) => {
    const span = session.attributes.get(SESSION_SPAN) as SessionSpan | undefined;
    const tracing = span?.recording === true;
    const pending: Pending[] = [];
    let head = 0;
    const statements = new Map<string, string>();
    const portals = new Map<string, string>();
    const count = statementCounter(session);

    const start = (sql?: string) => pending.push({ started: performance.now(), span: sql !== undefined ? span!.statement(redactSql(sql)) : undefined });
    const finish = (m: BackendMessage, ok: boolean) => {
      const p = pending[head];
      if (!p) return;
      pending[head++] = undefined as unknown as Pending;
      count.n++;
      metrics.query((performance.now() - p.started) / 1000, ok);
      if (p.span) {
        if (m.type === 'ErrorResponse') p.span.end({ sqlstate: m.body().code });
        else if (m.type === 'CommandComplete') p.span.end({ rows: parseCommandTag(m.body().tag).rows });
        else p.span.end({});
      }
    };

    const onClient = (m: FrontendMessage) => {
      switch (m.code) {
        case Q:
          start(tracing && m.type === 'Query' ? m.body().sql : undefined);
          break;
        case E:
          start(tracing && m.type === 'Execute' ? portals.get(m.body().portal) ?? '' : undefined);
          break;
        case P:
          if (tracing && m.type === 'Parse') statements.set(m.body().name, m.body().sql);
          break;
        case B:
          if (tracing && m.type === 'Bind') portals.set(m.body().portal, statements.get(m.body().statement) ?? '');
          break;
      }
    };

    const onBackend = (m: BackendMessage) => {
      switch (m.code) {
        case C:
        case I:
        case s:
          finish(m, true);
          break;
        case E:
          finish(m, false);
          break;
        case Z:
          // Executes skipped after an error never ran: close their spans, count nothing.
          for (let i = head; i < pending.length; i++) pending[i]!.span?.end({ error: new Error('not executed: an earlier message in the batch failed') });
          pending.length = 0;
          head = 0;
          break;
      }
    };
    if (tracing) return { toBackend: onClient, fromBackend: onBackend };
    // Without a recording span only durations and outcomes count: the native relay can measure those.
    return {
      toBackend: onClient,
      fromBackend: onBackend,
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
            // A module-level no-op: one made here would keep this scope, and the relay, alive.
            count.sync = NOTHING_TO_SYNC;
            stop();
          };
        },
        adopt: (ages) => {
          const now = performance.now();
          for (const age of ages) pending.push({ started: now - age * 1000 });
        },
      },
    };
  };
}
