import {
  asPgError,
  BackendSpecs,
  be,
  fe,
  PgError,
  Limits,
  SqlState,
  type BackendMessage,
  type BackendType,
  type FrontendMessage,
  type FrontendType,
} from '../protocol/index.js';
import {
  CLOSE_GRACE_MS,
  type Carrier,
  type CarrierEnd,
  type CarrierEndpoint,
  type CarrierEvents,
  type CarrierKind,
  type CarrierOptions,
  type CarrierStatus,
} from './carrier.js';
import { composeChain, type Chain } from './chain.js';
import { JsCarrier } from './js-carrier.js';
import type { Middleware } from './middleware.js';
import { NativeCarrier } from './native-carrier.js';
import { sharedWants, type MessageWants } from './wants.js';
import type { StatementTimings } from './session-book.js';
import type { Session } from './session.js';

export type RelayEndpoint = CarrierEndpoint;

export type RelayEndReason = 'client-terminate' | 'client-eof' | 'backend-eof' | 'error' | 'closed';

/** Bytes written to each side so far; grows while the relay runs. */
export interface RelayTraffic {
  readonly bytesToClient: number;
  readonly bytesToBackend: number;
}

export interface RelayEnd extends RelayTraffic {
  reason: RelayEndReason;
  /** The error sent to the client, if any. */
  error?: PgError;
  /** Why a side went away without a word, when known: its socket's error (a reset, say), or the backend's protocol violation. */
  cause?: Error;
  /**
   * With `keepBackend`: the backend connection was left open, idle and at a message boundary,
   * paused and with none of the relay's listeners, for the caller to keep or close.
   */
  backendKept: boolean;
}

/**
 * The proxy's own always-on accounting of statements, outside the chain (an RxJS stage per
 * message would cost more than the work itself). Either it needs only each statement's duration
 * and outcome (`timings`: the carrier measures them, with no message handed up), or it names the
 * messages it must see: frontend ones as the backend is sent them (after every middleware), backend
 * ones as read (before any).
 */
export interface RelayObserver {
  readonly messages?: { readonly frontend: readonly FrontendType[]; readonly backend: readonly BackendType[] };
  toBackend?(m: FrontendMessage): void;
  fromBackend?(m: BackendMessage): void;
  timings?: StatementTimings;
}

export type { StatementTimings };

export interface RelayOptions {
  observer?: RelayObserver;
  /** Called once as the relay starts with a live view of its byte counts. */
  onTraffic?: (traffic: RelayTraffic) => void;
  /**
   * Carry the session on the native carrier when it can: the addon is built and both sockets are
   * plain TCP. Otherwise (and without this) the JavaScript carrier carries it.
   */
  native?: boolean;
  /** Called once the relay knows which carrier carries the session. */
  onRelayKind?: (kind: CarrierKind) => void;
  /**
   * Most bytes a message handed to the pipeline may declare (it is held whole; default
   * `Limits.assembledMessage`; over it the session ends with FATAL 54000). Messages no middleware
   * reads are never held whole.
   */
  maxMessageSize?: number;
  /**
   * Leave the backend connection open when the session ends cleanly — the client's Terminate or
   * EOF, or a close, while the backend is idle with nothing unanswered, no extended-protocol batch
   * open and nothing half-read or half-written: the client's Terminate is then not passed on,
   * nothing past the backend's last message is read, and `RelayEnd.backendKept` says so.
   */
  keepBackend?: boolean;
}

const PARAMETER_STATUS = BackendSpecs.ParameterStatus.code;

/**
 * Runs the relay phase of a session: the carrier moves its bytes, the middleware chain sees the
 * messages it declared, until either side ends, an error occurs or the session is closed.
 * Resolves once both sockets are closing (or the backend is given back).
 */
export function relay(session: Session, middleware: readonly Middleware[], client: RelayEndpoint, backend: RelayEndpoint, options: RelayOptions = {}): Promise<RelayEnd> {
  return new Promise<RelayEnd>((resolve) => new SessionRelay(session, client, backend, options, resolve).run(middleware));
}

/** A close asked for (by `ctx.close`, or a middleware's failure), and whether the grace period cut it short. */
interface Closing {
  reason: 'closed' | 'error';
  error?: PgError;
  aborted: boolean;
}

