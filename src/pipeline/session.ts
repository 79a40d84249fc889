import { randomBytes } from 'node:crypto';
import { readyStatus, type BackendMessage, type Message, type TransactionStatus, type PgError } from '../protocol/index.js';
import type { Endpoint, SessionContext, SessionLogger, SessionPhase, SessionState } from './middleware.js';

const Q = 'Q'.charCodeAt(0);
const S = 'S'.charCodeAt(0);
const F = 'F'.charCodeAt(0);
const Z = 'Z'.charCodeAt(0);
/** Extended-protocol messages that leave the backend waiting for a Sync. */
const UNSYNCED = new Set(['P', 'B', 'D', 'E', 'C'].map((c) => c.charCodeAt(0)));

/** Where the state lives while another relay (the native one) carries the session's bytes. */
export interface ExternalStateSource {
  read(): { transactionStatus: TransactionStatus; unanswered: number; unsynced: boolean };
  /** Someone waits for idle: the source should hand the session back, where idle is seen as it happens. */
  wantIdle(): void;
}

/**
 * Tracks what drain and expiry need to know, from message codes only (no decoding): requests
 * that expect a ReadyForQuery, and the transaction status of the last ReadyForQuery.
 */
export class SessionStateTracker implements SessionState {
  phase: SessionPhase = 'negotiating';
  private status: TransactionStatus = 'I';
  private waiting = 0;
  private unsynced = false;
  private idleListeners: (() => void)[] = [];
  private external: ExternalStateSource | null = null;

  get transactionStatus(): TransactionStatus {
    this.pull();
    return this.status;
  }

  get unanswered(): number {
    this.pull();
    return this.waiting;
  }

  get idle(): boolean {
    this.pull();
    return this.status === 'I' && this.waiting === 0;
  }

  /**
   * Idle, and nothing of the extended protocol sent since the last Query, Sync or FunctionCall:
   * the backend holds no unfinished request of this session (it may serve another one).
   */
  get settled(): boolean {
    this.pull();
    return this.status === 'I' && this.waiting === 0 && !this.unsynced;
  }

  /** Call for every message the client sends. */
  fromClient(code: number): void {
    if (code === Q || code === S || code === F) {
      this.waiting++;
      this.unsynced = false;
    } else if (UNSYNCED.has(code)) this.unsynced = true;
  }

  /** Call for every message that reaches the client. */
  toClient(message: Message): void {
    if (message.code !== Z) return;
    this.status = readyStatus(message);
    if (this.waiting > 0) this.waiting--;
    this.notifyIfIdle();
  }

  /** Runs `fn` now if idle, else at the next moment the session becomes idle. */
  whenIdle(fn: () => void): void {
    // While an external source carries the session, idle is only known after the fact: the
    // moment is taken where it can be seen, once the session is handed back.
    if (this.external) {
      this.idleListeners.push(fn);
      this.external.wantIdle();
    } else if (this.idle) fn();
    else this.idleListeners.push(fn);
  }

  /** The state is read from `source` until `detach`. */
  attach(source: ExternalStateSource): void {
    this.external = source;
  }

  /** Takes the state back, as `source` last knew it, and runs what waited for idle if it is. */
  detach(): void {
    this.pull();
    this.external = null;
    this.notifyIfIdle();
  }

  private pull(): void {
    if (this.external === null) return;
    const { transactionStatus, unanswered, unsynced } = this.external.read();
    this.status = transactionStatus;
    this.waiting = unanswered;
    this.unsynced = unsynced;
  }

  private notifyIfIdle(): void {
    if (this.status === 'I' && this.waiting === 0 && this.idleListeners.length > 0) {
      const listeners = this.idleListeners;
      this.idleListeners = [];
      for (const l of listeners) l();
    }
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
  readonly closed: Promise<void>;
  private closer: ((error?: PgError) => void) | null = null;
  private clientWriter: ((m: BackendMessage) => void) | null = null;
  private pendingNotices: BackendMessage[] | null = null;
  private pendingClose: { error?: PgError } | null = null;
  private resolveClosed!: () => void;

  constructor(init: SessionInit) {
    this.id = init.id ?? newSessionId();
    this.client = init.client;
    this.clientParams = init.clientParams;
    this.log = init.log;
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
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
    this.resolveClosed();
  }
}
