/**
 * deny-statements: the plugin authors' template (walked through in plugins/README.md).
 *
 * It registers one middleware, `deny-statements`, which refuses every statement that matches a
 * configured regular expression with SQLSTATE 42501 (insufficient_privilege):
 *
 * ```yaml
 * plugins: [./plugins/deny-statements]
 * pipeline:
 *   - deny-statements: { pattern: "^\\s*drop\\b", message: "DROP is not allowed here" }
 * ```
 *
 * It shows the two ways a middleware can answer for the backend:
 *  1. answer the client itself with `ctx.sendToClient` and drop the message — done when the
 *     session is idle (no transaction, nothing else in flight), so nothing can go out of order;
 *  2. rewrite the message into one that makes PostgreSQL raise the same error — done otherwise,
 *     so the backend's transaction fails exactly as it would have (the next statement gets
 *     25P02) and its replies keep their order.
 *
 * A pattern is a convenience, not a security boundary: SQL can reach the same effect in many ways
 * (functions, DO blocks, dynamic SQL). Use PostgreSQL privileges for security.
 *
 * pgward's API comes only from its public entry point (`pgward/plugin` for a published plugin).
 */
import { map, mergeMap } from 'rxjs';
import {
  be,
  definePlugin,
  fe,
  PgError,
  splitStatements,
  SqlState,
  withoutComments,
  type BackendMessage,
  type FrontendMessage,
  type Middleware,
  type MiddlewareContext,
  type SessionHandlers,
} from '../../src/index.js';

/** The middleware's options, as written under `deny-statements:` in `pipeline:`. */
interface Options {
  /** Regular expression source, tested against each statement (comments removed, trimmed). */
  pattern: string;
  /** RegExp flags; default `i`. `g` and `y` are refused (they make `test` stateful). */
  flags?: string;
  /** The error message the client gets. */
  message?: string;
}

const DEFAULT_MESSAGE = 'statement not allowed by the deny-statements policy';

/** Checks the options once, when the pipeline is built: a mistake stops `pgward start` with a clear message. */
function parseOptions(raw: unknown): { pattern: RegExp; message: string } {
  const fail = (why: string) => new Error(`deny-statements: ${why}`);
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw fail('options must be a mapping, e.g. { pattern: "^\\\\s*drop\\\\b" }');
  const unknown = Object.keys(raw).filter((k) => !['pattern', 'flags', 'message'].includes(k));
  if (unknown.length > 0) throw fail(`unknown option(s) ${unknown.join(', ')} (known: pattern, flags, message)`);
  const { pattern, flags = 'i', message = DEFAULT_MESSAGE } = raw as Partial<Options>;
  if (typeof pattern !== 'string' || pattern === '') throw fail('option "pattern" (a regular expression) is required');
  if (typeof flags !== 'string' || /[gy]/.test(flags)) throw fail('option "flags" must be a string of RegExp flags without g or y');
  // (NUL cannot travel in a protocol string; "$deny$" would end the DO block's quoting, see raiseSql.)
  if (typeof message !== 'string' || message === '' || /\0|\$deny\$/.test(message)) throw fail('option "message" must be a non-empty string without NUL or "$deny$"');
  try {
    return { pattern: new RegExp(pattern, flags), message };
  } catch (err) {
    throw fail(`invalid pattern: ${(err as Error).message}`);
  }
}

export default definePlugin({
  name: 'deny-statements',
  version: '0.1.0',
  pgward: '>=0.1',
  pluginApi: 1,
  setup(api) {
    // Registration is only possible here, during setup. The factory runs once per pipeline entry
    // (at start and on each reload); `session` runs once per client session.
    api.registerMiddleware('deny-statements', (raw): Middleware => {
      const options = parseOptions(raw);
      return { name: 'deny-statements', session: (ctx) => denySession(ctx, options) };
    });
  },
});