/** One session's relay: what the carrier hands up goes through the chain, what comes out is written. */
class SessionRelay implements CarrierEvents {
  private carrier: Carrier | undefined;
  private chain: Chain | undefined;
  private done = false;
  private closing: Closing | undefined;
  private abortTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly session: Session,
    private readonly client: RelayEndpoint,
    private readonly backend: RelayEndpoint,
    private readonly options: RelayOptions,
    private readonly resolve: (end: RelayEnd) => void,
  ) {}

  run(middleware: readonly Middleware[]): void {
    const { session, options } = this;
    const observer = options.observer;
    session.state.phase = 'relay';
    try {
      const chain = composeChain(middleware, session, {
        toBackend: (m) => {
          observer?.toBackend?.(m);
          this.carrier?.toBackend(m);
        },
        toClient: (m) => this.carrier?.toClient(m),
        error: (err) => this.requestClose('error', asPgError(err)),
      });
      this.chain = chain;
      const carrierOptions: CarrierOptions = {
        wants: carrierWants(chain.wants, observer?.messages),
        maxMessageSize: options.maxMessageSize ?? Limits.assembledMessage,
        timings: observer?.timings,
        keepBackend: options.keepBackend,
        events: this,
      };
      let carrier: Carrier = (options.native ? NativeCarrier.open(this.client, this.backend, carrierOptions) : undefined) ?? new JsCarrier(this.client, this.backend, carrierOptions);
      this.carrier = carrier;
      try {
        carrier.start();
      } catch (err) {
        if (carrier.kind !== 'native') throw err;
        // e.g. no descriptor left to duplicate: the JavaScript carrier needs none.
        session.log.warn('native carrier did not start; carrying the session in JavaScript', { error: String(err) });
        carrier = this.carrier = new JsCarrier(this.client, this.backend, carrierOptions);
        carrier.start();
      }
      options.onRelayKind?.(carrier.kind);
      options.onTraffic?.(new CarrierTraffic(carrier));
      if (this.done) return;
      session.state.attach(carrier);
      // The writer first: notices held since login leave before a close that was waiting too.
      session.onClientWriter((m) => {
        if (!this.done) carrier.toClient(m);
      });
      session.onCloseRequest((error) => this.requestClose('closed', error));
    } catch (err) {
      this.finish('error', asPgError(err));
    }
  }

  // ---- what the carrier tells ----

  fromClient(m: FrontendMessage): void {
    try {
      this.chain?.fromClient(m);
    } catch (err) {
      this.requestClose('error', asPgError(err));
    }
  }

  fromBackend(m: BackendMessage): void {
    try {
      if (m.code === PARAMETER_STATUS && m.type === 'ParameterStatus') {
        const { name, value } = m.body();
        this.session.serverParams.set(name, value);
      }
      this.options.observer?.fromBackend?.(m);
      this.chain?.fromBackend(m);
    } catch (err) {
      this.requestClose('error', asPgError(err));
    }
  }

  observedFromClient(m: FrontendMessage): void {
    try {
      this.chain?.observeClient(m);
    } catch (err) {
      this.requestClose('error', asPgError(err));
    }
  }

  observedFromBackend(m: BackendMessage): void {
    try {
      this.chain?.observeBackend(m);
    } catch (err) {
      this.requestClose('error', asPgError(err));
    }
  }

  countedFromClient(code: number, n: number): void {
    this.chain?.countClient(code, n);
  }

  countedFromBackend(code: number, n: number): void {
    this.chain?.countBackend(code, n);
  }

  idle(): void {
    this.session.state.idleReached();
  }

  ended(end: CarrierEnd): void {
    const { status } = end;
    switch (end.reason) {
      case 'stopped':
        // A close of an idle session (drain, token expiry) leaves a clean backend too.
        return this.finish(this.closing?.reason ?? 'closed', this.closing?.error, this.closing?.reason === 'closed' && !this.closing.aborted && status.reusable);
      case 'released':
        return this.finish(status.terminated ? 'client-terminate' : 'client-eof', undefined, true);
      case 'client-eof':
      case 'client-error':
        // A reset after Terminate says nothing the Terminate did not.
        return status.terminated ? this.finish('client-terminate') : this.finish('client-eof', undefined, false, end.cause);
      case 'client-violation':
        return this.finish('error', end.error);
      case 'backend-violation':
        return this.backendGone(status, end.error);
      default:
        return this.backendGone(status, end.cause);
    }
  }

  // ---- ending ----

  private backendGone(status: CarrierStatus, cause?: unknown): void {
    if (status.terminated) return this.finish('client-terminate');
    // A backend that said why it is leaving (e.g. 57P01 on shutdown) has already told the client.
    const error = status.backendSaidFatal ? undefined : new PgError('FATAL', SqlState.ConnectionFailure, 'backend connection closed unexpectedly', { cause });
    this.finish('backend-eof', error, false, cause);
  }

  /** A close that waits for both directions to reach a message boundary, for at most the grace period. */
  private requestClose(reason: 'closed' | 'error', error?: PgError): void {
    if (this.done || this.closing) return;
    const closing: Closing = (this.closing = { reason, error, aborted: false });
    const carrier = this.carrier;
    if (!carrier) return this.finish(reason, error);
    // Peers that neither read nor write (a client that stopped reading mid-result) never reach
    // a boundary: they are cut off after the grace period.
    this.abortTimer = setTimeout(() => {
      closing.aborted = true;
      carrier.abort();
    }, CLOSE_GRACE_MS);
    this.abortTimer.unref();
    carrier.stop();
  }

  private finish(reason: RelayEndReason, error?: PgError, keepBackend = false, cause?: unknown): void {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.abortTimer);
    const { session, carrier } = this;
    session.state.phase = 'closing';
    this.chain?.close();
    // Only a backend connection still open both ways can serve another session.
    const backendSocket = this.backend.socket;
    keepBackend &&= !backendSocket.destroyed && !backendSocket.readableEnded && !backendSocket.writableEnded;
    if (carrier) {
      session.state.detach();
      // Nothing can follow half a message: the peer sees the close instead.
      if (error && carrier.status().clientMidMessage) error = undefined;
      error &&= error.fatal ? error : new PgError('FATAL', error.sqlstate, error.message, error);
      const terminate = !keepBackend && reason !== 'backend-eof' && !carrier.status().terminated;
      carrier.close({ toClient: error && be.errorResponse(error.toFields()), toBackend: terminate ? fe.terminate() : undefined, keepBackend });
      if (keepBackend) carrier.takeBackend();
    }
    if (!carrier || this.closing?.aborted) {
      this.client.socket.destroy();
      this.backend.socket.destroy();
    }
    for (const h of this.chain?.handlers ?? []) {
      try {
        h.onClose?.();
      } catch (err) {
        session.log.warn('middleware onClose failed', { error: String(err) });
      }
    }
    const status = carrier?.status();
    this.resolve({ reason, error, cause: cause instanceof Error ? cause : undefined, bytesToClient: status?.bytesToClient ?? 0, bytesToBackend: status?.bytesToBackend ?? 0, backendKept: keepBackend && carrier !== undefined });
  }
}

