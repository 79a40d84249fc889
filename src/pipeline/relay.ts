import type { Duplex } from 'node:stream';
import { concat, defer, type Observable, type Subscription } from 'rxjs';
import {
  asPgError,
  backendMessage,
  be,
  fe,
  frontendMessage,
  PgError,
  invalidMessageLength,
  Limits,
  SqlState,
  type BackendMessage,
  type Framer,
  type FrameSink,
  type FrontendMessage,
} from '../protocol/index.js';
import { buildChain } from './chain.js';
import type { Middleware } from './middleware.js';
import type { Session } from './session.js';
import { NativePhase, type StatementTimings } from './native-phase.js';
import type { NativeRelayEnd } from './native-relay.js';
import { ConnectionClosed, fromSocket, SocketSink, type ChunkBatch, type Frame } from './socket-io.js';

const TERMINATE = 'X'.charCodeAt(0);
const ERROR_RESPONSE = 'E'.charCodeAt(0);
const PARAMETER_STATUS = 'S'.charCodeAt(0);
const COPY_DATA = 'd'.charCodeAt(0);
const DATA_ROW = 'D'.charCodeAt(0);

export interface RelayEndpoint {
  socket: Duplex;
  framer: Framer;
  /** Frames read ahead during startup that the relay must handle first. */
  leftover?: Frame[];
}

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
  /**
   * With `keepBackend`: the backend connection was left open, idle and at a message boundary,
   * paused and with none of the relay's listeners, for the caller to keep or close.
   */
  backendKept: boolean;
}

/**
 * Sees every message the backend is sent (after all middleware) and every message it sends
 * (before any), without being a stage of the chain: for the proxy's own always-on accounting,
 * where an RxJS stage per message would cost more than the work itself. Large CopyData and
 * DataRow messages that stream through (see `RelayOptions.maxMessageSize`) are not shown to it.
 */
export interface RelayObserver {
  toBackend(m: FrontendMessage): void;
  fromBackend(m: BackendMessage): void;
  /**
   * Present when each statement's duration and outcome is all the observer needs (no message
   * content): the session may then run on the native relay, which times statements itself.
   */
  timings?: StatementTimings;
}

export type { StatementTimings };

export interface RelayOptions {
  observer?: RelayObserver;
  /** Called once as the relay starts with a live view of its byte counts. */
  onTraffic?: (traffic: RelayTraffic) => void;
  /**
   * Carry the session in the native relay (native/relay.c) while nothing needs to see a message:
   * only when it is built, both sockets are plain TCP, no middleware has a stream operator and
   * the observer, if any, needs only statement timings. The session moves to the JavaScript relay, at a message boundary both
   * ways, the first time anything wants to write to a side, close it or wait for it to be idle.
   */
  native?: boolean;
  /** Called once the relay knows which relay carries the session first, and when it moves to JavaScript. */
  onRelayKind?: (kind: 'native' | 'js', moved: boolean) => void;
  /**
   * Most bytes a message may declare when the JavaScript relay holds it whole (default
   * `Limits.assembledMessage`; over it the session ends with FATAL 54000). CopyData (both ways)
   * and DataRow (from the backend) are streamed through in pieces instead, never held whole, in a
   * direction where no middleware has a stream operator. The native relay holds no message whole.
   */
  maxMessageSize?: number;
  /**
   * Leave the backend connection open when the session ends cleanly (the client's Terminate or
   * EOF, or a close, while the backend is idle with nothing unanswered and nothing half-sent):
   * the client's Terminate is then not passed on, and `RelayEnd.backendKept` says so.
   */
  keepBackend?: boolean;
}

/** How long closing sockets may take to flush before they are destroyed. */
const CLOSE_GRACE_MS = 5_000;

/**
 * Runs the relay phase of a session: both directions through the middleware chain until either
 * side ends, an error occurs or the session is closed. Resolves once both sockets are closing.
 */
