import { randomBytes } from 'node:crypto';
import { backendFlags, BE_READY, FE_AWAITS_READY, frontendFlags, readyStatus, type BackendMessage, type Message, type TransactionStatus, type PgError } from '../protocol/index.js';
import type { Endpoint, SessionContext, SessionLogger, SessionPhase, SessionState } from './middleware.js';

/** Where the state lives while a carrier carries the session's bytes. */
export interface StateSource {
  readonly transactionStatus: TransactionStatus;
  readonly unanswered: number;
  /** Someone waits for idle: call `idleReached()` on the state at the next moment the session is idle. */
  watchIdle(): void;
}

/**
 * What drain and expiry need to know: the transaction status of the last ReadyForQuery and the
 * requests that await one. The carrier that moves the session's bytes keeps them (see
 * `SessionBook` and native/framing.c); before the relay the session is idle, after it the last
 * values stay.
 */
export class SessionStateTracker implements SessionState {
  phase: SessionPhase = 'negotiating';
  private source: StateSource | null = null;
  private lastStatus: TransactionStatus = 'I';
  private lastUnanswered = 0;
  private idleListeners: (() => void)[] = [];

  get transactionStatus(): TransactionStatus {
    return this.source ? this.source.transactionStatus : this.lastStatus;
  }

  get unanswered(): number {
    return this.source ? this.source.unanswered : this.lastUnanswered;
  }

  get idle(): boolean {
    return this.transactionStatus === 'I' && this.unanswered === 0;
  }

  /** Runs `fn` now if idle, else at the next moment the session becomes idle. */
  whenIdle(fn: () => void): void {
    if (this.idle) return fn();
    this.idleListeners.push(fn);
    this.source?.watchIdle();
  }

  /** The state is read from `source` (the carrier) until `detach`. */
  attach(source: StateSource): void {
    this.source = source;
    if (this.idleListeners.length > 0) source.watchIdle();
  }

  /** Keeps the state as `source` last knew it. */
  detach(): void {
    const source = this.source;
    if (!source) return;
    this.lastStatus = source.transactionStatus;
    this.lastUnanswered = source.unanswered;
    this.source = null;
  }

  /** Without a carrier (tests, the plugin test kit): a message read from the client. */
  fromClient(code: number): void {
    if (frontendFlags[code]! & FE_AWAITS_READY) this.lastUnanswered++;
  }

  /** Without a carrier: a message written to the client. */
  toClient(message: Message): void {
    if (!(backendFlags[message.code]! & BE_READY)) return;
    this.lastStatus = readyStatus(message);
    if (this.lastUnanswered > 0) this.lastUnanswered--;
    this.idleReached();
  }

  /** The carrier saw the session become idle: what waited for it runs now. */
  idleReached(): void {
    if (this.idleListeners.length === 0) return;
    if (!this.idle) {
      this.source?.watchIdle();
      return;
    }
    const listeners = this.idleListeners;
    this.idleListeners = [];
    for (const l of listeners) l();
  }
}

export function newSessionId(): string {
  return randomBytes(6).toString('hex');
}

export interface SessionInit {
  id?: string;
  client: Endpoint;
  clientParams: ReadonlyMap<string, string>;
  log: SessionLogger;
}

/**
 * One client connection's context. Methods are bound so middleware contexts that delegate to it
 * act on the session itself.
 */
export class Session implements SessionContext {
  readonly id: string;
  readonly client: Endpoint;
  readonly clientParams: ReadonlyMap<string, string>;
  readonly log: SessionLogger;
  readonly state = new SessionStateTracker();
  readonly attributes = new Map<string, unknown>();
  readonly serverParams = new Map<string, string>();
  backend?: Endpoint;
  user = '';
  database = '';
  identity = '';
  private closedPromise: Promise<void> | undefined = undefined;
  private resolveClosed: (() => void) | undefined = undefined;
  private ended = false;
  private closer: ((error?: PgError) => void) | null = null;
  private clientWriter: ((m: BackendMessage) => void) | null = null;
  private pendingNotices: BackendMessage[] | null = null;
  private pendingClose: { error?: PgError } | null = null;

  constructor(init: SessionInit) {
    this.id = init.id ?? newSessionId();
    this.client = init.client;
    this.clientParams = init.clientParams;
    this.log = init.log;
  }

  /** Settles once the session has ended. Made when first asked for: most sessions never are. */
  get closed(): Promise<void> {
    if (!this.closedPromise) {
      this.closedPromise = this.ended ? Promise.resolve() : new Promise((resolve) => (this.resolveClosed = resolve));
    }
    return this.closedPromise;
  }

  /** The relay installs how to close; a close asked for earlier is applied then. */
  onCloseRequest(closer: (error?: PgError) => void): void {
    this.closer = closer;
    if (this.pendingClose) closer(this.pendingClose.error);
  }

  /** The relay installs the direct path to the client (past all middleware); messages sent earlier go first. */
  onClientWriter(writer: (m: BackendMessage) => void): void {
    this.clientWriter = writer;
    const pending = this.pendingNotices;
    this.pendingNotices = null;
    if (pending) for (const m of pending) writer(m);
  }

  /**
   * Sends an asynchronous message (NoticeResponse, ParameterStatus) straight to the client, as
   * the protocol allows at any time; one sent during login is held until the relay starts, one
   * sent after the relay ended is dropped.
   */
  readonly notifyClient = (message: BackendMessage): void => {
    if (this.clientWriter) this.clientWriter(message);
    else (this.pendingNotices ??= []).push(message);
  };

  readonly close = (error?: PgError): void => {
    if (this.closer) this.closer(error);
    else this.pendingClose ??= { error };
  };

  markClosed(): void {
    this.state.phase = 'closed';
    this.ended = true;
    this.resolveClosed?.();
  }
}