function denySession(ctx: MiddlewareContext, options: { pattern: RegExp; message: string }): SessionHandlers {
  /** pgward's own splitter reads the SQL as PostgreSQL will (quotes, dollar quotes, nested comments…). */
  const denied = (sql: string) => {
    const text = { standardConformingStrings: ctx.serverParams.get('standard_conforming_strings') !== 'off' };
    return splitStatements(sql, text).some((s) => options.pattern.test(withoutComments(s, text)));
  };
  const error = () => be.errorResponse(new PgError('ERROR', SqlState.InsufficientPrivilege, options.message).toFields());
  // What PostgreSQL runs instead of a denied statement when it must raise the error itself.
  const raiseSql = `DO $deny$BEGIN RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = ${quoteLiteral(options.message)}; END$deny$`;

  /** Self-answering is safe only with no transaction open and no earlier request still unanswered. */
  const idle = (requestsIncludingThis: number) =>
    ctx.state.transactionStatus === 'I' && ctx.state.unanswered === requestsIncludingThis;

  let skipUntilSync = false; // we answered a denied Parse: the rest of its batch is dropped
  let batchOpen = false; // extended-protocol messages went to the backend since the last Sync
  const rewritten = new Set<string>(); // prepared statements we replaced with raiseSql

  /** One client message in, the messages to pass on out (none = dropped). */
  function onClientMessage(m: FrontendMessage): FrontendMessage[] {
    if (skipUntilSync) {
      // As PostgreSQL does after an error in an extended-protocol batch: ignore all until Sync,
      // then answer the Sync with ReadyForQuery.
      if (m.type === 'Sync') {
        skipUntilSync = false;
        ctx.sendToClient(be.readyForQuery(ctx.state.transactionStatus));
      }
      return m.type === 'Terminate' ? [m] : [];
    }
    switch (m.type) {
      case 'Query': {
        // body() decodes lazily: messages nobody inspects are relayed as raw bytes.
        if (!denied(m.body().sql)) return [m];
        if (idle(1)) {
          ctx.log.info('statement denied', { protocol: 'simple', answered: 'by proxy' });
          ctx.sendToClient(error(), be.readyForQuery('I'));
          return [];
        }
        ctx.log.info('statement denied', { protocol: 'simple', answered: 'by backend' });
        return [fe.query(raiseSql)];
      }
      case 'Parse': {
        const { name, sql } = m.body();
        const firstOfBatch = !batchOpen;
        batchOpen = true;
        if (!denied(sql)) {
          rewritten.delete(name);
          return [m];
        }
        if (firstOfBatch && idle(0)) {
          // Like PostgreSQL's own Parse error: ErrorResponse now, ReadyForQuery at the Sync.
          ctx.log.info('statement denied', { protocol: 'extended', answered: 'by proxy' });
          ctx.sendToClient(error());
          skipUntilSync = true;
          batchOpen = false;
          return [];
        }
        // Prepared as the raising DO block: it fails when executed, in its place in the batch.
        ctx.log.info('statement denied', { protocol: 'extended', answered: 'by backend' });
        rewritten.add(name);
        return [fe.parse({ name, sql: raiseSql, paramTypes: [] })];
      }
      case 'Bind': {
        batchOpen = true;
        const bind = m.body();
        // The DO block takes no parameters: drop the client's values, or PostgreSQL refuses the Bind.
        return rewritten.has(bind.statement) ? [fe.bind({ ...bind, paramFormats: [], params: [] })] : [m];
      }
      case 'Describe':
      case 'Execute':
      case 'Close':
      case 'Flush':
        batchOpen = true;
        return [m];
      case 'Sync':
        batchOpen = false;
        return [m];
      default:
        return [m];
    }
  }

  /** PostgreSQL adds "PL/pgSQL function inline_code_block" context to our raised error; drop it. */
  function onBackendMessage(m: BackendMessage): BackendMessage {
    if (m.type !== 'ErrorResponse') return m;
    const f = m.body();
    if (f.code !== SqlState.InsufficientPrivilege || f.message !== options.message || !f.where?.includes('inline_code_block')) return m;
    return error();
  }

  return {
    // Frontend messages pass the pipeline first to last; mergeMap lets one message become 0..n.
    frontend: mergeMap(onClientMessage),
    backend: map(onBackendMessage),
  };
}

/** A string literal that reads the same whatever `standard_conforming_strings` is. */
function quoteLiteral(s: string): string {
  return `E'${s.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}