export function relay(
  session: Session,
  middleware: readonly Middleware[],
  client: RelayEndpoint,
  backend: RelayEndpoint,
  { observer, onTraffic, native: nativeAllowed = false, onRelayKind, maxMessageSize = Limits.assembledMessage, keepBackend = false }: RelayOptions = {},
): Promise<RelayEnd> {
  const state = session.state;
  state.phase = 'relay';
  const clientSink = new SocketSink(client.socket, backend.socket);
  const backendSink = new SocketSink(backend.socket, client.socket);
  // Set when the session starts on the native relay; its sources then wait for its takeover.
  let native: NativePhase | undefined;
  const traffic: RelayTraffic = {
    get bytesToClient() {
      return clientSink.bytesWritten + (native?.bytesToClient ?? 0);
    },
    get bytesToBackend() {
      return backendSink.bytesWritten + (native?.bytesToBackend ?? 0);
    },
  };
  onTraffic?.(traffic);

  // Everything one chunk from either side makes the chain write leaves at the chunk's end.
  const batch: ChunkBatch = {
    begin() {
      clientSink.hold();
      backendSink.hold();
    },
    end() {
      clientSink.release();
      backendSink.release();
    },
  };
  const gated = <M>(source$: Observable<M>): Observable<M> => defer(() => (native ? concat(native.takeover, source$) : source$));
  const fromClient$ = fromSocket(
    client.socket,
    client.framer,
    (code, source, offset, length) => {
      state.fromClient(code);
      return frontendMessage(code, source, offset, length);
    },
    // A reset client (ECONNRESET, EPIPE) has gone away like one that closed: no internal error.
    { leftover: client.leftover, batch, failure: (err) => (err instanceof PgError ? err : new ConnectionClosed('client')) },
  );
  // Failures of the backend connection itself are told apart from middleware errors downstream.
  const decodeBackend: (...frame: Parameters<FrameSink>) => BackendMessage = observer
    ? (code, source, offset, length) => {
        const m = backendMessage(code, source, offset, length);
        observer.fromBackend(m);
        return m;
      }
    : backendMessage;
  const fromBackend$ = fromSocket(backend.socket, backend.framer, decodeBackend, {
    leftover: backend.leftover,
    batch,
    failure: (err) => new BackendFailure(err),
  });

  return new Promise<RelayEnd>((resolve) => {
    let done = false;
    let terminating = false;
    let lastBackendError: BackendMessage | null = null;
    // The native relay left a stream inside a message, or the backend saw part of a Terminate it
    // held back too late: the backend is not reusable.
    let backendUnclean = false;
    let keptBackend = false;
    const subs: Subscription[] = [];
    let handlers: ReturnType<typeof buildChain>['handlers'] = [];

    // The backend can serve another session: idle, nothing half-read or half-written, still open.
    const backendReusable = (reason: RelayEndReason) =>
      keepBackend &&
      reason !== 'backend-eof' &&
      reason !== 'error' &&
      !backendUnclean &&
      state.settled &&
      !backendSink.midMessage &&
      backend.framer.buffered === 0 &&
      !(lastBackendError !== null && isFatal(lastBackendError)) &&
      !backend.socket.destroyed &&
      !backend.socket.readableEnded &&
      !backend.socket.writableEnded;

    const finish = (reason: RelayEndReason, error?: PgError) => {
      if (done) return;
      done = true;
      state.phase = 'closing';
      for (const s of subs) s.unsubscribe();
      const kept = backendReusable(reason);
      keptBackend = kept;
      // Nothing can follow half a message: the peer sees the close instead.
      if (backendSink.midMessage) terminating = true;
      if (error && clientSink.midMessage) error = undefined;
      if (error) {
        const fatal = error.fatal ? error : new PgError('FATAL', error.sqlstate, error.message, error);
        clientSink.write(be.errorResponse(fatal.toFields()).raw);
        error = fatal;
      }
      if (kept) {
        backendSink.flush();
        backend.socket.pause();
      } else {
        if (reason !== 'backend-eof' && !terminating) backendSink.write(fe.terminate().raw);
        // A backend held back for a client that stopped reading is blocked sending: read and drop
        // what it sends, so it reaches the Terminate (or the EOF) now, not at the grace timeout.
        backend.socket.on('data', () => {});
        backend.socket.resume();
        backendSink.end();
      }
      clientSink.end();
      clientSink.dispose();
      backendSink.dispose();
      const sockets = kept ? [client.socket] : [client.socket, backend.socket];
      const timer = setTimeout(() => {
        for (const socket of sockets) socket.destroy();
      }, CLOSE_GRACE_MS);
      timer.unref();
      // Cleared as soon as the sides are closed: it holds the whole session until it fires.
      let open = sockets.length;
      const closed = () => {
        if (--open === 0) clearTimeout(timer);
      };
      for (const socket of sockets) {
        if (socket.destroyed) closed();
        else socket.once('close', closed);
      }
      for (const h of handlers) {
        try {
          h.onClose?.();
        } catch (err) {
          session.log.warn('middleware onClose failed', { error: String(err) });
        }
      }
      resolve({ reason, error, bytesToClient: traffic.bytesToClient, bytesToBackend: traffic.bytesToBackend, backendKept: kept });
    };

    const backendGone = (cause?: unknown, said = lastBackendError !== null && isFatal(lastBackendError)) => {
      if (terminating) return finish('client-terminate');
      // A backend that said why it is leaving (e.g. 57P01 on shutdown) has already told the client.
      const error = said
        ? undefined
        : new PgError('FATAL', SqlState.ConnectionFailure, 'backend connection closed unexpectedly', {
            cause,
          });
      finish('backend-eof', error);
    };

    // What must wait until the JavaScript relay has the sockets back.
    const whenJs = (fn: () => void) => {
      if (done) return;
      if (native) native.whenJs(fn);
      else fn();
    };

    const nativeStopped = (end: NativeRelayEnd, waiting: (() => void)[]) => {
      terminating ||= end.terminated;
      batch.begin();
      try {
        for (const fn of waiting) if (!done) fn();
      } finally {
        batch.end();
      }
      onRelayKind?.('js', true);
    };

    // The native relay ended with the session: Node's handles read again only to see the close.
    const nativeEnded = (end: NativeRelayEnd) => {
      // A held Terminate never reached the backend: `finish` sends one unless it keeps the backend.
      terminating ||= end.terminated && end.reason !== 'client-terminate';
      backendUnclean ||= end.terminateSplit || end.clientMidMessage || end.backendMidMessage;
      switch (end.reason) {
        case 'client-terminate':
          finish('client-terminate');
          break;
        case 'client-eof':
        case 'client-error':
          // No Terminate after half a message: the backend sees the EOF instead.
          if (end.backendMidMessage) terminating = true;
          finish(end.terminated ? 'client-terminate' : 'client-eof');
          break;
        case 'client-violation':
          finish('error', invalidMessageLength(end.violation!.code, end.violation!.length));
          break;
        case 'backend-violation':
          backendGone(invalidMessageLength(end.violation!.code, end.violation!.length));
          break;
        default:
          // An error cannot follow half a message to the client.
          backendGone(new Error(`backend ${end.reason} (errno ${end.errno})`), end.backendSaidFatal || end.clientMidMessage);
      }
      client.socket.resume();
      if (!keptBackend) backend.socket.resume();
    };

    // A close the native relay could not reach a message boundary for (its peers are stuck).
    const abortNative = (error?: PgError) => {
      const end = native?.abort();
      if (!end) return;
      terminating ||= end.terminated || end.backendMidMessage;
      // Nothing can follow half a message.
      finish('closed', end.clientMidMessage ? undefined : error);
      client.socket.destroy();
      backend.socket.destroy();
    };

    try {
      const chain = buildChain(middleware, session, gated(fromClient$), gated(fromBackend$));
      handlers = chain.handlers;
      const streamToBackend = handlers.every((h) => h.frontend === undefined);
      const streamToClient = handlers.every((h) => h.backend === undefined);
      client.framer.bound({
        maxAssembled: maxMessageSize,
        stream: streamToBackend ? { codes: [COPY_DATA], sink: (_c, src, off, len, last) => backendSink.writePiece(src, off, len, last) } : undefined,
      });
      backend.framer.bound({
        maxAssembled: maxMessageSize,
        stream: streamToClient ? { codes: [COPY_DATA, DATA_ROW], sink: (_c, src, off, len, last) => clientSink.writePiece(src, off, len, last) } : undefined,
      });
      const timings = observer?.timings;
      const quiet =
        nativeAllowed &&
        (observer === undefined || timings !== undefined) &&
        handlers.every((h) => h.frontend === undefined && h.backend === undefined) &&
        !client.leftover?.length &&
        !backend.leftover?.length &&
        client.framer.buffered === 0 &&
        backend.framer.buffered === 0;
      if (quiet) {
        try {
          native = NativePhase.start({
            client: client.socket,
            backend: backend.socket,
            limits: { client: Limits.message, backend: Limits.message },
            state,
            timings,
            parameterStatus: (body) => {
              const { name, value } = parameterStatus(body);
              session.serverParams.set(name, value);
            },
            stopped: nativeStopped,
            ended: nativeEnded,
            holdTerminate: keepBackend,
          });
        } catch (err) {
          // e.g. no descriptor left to duplicate: the JavaScript relay needs none.
          session.log.warn('native relay did not start; relaying in JavaScript', { error: String(err) });
        }
      }
      onRelayKind?.(native ? 'native' : 'js', false);
      // The writer first: notices held since login leave before a close that was waiting too.
      session.onClientWriter((m) => {
        if (!done) whenJs(() => clientSink.writeMessage(m));
      });
      session.onCloseRequest((error) => {
        whenJs(() => finish('closed', error));
        // A native session reaches a message boundary when its peers read and write; one that
        // does not (a client that stopped reading mid-result) is cut off as the JavaScript relay
        // would cut it off: after the close grace period.
        if (native?.active) setTimeout(() => abortNative(error), CLOSE_GRACE_MS).unref();
      });
      const toClient = (m: BackendMessage) => {
        if (m.code === ERROR_RESPONSE) lastBackendError = m;
        else if (m.code === PARAMETER_STATUS && m.type === 'ParameterStatus') {
          const { name, value } = m.body();
          session.serverParams.set(name, value);
        }
        // Written before the state moves on: a close waiting for idle must follow this message.
        clientSink.writeMessage(m);
        state.toClient(m);
      };
      const toBackend = (m: FrontendMessage) => {
        if (m.code === TERMINATE && keepBackend) {
          // Held back: the backend may serve another session (else `finish` sends it on).
          finish('client-terminate');
          return;
        }
        backendSink.writeMessage(m);
        observer?.toBackend(m);
        if (m.code === TERMINATE) terminating = true;
      };
      subs.push(
        chain.toClient$.subscribe({
          // While the native relay runs only a middleware's injection arrives: it waits for the handover.
          next: (m) => (native?.active ? whenJs(() => toClient(m)) : toClient(m)),
          complete: () => backendGone(),
          error: (err) => (err instanceof BackendFailure ? backendGone(err.cause) : finish('error', asPgError(err))),
        }),
      );
      subs.push(
        chain.toBackend$.subscribe({
          next: (m) => (native?.active ? whenJs(() => toBackend(m)) : toBackend(m)),
          complete: () => finish(terminating ? 'client-terminate' : 'client-eof'),
          error: (err) => (err instanceof ConnectionClosed ? finish('client-eof') : finish('error', asPgError(err))),
        }),
      );
    } catch (err) {
      finish('error', asPgError(err));
    }
  });
}

class BackendFailure extends Error {
  constructor(override readonly cause: unknown) {
    super('backend connection failed');
  }
}

/** A ParameterStatus body as the native relay captured it, read by the protocol's own decoder. */
function parameterStatus(body: Buffer): { name: string; value: string } {
  const frame = Buffer.alloc(5 + body.length);
  frame[0] = PARAMETER_STATUS;
  frame.writeInt32BE(4 + body.length, 1);
  body.copy(frame, 5);
  const m = backendMessage(PARAMETER_STATUS, frame, 0, frame.length);
  if (m.type !== 'ParameterStatus') throw new Error('not a ParameterStatus');
  return m.body();
}

function isFatal(m: BackendMessage): boolean {
  if (m.type !== 'ErrorResponse') return false;
  const sev = m.body().severityV ?? m.body().severity;
  return sev === 'FATAL' || sev === 'PANIC';
}
