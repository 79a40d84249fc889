import { Subject, type Subscription } from 'rxjs';
import { buildChain, type ObservableChain } from '../pipeline/chain.js';
import { COUNTED, OBSERVED } from '../pipeline/wants.js';
import type { Endpoint, Middleware, MiddlewareContext, SessionContext } from '../pipeline/middleware.js';
import { Session } from '../pipeline/session.js';
import { asPgError, backendMessage, be, fe, frontendMessage, PgError, SqlState, type BackendMessage, type FrontendMessage } from '../protocol/index.js';
import { recordingLogger, type LogRecord } from './test-log.js';

const TERMINATE = 'X'.charCodeAt(0);
const ERROR_RESPONSE = 'E'.charCodeAt(0);

export interface TestSessionOptions {
  /** The user and database the session runs as (default `alice`, and the user's name). */
  user?: string;
  database?: string;
  /** Who authenticated (default: the user). */
  identity?: string;
  client?: Partial<Endpoint>;
  backend?: Partial<Endpoint>;
  /** Startup parameters as the client sent them (user and database are added). */
  clientParams?: Readonly<Record<string, string>>;
  /** ParameterStatus values the backend reported at login (e.g. `standard_conforming_strings`). */
  serverParams?: Readonly<Record<string, string>>;
}

/** Why a test session ended, as the proxy tells them apart. */
export type TestSessionEndReason = 'client-terminate' | 'client-eof' | 'backend-eof' | 'error' | 'closed';

export interface TestSessionEnd {
  readonly reason: TestSessionEndReason;
  /** The FATAL error the client was sent as the session ended, if any. */
  readonly error?: PgError;
}

/** One end of the session, as a test drives and watches it. */
export interface TestPeer<Sends, Receives> {
  /** Messages this side sends into the pipeline, in order; each arrives undecoded, as off a socket. */
  send(...messages: Sends[]): void;
  /** This side closes its connection (EOF). */
  end(): void;
  /** Everything that reached this side so far, in order. */
  readonly received: readonly Receives[];
  /** What reached this side since the last take (or the start), and forgets it. */
  take(): Receives[];
}

export interface TestSession {
  /** The session as every middleware sees it (`ctx` without the injection methods). */
  readonly context: SessionContext;
  /** The backend's startup parameters after every middleware's `beforeBackendStartup`. */
  readonly backendStartup: ReadonlyMap<string, string>;
  readonly client: TestPeer<FrontendMessage, BackendMessage>;
  readonly backend: TestPeer<BackendMessage, FrontendMessage>;
  /** What the middleware sent on their own (`ctx.sendToClient` / `ctx.sendToBackend`), in order. */
  readonly injected: { readonly toClient: readonly BackendMessage[]; readonly toBackend: readonly FrontendMessage[] };
  /** What the middleware logged through `ctx.log`. */
  readonly logs: readonly LogRecord[];
  /** Set once the session has ended. */
  readonly ended: TestSessionEnd | undefined;
  /** Lets asynchronous operators (promises, timers of 0) run before the next assertion. */
  settle(): Promise<void>;
}

/** The proxy's side of a session: what it does with what the chain emits, as the relay does. */
class Harness {
  readonly logs: LogRecord[] = [];
  readonly session: Session;
  readonly toClient: BackendMessage[] = [];
  readonly toBackend: FrontendMessage[] = [];
  readonly injected = { toClient: [] as BackendMessage[], toBackend: [] as FrontendMessage[] };
  readonly fromClient = new Subject<FrontendMessage>();
  readonly fromBackend = new Subject<BackendMessage>();
  ended: TestSessionEnd | undefined;
  private readonly subs: Subscription[] = [];
  private onClose: (() => void)[] = [];
  private terminating = false;
  private relaying = false;
  private lastBackendError: BackendMessage | undefined;
  private chain: ObservableChain | undefined;

  constructor(opts: TestSessionOptions) {
    const user = opts.user ?? 'alice';
    const database = opts.database ?? user;
    this.session = new Session({
      client: { address: '127.0.0.1', port: 50_000, tls: false, ...opts.client },
      clientParams: new Map(Object.entries({ user, database, ...opts.clientParams })),
      log: recordingLogger(this.logs),
    });
    this.session.user = user;
    this.session.database = database;
    this.session.identity = opts.identity ?? user;
    for (const [k, v] of Object.entries(opts.serverParams ?? {})) this.session.serverParams.set(k, v);
    this.session.backend = { address: '127.0.0.1', port: 5432, tls: false, ...opts.backend };
  }

  /** Wires the chain as the relay does; a middleware whose `session()` throws ends the session. */
  start(middleware: readonly Middleware[]): void {
    this.session.state.phase = 'relay';
    this.relaying = true;
    try {
      const chain = buildChain(middleware.map((mw) => this.recording(mw)), this.session, this.fromClient, this.fromBackend);
      this.chain = chain;
      this.onClose = chain.handlers.flatMap((h) => (h.onClose ? [() => h.onClose!()] : []));
      this.session.onCloseRequest((error) => this.finish('closed', error));
      this.subs.push(
        chain.toClient$.subscribe({
          next: (m) => this.deliverToClient(m),
          complete: () => this.backendGone(),
          error: (err) => this.finish('error', asPgError(err)),
        }),
        chain.toBackend$.subscribe({
          next: (m) => this.deliverToBackend(m),
          complete: () => this.finish(this.terminating ? 'client-terminate' : 'client-eof'),
          error: (err) => this.finish('error', asPgError(err)),
        }),
      );
    } catch (err) {
      this.finish('error', asPgError(err));
    }
  }