/** A live view of a carrier's byte counts. */
class CarrierTraffic implements RelayTraffic {
  constructor(private readonly carrier: Carrier) {}
  get bytesToClient(): number {
    return this.carrier.status().bytesToClient;
  }
  get bytesToBackend(): number {
    return this.carrier.status().bytesToBackend;
  }
}

type ObservedMessages = NonNullable<RelayObserver['messages']>;

/** The carrier's wants by the chain's and then by the observer's messages: both are the same objects session after session. */
const carrierWantsMade = new WeakMap<MessageWants, WeakMap<ObservedMessages, MessageWants>>();
const NO_MESSAGES: ObservedMessages = Object.freeze({ frontend: [], backend: [] });

/**
 * What the carrier hands up: what the chain wants, every ParameterStatus (the session keeps
 * `serverParams` from them) and the observer's messages. Made once per pair, not per session.
 */
function carrierWants(chainWants: MessageWants, messages: ObservedMessages | undefined): MessageWants {
  let byMessages = carrierWantsMade.get(chainWants);
  if (!byMessages) carrierWantsMade.set(chainWants, (byMessages = new WeakMap()));
  const key = messages ?? NO_MESSAGES;
  let wants = byMessages.get(key);
  if (!wants) {
    const made = chainWants.copy().addBackend(['ParameterStatus']);
    if (messages) made.addFrontend(messages.frontend).addBackend(messages.backend);
    wants = sharedWants(made);
    byMessages.set(key, wants);
  }
  return wants;
}
