import type { OperatorFunction } from 'rxjs';
import type { BackendMessage, BackendType, FrontendMessage, FrontendType, PgError, TransactionStatus } from '../protocol/index.js';

export type { BackendMessage, BackendType, FrontendMessage, FrontendType };

/** Where a session is in its life; `relay` is the only phase middleware streams see. */
export type SessionPhase = 'negotiating' | 'authenticating' | 'connecting' | 'relay' | 'closing' | 'closed';

/** What the session knows of its traffic, kept up to date by the pipeline itself. */
export interface SessionState {
  readonly phase: SessionPhase;
  /** From the last ReadyForQuery sent to the client: I idle, T in a transaction, E failed transaction. */
  readonly transactionStatus: TransactionStatus;
  /** Query, Sync and FunctionCall messages the client sent that have no ReadyForQuery yet. */
  readonly unanswered: number;
  /** Idle means transaction status I and nothing unanswered: safe to close. */
  readonly idle: boolean;
  /** Runs `fn` now if idle, else as soon as the session becomes idle (once). */
  whenIdle(fn: () => void): void;
}

export interface Endpoint {
  readonly address: string;
  readonly port: number;
  readonly tls: boolean;
}

export interface SessionLogger {
  debug(event: string, fields?: Record<string, unknown>): void;
  info(event: string, fields?: Record<string, unknown>): void;
  warn(event: string, fields?: Record<string, unknown>): void;
  error(event: string, fields?: Record<string, unknown>): void;
  /**
   * For an event logged again and again with the same leading fields (one a statement, say):
   * `fixed` is rendered once and each call renders only its own fields, writing the line
   * `info(event, { ...fixed, ...fields })` (at `level`) would. pgward's own loggers have it; a
   * logger made elsewhere (tests, embedding) may not: then call that method instead.
   */
  prepare?(level: 'debug' | 'info' | 'warn' | 'error', event: string, fixed: Record<string, unknown>): (fields: Record<string, unknown>) => void;
}

/** The per-session facts and controls every middleware receives. */
export interface SessionContext {
  /** Random id, also used in logs and spans. */
  readonly id: string;
  readonly client: Endpoint;
  /** Set once the backend is connected. */
  readonly backend?: Endpoint;
  /** The user and database the session runs as on the backend. */
  readonly user: string;
  readonly database: string;
  /** Who authenticated (e.g. the token subject); never a secret. */
  readonly identity: string;
  /** Startup parameters as the client sent them (read only). */
  readonly clientParams: ReadonlyMap<string, string>;
  /** ParameterStatus values the backend reported, kept current during the session. */
  readonly serverParams: ReadonlyMap<string, string>;
  readonly state: SessionState;
  readonly log: SessionLogger;
  /** Free-form per-session storage for middleware and plugins; key by your middleware name. */
  readonly attributes: Map<string, unknown>;
  /** Ends the session: a FATAL error is sent to the client first. */
  close(error?: PgError): void;
  /** Resolves when the session has closed. */
  readonly closed: Promise<void>;
}

/** The context a middleware gets: the session plus injection at its own place in the chain. */
export interface MiddlewareContext extends SessionContext {
  /**
   * Sends messages to the client as if they came from the backend at this middleware's place:
   * they pass the middleware listed before this one, not those after it.
   */
  sendToClient(...messages: BackendMessage[]): void;
  /** Sends messages toward the backend; they pass the middleware listed after this one. */
  sendToBackend(...messages: FrontendMessage[]): void;
  /**
   * When the message being handled was read from its socket, in `performance.now()`
   * milliseconds: for an observed message (see `MessageInterest.observeOnly`) that can be a few
   * milliseconds before it reaches the operators. Outside a carrier's delivery (an injection, a
   * timer, an operator that delays) it is simply `performance.now()`.
   */
  readTime(): number;
  /**
   * How many messages of `type` have passed the session in that direction so far, the message
   * being handled included, for a type some middleware of the pipeline counts
   * (`MessageInterest.count`); 0 for a type nobody counts. Every message of a counted type is
   * counted, whether it is only counted, observed or delivered, in the order read: a difference
   * of two readings is how many passed between the messages handled then.
   */
  messageCount(direction: 'frontend', type: FrontendType): number;
  messageCount(direction: 'backend', type: BackendType): number;
}

/** What a middleware does in one session. Omitted directions are passed through untouched. */
export interface SessionHandlers {
  /** Client → backend: may observe, change, drop or add messages. */
  frontend?: OperatorFunction<FrontendMessage, FrontendMessage>;
  /** Backend → client. */
  backend?: OperatorFunction<BackendMessage, BackendMessage>;
  /** Called once when the session ends, whatever the reason. */
  onClose?(): void;
}

/** Startup-phase hook input: the parameters about to be sent to the backend, changeable. */
export interface BackendStartup {
  readonly params: Map<string, string>;
  readonly ctx: Omit<SessionContext, 'backend' | 'serverParams'>;
}

/**
 * The message types a middleware's operators must see, by direction (type names as in
 * `FrontendMessage['type']` and `BackendMessage['type']`). A direction not declared means every
 * message of it; `[]` means none. Every other message passes this middleware by — on the native
 * carrier it never leaves C — and keeps its place in the stream: only a message delayed inside an
 * operator can be overtaken by one that passed by.
 *
 * With `observeOnly: true` the middleware only watches these types: they are forwarded by the
 * carrier at once, as if undeclared, and shown to its operators afterwards, in the order read
 * (on the native carrier in bulk, a few milliseconds later, see `MiddlewareContext.readTime`).
 * What the chain emits for an observed message is not written — it has already gone — so an
 * observer cannot change or drop it, nor answer it in its place; `sendToClient`/`sendToBackend`
 * still work, but what they send lands later than the message it replies to. A type that any
 * middleware of the pipeline declares without `observeOnly` (or that the relay reads itself:
 * ParameterStatus, and statement telemetry's types when tracing is on) is delivered in full for
 * all (held until the chain ran, the chain's output written), observers included.
 */
export interface MessageInterest {
  readonly frontend?: readonly FrontendType[];
  readonly backend?: readonly BackendType[];
  /** Only observe these types (see above); default false. */
  readonly observeOnly?: boolean;
  /**
   * Types only counted: forwarded by the carrier at once, like an undeclared type, and never
   * shown to an operator; all the middleware learns of them is how many passed, from
   * `MiddlewareContext.messageCount`, read when it handles a message it does see. Far cheaper
   * than observing a type that comes many times a statement (DataRow) just to count it: on the
   * native carrier no message is made for it in JavaScript. A type declared here and in
   * `frontend`/`backend` is shown as declared there, and counted too.
   */
  readonly count?: { readonly frontend?: readonly FrontendType[]; readonly backend?: readonly BackendType[] };
}

/**
 * A middleware: one instance per configured pipeline entry, shared by all sessions.
 * Hooks run in pipeline order:
 *  - `beforeBackendStartup` — after the client authenticated, before the backend is dialled;
 *    may edit the backend's startup parameters (e.g. remote-addr).
 *  - `session` — once per session when the relay starts; returns that session's stream handlers.
 * Throwing (or erroring a stream) ends that session only, with an ErrorResponse to its client.
 */
export interface Middleware {
  readonly name: string;
  /** What its `frontend` and `backend` operators must see (see `MessageInterest`); omitted: everything. */
  readonly messages?: MessageInterest;
  beforeBackendStartup?(startup: BackendStartup): void | Promise<void>;
  session?(ctx: MiddlewareContext): SessionHandlers | void;
}
