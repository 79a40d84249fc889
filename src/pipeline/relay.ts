import type { Duplex } from 'node:stream';
import type { Subscription } from 'rxjs';
import {
  asPgError,
  backendMessage,
  be,
  fe,
  frontendMessage,
  PgError,
  SqlState,
  type BackendMessage,
  type Framer,
  type FrameSink,
  type FrontendMessage,
} from '../protocol/index.js';
import { buildChain } from './chain.js';
import type { Middleware } from './middleware.js';
import type { Session } from './session.js';
import { fromSocket, SocketSink, type ChunkBatch, type Frame } from './socket-io.js';

const TERMINATE = 'X'.charCodeAt(0);
const ERROR_RESPONSE = 'E'.charCodeAt(0);
const PARAMETER_STATUS = 'S'.charCodeAt(0);

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
}

/**
 * Sees every message the backend is sent (after all middleware) and every message it sends
 * (before any), without being a stage of the chain: for the proxy's own always-on accounting,
 * where an RxJS stage per message would cost more than the work itself.
 */
export interface RelayObserver {
  toBackend(m: FrontendMessage): void;
  fromBackend(m: BackendMessage): void;
}

export interface RelayOptions {
  observer?: RelayObserver;
  /** Called once as the relay starts with a live view of its byte counts. */
  onTraffic?: (traffic: RelayTraffic) => void;
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
  { observer, onTraffic }: RelayOptions = {},
): Promise<RelayEnd> {
  const state = session.state;
  state.phase = 'relay';
  const clientSink = new SocketSink(client.socket, backend.socket);
  const backendSink = new SocketSink(backend.socket, client.socket);
  onTraffic?.({
    get bytesToClient() {
      return clientSink.bytesWritten;
    },
    get bytesToBackend() {
      return backendSink.bytesWritten;
    },
  });

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
  const fromClient$ = fromSocket(
    client.socket,
    client.framer,
    (code, source, offset, length) => {
      state.fromClient(code);
      return frontendMessage(code, source, offset, length);
    },
    { leftover: client.leftover, batch },
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
    const subs: Subscription[] = [];
    let handlers: ReturnType<typeof buildChain>['handlers'] = [];

    const finish = (reason: RelayEndReason, error?: PgError) => {
      if (done) return;
      done = true;
      state.phase = 'closing';
      for (const s of subs) s.unsubscribe();
      if (error) {
        const fatal = error.fatal ? error : new PgError('FATAL', error.sqlstate, error.message, error);
        clientSink.write(be.errorResponse(fatal.toFields()).raw);
        error = fatal;
      }
      if (reason !== 'backend-eof' && !terminating) backendSink.write(fe.terminate().raw);
      clientSink.end();
      backendSink.end();
      clientSink.dispose();
      backendSink.dispose();
      const timer = setTimeout(() => {
        client.socket.destroy();
        backend.socket.destroy();
      }, CLOSE_GRACE_MS);
      timer.unref();
      // Cleared as soon as both sides are closed: it holds the whole session until it fires.
      let open = 2;
      const closed = () => {
        if (--open === 0) clearTimeout(timer);
      };
      for (const socket of [client.socket, backend.socket]) {
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
      resolve({ reason, error, bytesToClient: clientSink.bytesWritten, bytesToBackend: backendSink.bytesWritten });
    };

    const backendGone = (cause?: unknown) => {
      if (terminating) return finish('client-terminate');
      // A backend that said why it is leaving (e.g. 57P01 on shutdown) has already told the client.
      const said = lastBackendError && isFatal(lastBackendError);
      const error = said
        ? undefined
        : new PgError('FATAL', SqlState.ConnectionFailure, 'backend connection closed unexpectedly', {
            cause,
          });
      finish('backend-eof', error);
    };

    try {
      const chain = buildChain(middleware, session, fromClient$, fromBackend$);
      handlers = chain.handlers;
      // The writer first: notices held since login leave before a close that was waiting too.
      session.onClientWriter((m) => {
        if (!done) clientSink.writeMessage(m);
      });
      session.onCloseRequest((error) => finish('closed', error));
      subs.push(
        chain.toClient$.subscribe({
          next: (m) => {
            if (m.code === ERROR_RESPONSE) lastBackendError = m;
            else if (m.code === PARAMETER_STATUS && m.type === 'ParameterStatus') {
              const { name, value } = m.body();
              session.serverParams.set(name, value);
            }
            // Written before the state moves on: a close waiting for idle must follow this message.
            clientSink.writeMessage(m);
            state.toClient(m);
          },
          complete: () => backendGone(),
          error: (err) => (err instanceof BackendFailure ? backendGone(err.cause) : finish('error', asPgError(err))),
        }),
      );
      subs.push(
        chain.toBackend$.subscribe({
          next: (m) => {
            backendSink.writeMessage(m);
            observer?.toBackend(m);
            if (m.code === TERMINATE) terminating = true;
          },
          complete: () => finish(terminating ? 'client-terminate' : 'client-eof'),
          error: (err) => finish('error', asPgError(err)),
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

function isFatal(m: BackendMessage): boolean {
  if (m.type !== 'ErrorResponse') return false;
  const sev = m.body().severityV ?? m.body().severity;
  return sev === 'FATAL' || sev === 'PANIC';
}
