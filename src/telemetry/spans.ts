/**
 * Tracing vocabulary and the span helpers the session calls.
 *
 * Every span and attribute name pgward emits is a constant here (DESIGN "Telemetry": one place).
 * Attribute names follow the stable OpenTelemetry database conventions (`db.system.name`,
 * `db.namespace`, `db.query.text`, …; `db.user` no longer exists) and pgward's own live under
 * `pgward.*`.
 *
 * Only `@opentelemetry/api` is used: with no SDK registered (tracing off) the tracer is the API's
 * no-op tracer, a session costs one non-recording span object, and every statement, auth and
 * connect call on a non-recording session returns a shared no-op handle without parsing anything.
 * Nothing here ever records a credential: callers pass SQL already redacted, and auth reasons are
 * mapped onto a fixed set ({@link normalizeAuthReason}).
 */
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Span, type TimeInput } from '@opentelemetry/api';
import { statementSummary } from './statement-name.js';
import { parseTraceparent } from './traceparent.js';

/** Instrumentation scope of every pgward span. */
export const TRACER_NAME = 'pgward';

/** Span names (statement spans are named from the statement, see {@link statementSummary}). */
export const SPAN = {
  session: 'pgward.session',
  auth: 'pgward.auth',
  backendConnect: 'pgward.backend.connect',
} as const;

/** Attribute names. */
export const ATTR = {
  dbSystemName: 'db.system.name',
  dbNamespace: 'db.namespace',
  dbQueryText: 'db.query.text',
  dbQuerySummary: 'db.query.summary',
  dbOperationName: 'db.operation.name',
  dbCollectionName: 'db.collection.name',
  dbResponseStatusCode: 'db.response.status_code',
  dbResponseReturnedRows: 'db.response.returned_rows',
  errorType: 'error.type',
  serverAddress: 'server.address',
  serverPort: 'server.port',
  clientAddress: 'client.address',
  clientPort: 'client.port',
  enduserId: 'enduser.id',
  authProvider: 'pgward.auth.provider',
  authResult: 'pgward.auth.result',
  authReason: 'pgward.auth.reason',
  backendTls: 'pgward.backend.tls',
  backendAuthMethod: 'pgward.backend.auth_method',
} as const;

/** `db.system.name` of every pgward span. */
export const DB_SYSTEM_NAME = 'postgresql';


// ---------------------------------------------------------------------------------------------
// Bounded vocabularies shared with the metrics (label values) and the spans (attribute values).

// `abandoned`: the client closed the connection while asked for credentials (psql's first try).
// `discovery`: an OAuth client asked where to get a token (the first half of its login).
export const AUTH_RESULTS = ['success', 'failure', 'error', 'abandoned', 'discovery'] as const;
export type AuthOutcome = (typeof AUTH_RESULTS)[number];

/**
 * Every auth reason a metric label or span attribute may carry. The jwt provider's fixed
 * refusal sentences ("token expired", …) map onto these by {@link normalizeAuthReason}.
 */
export const AUTH_REASONS = [
  'none',
  // jwt: TOKEN_FAILURE_REASONS of src/auth/jwt-verify.ts, snake_cased
  ...['malformed_token', 'token_too_large', 'token_expired', 'token_not_yet_valid', 'signature_invalid'] as const,
  ...['unknown_key_id', 'algorithm_not_allowed', 'audience_mismatch', 'issuer_mismatch', 'missing_exp_claim'] as const,
  'key_source_unavailable',
  // command provider and the rest
  ...['authenticator_refused', 'authenticator_failed', 'invalid_output', 'timeout', 'invalid_password'] as const,
  ...['no_password', 'no_route', 'client_gone', 'backend_refused', 'throttled', 'other'] as const,
  ...['oauth_discovery', 'malformed_bearer_token', 'client_auth_rule'] as const,
] as const;
export type AuthReason = (typeof AUTH_REASONS)[number];

const AUTH_REASON_SET: ReadonlySet<string> = new Set(AUTH_REASONS);