  // A type the pipeline only observes goes on at once, as a carrier forwards it, and is then
  // shown to the chain, which writes nothing for it (see MessageInterest.observeOnly); a type it
  // only counts goes on and is counted (MessageInterest.count).
  clientSends(m: FrontendMessage): void {
    if (this.ended) return;
    this.session.state.fromClient(m.code);
    const want = this.chain?.wants.frontend[m.code];
    if (want !== OBSERVED && want !== COUNTED) return this.fromClient.next(frontendMessage(m.code, m.raw));
    this.deliverToBackend(frontendMessage(m.code, m.raw));
    if (this.ended) return;
    if (want === COUNTED) this.chain!.countClient(m.code);
    else this.chain!.observeClient(frontendMessage(m.code, m.raw));
  }

  backendSends(m: BackendMessage): void {
    if (this.ended) return;
    const want = this.chain?.wants.backend[m.code];
    if (want !== OBSERVED && want !== COUNTED) return this.fromBackend.next(backendMessage(m.code, m.raw));
    this.deliverToClient(backendMessage(m.code, m.raw));
    if (this.ended) return;
    if (want === COUNTED) this.chain!.countBackend(m.code);
    else this.chain!.observeBackend(backendMessage(m.code, m.raw));
  }

  finish(reason: TestSessionEndReason, error?: PgError): void {
    if (this.ended) return;
    this.session.state.phase = 'closing';
    for (const s of this.subs) s.unsubscribe();
    const fatal = error && (error.fatal ? error : new PgError('FATAL', error.sqlstate, error.message, error));
    if (fatal) this.toClient.push(be.errorResponse(fatal.toFields()));
    if (this.relaying && reason !== 'backend-eof' && !this.terminating) this.toBackend.push(fe.terminate());
    this.ended = { reason, error: fatal };
    for (const close of this.onClose) {
      try {
        close();
      } catch (err) {
        this.session.log.warn('middleware onClose failed', { error: String(err) });
      }
    }
    this.session.markClosed();
  }

  backendGone(): void {
    if (this.terminating) return this.finish('client-terminate');
    const last = this.lastBackendError;
    const said = last?.type === 'ErrorResponse' && PgError.fromFields(last.body()).fatal;
    // A backend that said why it is leaving has already told the client.
    this.finish('backend-eof', said ? undefined : new PgError('FATAL', SqlState.ConnectionFailure, 'backend connection closed unexpectedly'));
  }

  private deliverToClient(m: BackendMessage): void {
    if (m.code === ERROR_RESPONSE) this.lastBackendError = m;
    else if (m.type === 'ParameterStatus') this.session.serverParams.set(m.body().name, m.body().value);
    this.toClient.push(m);
    this.session.state.toClient(m);
  }

  private deliverToBackend(m: FrontendMessage): void {
    this.toBackend.push(m);
    if (m.code !== TERMINATE) return;
    // PostgreSQL closes the connection on Terminate.
    this.terminating = true;
    this.fromBackend.complete();
  }

  /** The middleware as it is, but what it injects is also noted. */
  private recording(mw: Middleware): Middleware {
    if (!mw.session) return mw;
    const session = mw.session.bind(mw);
    return {
      ...mw,
      name: mw.name,
      session: (ctx) => {
        const noted: MiddlewareContext = Object.assign(Object.create(ctx) as MiddlewareContext, {
          sendToClient: (...msgs: BackendMessage[]) => (this.injected.toClient.push(...msgs), ctx.sendToClient(...msgs)),
          sendToBackend: (...msgs: FrontendMessage[]) => (this.injected.toBackend.push(...msgs), ctx.sendToBackend(...msgs)),
        });
        return session(noted);
      },
    };
  }
}

function peer<S, R>(received: R[], send: (m: S) => void, end: () => void): TestPeer<S, R> {
  let taken = 0;
  return {
    send: (...messages) => messages.forEach(send),
    end,
    received,
    take: () => received.slice(taken, (taken = received.length)),
  };
}

/**
 * Runs middleware in-process as the proxy runs them in a session — the same chain, session
 * state and reactions to errors, `ctx.close()` and either side closing — with scripted messages
 * in place of a client and a PostgreSQL server: no sockets, no database.
 *
 * Each middleware's `beforeBackendStartup` runs first, in order, as before a backend is dialled;
 * one that throws ends the session before the relay, as the proxy would.
 */
export async function startTestSession(middleware: Middleware | readonly Middleware[], opts: TestSessionOptions = {}): Promise<TestSession> {
  const list: readonly Middleware[] = Array.isArray(middleware) ? middleware : [middleware as Middleware];
  const h = new Harness(opts);
  const backendStartup = new Map([
    ['user', h.session.user],
    ['database', h.session.database],
    ...[...h.session.clientParams].filter(([k]) => !/^(user|database|replication|_pq_\..*)$/i.test(k)),
  ]);
  h.session.state.phase = 'connecting';
  try {
    for (const mw of list) await mw.beforeBackendStartup?.({ params: backendStartup, ctx: h.session });
    h.start(list);
  } catch (err) {
    h.finish('error', asPgError(err));
  }
  return {
    context: h.session,
    backendStartup,
    client: peer(h.toClient, (m: FrontendMessage) => h.clientSends(m), () => h.fromClient.complete()),
    backend: peer(h.toBackend, (m: BackendMessage) => h.backendSends(m), () => h.fromBackend.complete()),
    injected: h.injected,
    logs: h.logs,
    get ended() {
      return h.ended;
    },
    // A timer turn (promises and 0 ms timers set earlier run first), then an I/O turn.
    settle: () => new Promise<void>((resolve) => setTimeout(() => setImmediate(resolve), 0)),
  };
}
