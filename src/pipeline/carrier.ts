// The Carrier seam: the one thing that moves a session's bytes. Two implementations: the native
// carrier (native/, C on libuv's loop) and the JavaScript carrier (Node's sockets), the fallback
// where the addon is not built, for TLS sessions, and with --no-nativeRelay. A session runs on one
// carrier for its whole life.
import type { Duplex } from 'node:stream';
import type { BackendMessage, Framer, FrontendMessage, Message, PgError } from '../protocol/index.js';
import type { StateSource } from './session.js';
import type { StatementTimings } from './session-book.js';
import type { Frame } from '../transport/socket-io.js';
import { NativeTlsSocket } from '../transport/native-tls-socket.js';
import type { MessageWants } from './wants.js';

export type CarrierKind = 'native' | 'js';

/** What a carrier knows of its session, now or when it ended. */
export interface CarrierStatus {
  readonly transactionStatus: 'I' | 'T' | 'E';
  /** Query, Sync and FunctionCall messages read from the client with no ReadyForQuery written back yet. */
  readonly unanswered: number;
  /** The client's Terminate went on to the backend (or was kept from a backend given back). */
  readonly terminated: boolean;
  /** The backend's last message (notices and ReadyForQuery aside) was an ErrorResponse saying it leaves. */
  readonly backendSaidFatal: boolean;
  readonly bytesToClient: number;
  readonly bytesToBackend: number;
  /** What the client was written stops inside a message: nothing else may follow. */
  readonly clientMidMessage: boolean;
  readonly backendMidMessage: boolean;
  /** The backend could be given back now (with `keepBackend`): idle, and nothing half-read or half-written. */
  readonly reusable: boolean;
}

/**
 * Why a carrier stopped carrying: `stopped` (asked to, by `stop` or `abort`), `released` (the
 * client left while the backend was reusable: the backend is given back untouched), or a side's
 * EOF, I/O failure or bad length.
 */
export type CarrierEndReason =
  | 'stopped'
  | 'released'
  | 'client-eof'
  | 'backend-eof'
  | 'client-error'
  | 'backend-error'
  | 'client-violation'
  | 'backend-violation';

export interface CarrierEnd {
  readonly reason: CarrierEndReason;
  readonly status: CarrierStatus;
  /** For a violation: what the client is told (08P01, or 54000 for a message too long to hold). */
  readonly error?: PgError;
  /** For an I/O failure: what failed. */
  readonly cause?: unknown;
}

export interface CarrierEvents {
  /** A client message the pipeline asked to see (see `MessageWants`), in order with everything forwarded. */
  fromClient(m: FrontendMessage): void;
  /** A backend message the pipeline asked to see. */
  fromBackend(m: BackendMessage): void;
  /**
   * A client message of a type the pipeline only observes (`OBSERVED` in `MessageWants`): already
   * forwarded; in the order read with the others, but maybe later than it was read (see `readTime`).
   */
  observedFromClient(m: FrontendMessage): void;
  observedFromBackend(m: BackendMessage): void;
  /** `n` client messages of a type the pipeline only counts (`COUNTED`): already forwarded, in the order read with the others. */
  countedFromClient(code: number, n: number): void;
  countedFromBackend(code: number, n: number): void;
  /** After `watchIdle`: the session became idle (ReadyForQuery `I`, nothing unanswered). */
  idle(): void;
  /** The carrier stopped carrying, for whatever reason; called once, and nothing is delivered after it. */
  ended(end: CarrierEnd): void;
}

export interface CarrierEndpoint {
  socket: Duplex;
  framer: Framer;
  /** Frames read ahead during startup, carried first. */
  leftover?: Frame[];
}

export interface CarrierOptions {
  wants: MessageWants;
  /** Most bytes a message handed to the pipeline may declare (it is held whole); over it: 54000. */
  maxMessageSize: number;
  /** Time statements (from the table's meanings) and hand each duration here. */
  timings?: StatementTimings;
  /** End with `released` instead of passing the client's Terminate (or EOF) on, when the backend is reusable. */
  keepBackend?: boolean;
  events: CarrierEvents;
}

/** A backend connection given back after `released`: reading nothing, with what was read of it and not handled. */
export interface ReleasedBackend {
  socket: Duplex;
  framer: Framer;
  leftover: Frame[];
}