/** Maps free text ("token expired", "Token-Expired") onto {@link AUTH_REASONS}; anything else is `other`. */
export function normalizeAuthReason(reason: string | undefined): AuthReason {
  if (reason === undefined || reason === '') return 'none';
  if (AUTH_REASON_SET.has(reason)) return reason as AuthReason;
  if (reason.length > 64) return 'other';
  const key = reason.trim().toLowerCase().replace(/[^a-z0-9]+/g, '_').replace(/^_|_$/g, '');
  return AUTH_REASON_SET.has(key) ? (key as AuthReason) : 'other';
}

/** A configured name (provider, plugin) as a label value: kept when name-shaped, else `other`. */
export function boundedName(name: string): string {
  return /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/.test(name) ? name : 'other';
}

// ---------------------------------------------------------------------------------------------
// Spans.

export interface Peer {
  readonly address: string;
  readonly port: number;
}

/** A span that ends once; later calls are ignored. */
export interface Ending<T> {
  end(outcome?: T): void;
}

export interface AuthSpanEnd {
  result: AuthOutcome;
  /** Free text or a {@link AuthReason}; recorded normalized. */
  reason?: string;
}

export interface StatementEnd {
  /** SQLSTATE the statement ended with (`00000` or absent for success). */
  sqlstate?: string;
  /** Rows returned or affected, from the CommandComplete tag. */
  rows?: number;
  /** Set when the statement did not complete (connection lost…); a `sqlstate` property is used. */
  error?: unknown;
}

export interface ConnectSpanEnd {
  /** The authentication method the backend asked for (`scram-sha-256`, `md5`, `trust`…). */
  authMethod?: string;
  error?: unknown;
}

export type AuthSpan = Ending<AuthSpanEnd>;
export type ConnectSpan = Ending<ConnectSpanEnd>;
export type StatementSpan = Ending<StatementEnd>;

export interface SessionSpan {
  /** False when tracing is off or this session is not sampled: then every method is a no-op. */
  readonly recording: boolean;
  /** The context of the session span (parent of its children), for code that starts its own spans. */
  readonly context: Context;
  /** Starts `pgward.auth` for one provider; end it with the result. */
  auth(provider: string): AuthSpan;
  /** After authentication: the claim subject as `enduser.id` and the database as `db.namespace`. */
  identify(who: { identity?: string; database?: string }): void;
  /** Starts `pgward.backend.connect`; the host and port become `server.*` of later statements too. */
  backendConnect(host: string, port: number, opts?: { tls?: boolean }): ConnectSpan;
  /** Starts one statement span. `sql` must be redacted already; `operation` overrides the first keyword. */
  statement(sql: string, operation?: string): StatementSpan;
  /** Ends the session span; an error sets its status. */
  end(error?: unknown): void;
}

const NOOP_ENDING: Ending<never> = { end() {} };

const NOOP_SESSION: SessionSpan = {
  recording: false,
  context: ROOT_CONTEXT,
  auth: () => NOOP_ENDING,
  identify() {},
  backendConnect: () => NOOP_ENDING,
  statement: () => NOOP_ENDING,
  end() {},
};

/**
 * Starts the `pgward.session` span of one client connection (kind SERVER), as a child of the
 * client's traceparent when it passed a valid one (see {@link traceparentFromStartup}).
 * `startTime` lets the session start the span when the startup packet (and so the traceparent)
 * has arrived while dating it from the accept.
 */
