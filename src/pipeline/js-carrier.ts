// The JavaScript carrier: a session's bytes through Node's sockets, framed by the protocol's
// Framer. It carries TLS sessions, and every session where the native addon is not built or is
// turned off (--no-nativeRelay).
import type { Duplex } from 'node:stream';
import {
  backendFlags,
  backendMessage,
  BE_READY,
  frontendFlags,
  frontendMaxLength,
  frontendMessage,
  FE_TERMINATES,
  PgError,
  readyStatus,
  type FrameSink,
  type Framer,
  type Message,
  type TransactionStatus,
} from '../protocol/index.js';
import {
  closeSockets,
  type Carrier,
  type CarrierEndpoint,
  type CarrierEndReason,
  type CarrierFinals,
  type CarrierOptions,
  type CarrierStatus,
  type ReleasedBackend,
} from './carrier.js';
import { SessionBook } from './session-book.js';
import { readSocket, SocketSink, type Pausable } from '../transport/socket-io.js';
import { COUNTED, FULL, OBSERVED } from './wants.js';

const COPY_DATA = 0x64;
const DATA_ROW = 0x44;

/** A socket's reading, stopped by its peer's backpressure or by the carrier's user; it reads when neither holds it. */
class ReadGate implements Pausable {
  private byPressure = false;
  private byUser = false;

  constructor(private readonly socket: Duplex) {}

  pause(): void {
    this.byPressure = true;
    this.stop();
  }

  resume(): void {
    this.byPressure = false;
    if (!this.byUser) this.socket.resume();
  }

  hold(held: boolean): void {
    this.byUser = held;
    if (held) this.stop();
    else if (!this.byPressure) this.socket.resume();
  }

  /** A pause right after a resume is undone by the resume's own next tick (Node starts the read there): pause again after it. */
  private stop(): void {
    this.socket.pause();
    process.nextTick(this.again);
  }

  private readonly again = (): void => {
    if (this.byPressure || this.byUser) this.socket.pause();
  };
}

export class JsCarrier implements Carrier {
  readonly kind = 'js';
  private readonly book: SessionBook;
  private readonly clientGate: ReadGate;
  private readonly backendGate: ReadGate;
  private readonly clientSink: SocketSink;
  private readonly backendSink: SocketSink;
  private detachClient = () => {};
  private detachBackend = () => {};
  private finished = false;

  constructor(
    private readonly client: CarrierEndpoint,
    private readonly backend: CarrierEndpoint,
    private readonly opts: CarrierOptions,
  ) {
    this.book = new SessionBook(opts.timings);
    this.clientGate = new ReadGate(client.socket);
    this.backendGate = new ReadGate(backend.socket);
    this.clientSink = new SocketSink(client.socket, this.backendGate);
    this.backendSink = new SocketSink(backend.socket, this.clientGate);
    const { frontend, backend: fromBackend } = opts.wants;
    // Large CopyData and DataRow that no middleware reads (nor observes) stream through in pieces, never held whole.
    const toBackendStreamed = [COPY_DATA].filter((c) => frontend[c] === 0);
    const toClientStreamed = [COPY_DATA, DATA_ROW].filter((c) => fromBackend[c] === 0);
    client.framer.bound({
      maxAssembled: opts.maxMessageSize,
      typeMaxLength: frontendMaxLength,
      stream: toBackendStreamed.length > 0 ? { codes: toBackendStreamed, sink: (_c, src, off, len, last) => this.backendSink.writePiece(src, off, len, last) } : undefined,
    });
    backend.framer.bound({
      maxAssembled: opts.maxMessageSize,
      stream: toClientStreamed.length > 0 ? { codes: toClientStreamed, sink: (_c, src, off, len, last) => this.clientSink.writePiece(src, off, len, last) } : undefined,
    });
  }

  start(): void {
    this.batch(() => {
      for (const f of this.client.leftover ?? []) this.fromClient(f.code, f.raw, 0, f.raw.length);
      for (const f of this.backend.leftover ?? []) this.fromBackend(f.code, f.raw, 0, f.raw.length);
    });
    if (this.finished) return;
    this.detachClient = readSocket(this.client.socket, {
      chunk: (chunk) => this.read(this.client.framer, chunk, this.fromClient, 'client'),
      end: () => this.end(this.reusable() ? 'released' : 'client-eof'),
      error: (err) => this.end('client-error', undefined, err),
    });
    if (this.finished) return;
    this.detachBackend = readSocket(this.backend.socket, {
      chunk: (chunk) => this.read(this.backend.framer, chunk, this.fromBackend, 'backend'),
      end: () => this.end('backend-eof'),
      error: (err) => this.end('backend-error', undefined, err),
    });
  }

  get transactionStatus(): TransactionStatus {
    return this.book.transactionStatus;
  }

  get unanswered(): number {
    return this.book.unanswered;
  }

  watchIdle(): void {
    this.book.watchIdle(() => this.opts.events.idle());
  }

  toClient(m: Message): void {
    if (this.finished) return;
    this.clientSink.writeMessage(m);
    if (backendFlags[m.code]! & BE_READY) this.book.ready(readyStatus(m));
  }