/** The last words of a session, written by `close` once the carrier has ended. */
export interface CarrierFinals {
  toClient?: Message;
  toBackend?: Message;
  /** Leave the backend connection open and untouched (it was released). */
  keepBackend?: boolean;
}

export interface Carrier extends StateSource {
  readonly kind: CarrierKind;
  /** Starts carrying (frames read ahead at login first): call once everything listens. */
  start(): void;
  /**
   * Writes a message to the client, after everything written or forwarded before it; while the
   * stream to the client is inside a forwarded message, it follows that message.
   */
  toClient(m: Message): void;
  toBackend(m: Message): void;
  /** Stops reading one side until `resume`. */
  pause(side: 'client' | 'backend'): void;
  resume(side: 'client' | 'backend'): void;
  status(): CarrierStatus;
  /** Stops at the next message boundary both ways, reading nothing past it; `ended` reports `stopped`. */
  stop(): void;
  /** Stops now, wherever each direction is (for a close that cannot wait); `ended` reports `stopped`. */
  abort(): void;
  /** After `ended`: writes the finals (where no message is left half written) and closes the sockets. */
  close(finals: CarrierFinals): void;
  /** After `released`: the backend connection, for the next session. */
  takeBackend(): ReleasedBackend;
}

/** How long closing sockets may take to flush before they are destroyed. */
export const CLOSE_GRACE_MS = 5_000;

/**
 * Half-closes the sockets once written and destroys them after the grace period, or as soon as
 * both are closed. Both are read (and what comes dropped) to see the peer's close: a backend held
 * back for a client that stopped reading is blocked sending, and so reaches the Terminate (or the
 * EOF) at once. `clientTerminated`: the client sent Terminate and nothing was written to it here.
 */
export function closeSockets(client: Duplex, backend: Duplex | undefined, clientTerminated = false): void {
  const sockets = backend ? [client, backend] : [client];
  // A client that said Terminate sends nothing more: with nothing left to write to it, closing at
  // once sends its FIN all the same and spares reading for its close (a shutdown, an epoll_ctl, a
  // read, the timer). On the native TLS layer the close sends the close_notify first; reading on
  // there also cost a poll for the client's close_notify, which OpenSSL held already, and when the
  // client had closed (libpq does), our close_notify drew a reset that the poll then met.
  if (clientTerminated && client.writableLength === 0) {
    if ((client as { encrypted?: boolean }).encrypted !== true || client instanceof NativeTlsSocket) {
      client.destroy();
      sockets.shift();
      if (sockets.length === 0) return;
    } else {
      // Node's TLS socket sends its close_notify from `end` only.
      client.once('finish', () => client.destroy());
    }
  }
  for (const s of sockets) {
    s.on('data', () => {});
    s.resume();
  }
  for (const s of sockets) if (!s.destroyed && !s.writableEnded) s.end();
  const timer = setTimeout(() => {
    for (const s of sockets) s.destroy();
  }, CLOSE_GRACE_MS);
  timer.unref();
  // Cleared as soon as the sockets are closed: it holds the whole session until it fires.
  let open = sockets.length;
  const closed = () => {
    if (--open === 0) clearTimeout(timer);
  };
  for (const s of sockets) {
    if (s.destroyed) closed();
    else s.once('close', closed);
  }
}

/**
 * What runs around each hand-over of the native carrier's batches (the batches of every session
 * read in one turn of the loop, or over a few milliseconds for observed-only ones): `begin` before
 * the first message reaches the chain, `end` after the last, before anything the chain wrote
 * leaves for a socket. The server holds the log's lines between the two and writes them in one
 * write. (For a message held for the chain its line is in the log before its answer leaves; an
 * observed one has left already.) `end` is also called before a carrier closes its sockets.
 */
export interface BatchHooks {
  begin(): void;
  end(): void;
}

const NO_HOOKS: BatchHooks = { begin() {}, end() {} };
let batchHooks: BatchHooks = NO_HOOKS;

/** Sets the hooks (one set per process; `undefined` puts back none). */
export function setBatchHooks(hooks: BatchHooks | undefined): void {
  batchHooks = hooks ?? NO_HOOKS;
}

export function currentBatchHooks(): BatchHooks {
  return batchHooks;
}