export function startSessionSpan(client: Peer, parent?: string, startTime?: TimeInput): SessionSpan {
  const tracer = trace.getTracer(TRACER_NAME);
  const remote = parseTraceparent(parent);
  const parentContext = remote ? trace.setSpanContext(ROOT_CONTEXT, remote) : ROOT_CONTEXT;
  const common: Attributes = {
    [ATTR.dbSystemName]: DB_SYSTEM_NAME,
    [ATTR.clientAddress]: client.address,
    [ATTR.clientPort]: client.port,
  };
  const span = tracer.startSpan(SPAN.session, { kind: SpanKind.SERVER, attributes: common, startTime }, parentContext);
  if (!span.isRecording()) {
    span.end();
    return NOOP_SESSION;
  }
  const context = trace.setSpan(parentContext, span);
  let ended = false;

  const child = (name: string, kind: SpanKind, attributes: Attributes): Span =>
    tracer.startSpan(name, { kind, attributes }, context);

  return {
    recording: true,
    context,
    auth(provider) {
      const s = child(SPAN.auth, SpanKind.INTERNAL, { [ATTR.authProvider]: boundedName(provider) });
      return once((outcome?: AuthSpanEnd) => {
        const result = outcome?.result ?? 'error';
        const reason = normalizeAuthReason(outcome?.reason ?? (result === 'success' ? undefined : 'other'));
        s.setAttributes({ [ATTR.authResult]: result, [ATTR.authReason]: reason });
        if (result !== 'success') {
          s.setAttribute(ATTR.errorType, reason);
          s.setStatus({ code: SpanStatusCode.ERROR, message: reason });
        }
        s.end();
      });
    },
    identify({ identity, database }) {
      const attrs: Attributes = {};
      if (identity !== undefined) attrs[ATTR.enduserId] = identity;
      if (database !== undefined) attrs[ATTR.dbNamespace] = database;
      Object.assign(common, attrs);
      span.setAttributes(attrs);
    },
    backendConnect(host, port, opts) {
      const server: Attributes = { [ATTR.serverAddress]: host, [ATTR.serverPort]: port };
      Object.assign(common, server);
      span.setAttributes(server);
      const attrs: Attributes = { ...server };
      if (opts?.tls !== undefined) attrs[ATTR.backendTls] = opts.tls;
      const s = child(SPAN.backendConnect, SpanKind.CLIENT, attrs);
      return once((outcome?: ConnectSpanEnd) => {
        if (outcome?.authMethod) s.setAttribute(ATTR.backendAuthMethod, outcome.authMethod);
        if (outcome?.error !== undefined) setError(s, outcome.error);
        s.end();
      });
    },
    statement(sql, operation) {
      const { operation: op, collection, summary } = statementSummary(sql, operation);
      const attrs: Attributes = { ...common, [ATTR.dbQueryText]: sql };
      if (op !== undefined) attrs[ATTR.dbOperationName] = op;
      if (collection !== undefined) attrs[ATTR.dbCollectionName] = collection;
      if (summary !== undefined) attrs[ATTR.dbQuerySummary] = summary;
      const s = child(summary ?? DB_SYSTEM_NAME, SpanKind.CLIENT, attrs);
      return once((outcome?: StatementEnd) => {
        if (outcome?.rows !== undefined) s.setAttribute(ATTR.dbResponseReturnedRows, outcome.rows);
        const state = outcome?.sqlstate ?? sqlstateOf(outcome?.error);
        if (state !== undefined && state !== '00000') s.setAttribute(ATTR.dbResponseStatusCode, state);
        if (outcome?.error !== undefined) setError(s, outcome.error);
        else if (state !== undefined && isErrorState(state)) {
          s.setAttribute(ATTR.errorType, state);
          s.setStatus({ code: SpanStatusCode.ERROR });
        }
        s.end();
      });
    },
    end(error) {
      if (ended) return;
      ended = true;
      if (error !== undefined) setError(span, error);
      span.end();
    },
  };
}

function once<T>(fn: (outcome?: T) => void): Ending<T> {
  let done = false;
  return {
    end(outcome?: T) {
      if (done) return;
      done = true;
      fn(outcome);
    },
  };
}

/** Classes 00 (success), 01 (warning) and 02 (no data) are not errors. */
function isErrorState(sqlstate: string): boolean {
  return !/^0[012]/.test(sqlstate);
}

function sqlstateOf(err: unknown): string | undefined {
  const s = (err as { sqlstate?: unknown } | undefined)?.sqlstate;
  return typeof s === 'string' && /^[0-9A-Z]{5}$/.test(s) ? s : undefined;
}

/**
 * Error status and `error.type` (the SQLSTATE when there is one, else the error's class name).
 * The message is the error's own text, which pgward keeps free of secrets; no stack is recorded.
 */
function setError(span: Span, err: unknown): void {
  const sqlstate = sqlstateOf(err);
  const type = sqlstate ?? (err instanceof Error ? err.name : typeof err === 'string' ? 'error' : '_OTHER');
  const message = err instanceof Error ? err.message : typeof err === 'string' ? err : undefined;
  if (sqlstate !== undefined) span.setAttribute(ATTR.dbResponseStatusCode, sqlstate);
  span.setAttribute(ATTR.errorType, type);
  span.setStatus({ code: SpanStatusCode.ERROR, message: message?.slice(0, 256) });
}