  toBackend(m: Message): void {
    if (this.finished || this.releasing(m.code)) return;
    this.backendSink.writeMessage(m);
    this.book.toBackend(m.code);
  }

  pause(side: 'client' | 'backend'): void {
    (side === 'client' ? this.clientGate : this.backendGate).hold(true);
  }

  resume(side: 'client' | 'backend'): void {
    (side === 'client' ? this.clientGate : this.backendGate).hold(false);
  }

  status(): CarrierStatus {
    const b = this.book;
    return {
      transactionStatus: b.transactionStatus,
      unanswered: b.unanswered,
      terminated: b.terminated,
      backendSaidFatal: b.backendSaidFatal,
      bytesToClient: this.clientSink.bytesWritten,
      bytesToBackend: this.backendSink.bytesWritten,
      clientMidMessage: this.clientSink.midMessage,
      backendMidMessage: this.backendSink.midMessage,
      reusable: this.reusable(),
    };
  }

  /** JavaScript writes whole messages (a streamed one aside, which `midMessage` tells): it can stop at once. */
  stop(): void {
    this.end('stopped');
  }

  abort(): void {
    this.end('stopped');
  }

  close({ toClient, toBackend, keepBackend }: CarrierFinals): void {
    const owed = toClient !== undefined && !this.clientSink.midMessage;
    if (owed) this.clientSink.writeMessage(toClient);
    if (toBackend && !keepBackend && !this.backendSink.midMessage) this.backendSink.writeMessage(toBackend);
    this.clientSink.flush();
    this.backendSink.flush();
    this.clientSink.dispose();
    this.backendSink.dispose();
    closeSockets(this.client.socket, keepBackend ? undefined : this.backend.socket, this.book.terminated && !owed);
  }

  takeBackend(): ReleasedBackend {
    this.backend.socket.pause();
    return { socket: this.backend.socket, framer: this.backend.framer, leftover: [] };
  }

  private batch(fn: () => void): void {
    this.clientSink.hold();
    this.backendSink.hold();
    try {
      fn();
    } finally {
      this.clientSink.release();
      this.backendSink.release();
    }
  }

  /** One chunk from a side: everything it makes the pipeline write leaves at its end, one write per socket. */
  private read(framer: Framer, chunk: Buffer, sink: FrameSink, side: 'client' | 'backend'): void {
    this.clientSink.hold();
    this.backendSink.hold();
    try {
      framer.push(chunk, sink);
    } catch (err) {
      if (err instanceof PgError) this.end(`${side}-violation`, err);
      else this.end(`${side}-error`, undefined, err);
    } finally {
      this.clientSink.release();
      this.backendSink.release();
    }
  }

  private readonly fromClient: FrameSink = (code, source, offset, length) => {
    if (this.finished) return;
    this.book.fromClient(code);
    const want = this.opts.wants.frontend[code];
    if (want === FULL) return this.opts.events.fromClient(frontendMessage(code, source, offset, length));
    if (this.releasing(code)) return;
    this.backendSink.write(source, offset, length);
    this.book.toBackend(code);
    // Observed: forwarded above, shown to the pipeline now (its output for it is not written).
    if (want === OBSERVED) this.opts.events.observedFromClient(frontendMessage(code, source, offset, length));
    else if (want === COUNTED) this.opts.events.countedFromClient(code, 1);
  };

  private readonly fromBackend: FrameSink = (code, source, offset, length) => {
    if (this.finished) return;
    this.book.fromBackend(code, source, offset, length);
    const want = this.opts.wants.backend[code];
    if (want === FULL) return this.opts.events.fromBackend(backendMessage(code, source, offset, length));
    this.clientSink.write(source, offset, length);
    if (backendFlags[code]! & BE_READY) this.book.ready(String.fromCharCode(source[offset + 5]!) as TransactionStatus);
    if (want === OBSERVED) this.opts.events.observedFromBackend(backendMessage(code, source, offset, length));
    else if (want === COUNTED) this.opts.events.countedFromBackend(code, 1);
  };

  /** A Terminate for a backend that can be reused is kept from it: the carrier ends, giving the backend back. */
  private releasing(code: number): boolean {
    if (!(frontendFlags[code]! & FE_TERMINATES) || !this.reusable()) return false;
    this.book.terminated = true;
    this.end('released');
    return true;
  }

  private reusable(): boolean {
    const b = this.book;
    return (
      this.opts.keepBackend === true &&
      b.idle &&
      !b.batchOpen &&
      !b.backendSaidFatal &&
      this.backend.framer.buffered === 0 &&
      !this.backend.framer.midStream &&
      !this.backendSink.midMessage
    );
  }

  private end(reason: CarrierEndReason, error?: PgError, cause?: unknown): void {
    if (this.finished) return;
    this.finished = true;
    this.detachClient();
    this.detachBackend();
    if (reason === 'stopped' || reason === 'released') this.backend.socket.pause();
    if (reason === 'stopped') this.client.socket.pause();
    this.opts.events.ended({ reason, status: this.status(), error, cause });
  }
}
