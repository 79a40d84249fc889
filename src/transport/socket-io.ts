// The global `Buffer` is an accessor on globalThis: a getter call on every use.
import { Buffer } from 'node:buffer';
import type { Duplex } from 'node:stream';
import { chunkRouteOf } from './own-read.js';
import { Framer, frameView, LazyMessage, PgError, SqlState, type FrameSink, type Message } from '../protocol/index.js';

export interface Frame {
  code: number;
  raw: Buffer;
}

export class ConnectionClosed extends PgError {
  /** Which peer closed: 'client' or 'backend'. */
  constructor(readonly who: string) {
    super('FATAL', SqlState.ConnectionFailure, `${who} closed the connection`);
  }
}

/** What a socket reader is told. */
export interface SocketReading {
  /** One chunk, as read. */
  chunk(chunk: Buffer): void;
  /** EOF, or the socket closed. */
  end(): void;
  error(err: unknown): void;
}

/**
 * Reads a socket until the returned function is called (which removes every listener it added).
 * A socket with its own read regions (`own-read.ts`) hands its chunks to the reader directly, not
 * as 'data'. A socket already at its end is reported so at once.
 */
export function readSocket(socket: Duplex, reading: SocketReading): () => void {
  if (socket.destroyed || socket.readableEnded) {
    reading.end();
    return () => {};
  }
  const route = chunkRouteOf(socket);
  const direct = route !== undefined && route.direct === undefined;
  const onChunk = reading.chunk;
  const onEnd = () => reading.end();
  const onError = (err: unknown) => reading.error(err);
  if (direct) route.direct = onChunk;
  else socket.on('data', onChunk);
  socket.on('end', onEnd);
  socket.on('error', onError);
  socket.on('close', onEnd);
  socket.resume();
  return () => {
    if (direct) route.direct = undefined;
    else socket.off('data', onChunk);
    socket.off('end', onEnd);
    socket.off('error', onError);
    socket.off('close', onEnd);
  };
}

/** Whatever can stop and go on reading: a socket, or a gate in front of one. */
export interface Pausable {
  pause(): unknown;
  resume(): unknown;
}

/**
 * Collects outgoing messages and writes them together, so everything one incoming chunk produced
 * leaves in a single write (or writev): while held (`hold`/`release`, around the handling of a
 * chunk) writes only queue and the release flushes; a write outside any hold is flushed in a
 * microtask. When the socket's buffer is full it pauses `feeder` (the socket whose data is being
 * written here) until 'drain'.
 */
export class SocketSink {
  /** Runs queued before the current one, which leave with it (a message in between broke them). */
  private pending: Buffer[] = [];
  /**
   * A run of messages that lie side by side in one buffer (`run[runStart, runEnd)`), written as
   * one range: a relayed chunk whose messages all pass untouched leaves as that very chunk.
   */
  private run: Buffer | undefined = undefined;
  private runStart = 0;
  private runEnd = 0;
  private scheduled = false;
  private held = 0;
  private paused = false;
  // Set between the first and last piece of a streamed message: whole messages wait meanwhile.
  private streaming = false;
  private deferred: Message[] = [];
  bytesWritten = 0;

  constructor(
    private readonly socket: Duplex,
    private readonly feeder?: Pausable,
  ) {
    socket.on('drain', this.onDrain);
  }

  /** Queues a message: the range it lies in when it knows one (see `LazyMessage`), else its bytes. */
  writeMessage(m: Message): void {
    if (this.streaming) this.deferred.push(m);
    else if (m instanceof LazyMessage) this.write(m.source, m.offset, m.length);
    else this.write(m.raw);
  }

  /**
   * Queues `source[offset, offset + length)` (all of `source` by default). A range that directly
   * follows the last one in the same buffer joins it instead of becoming a write of its own.
   */
  write(source: Buffer, offset = 0, length = source.length - offset): void {
    if (source === this.run && offset === this.runEnd) {
      this.runEnd += length;
      return;
    }
    this.endRun();
    this.run = source;
    this.runStart = offset;
    this.runEnd = offset + length;
    if (this.held === 0 && !this.scheduled) {
      this.scheduled = true;
      queueMicrotask(this.flush);
    }
  }

  /**
   * Queues a piece of a message streamed through (see `PieceSink`). Messages written meanwhile
   * (a middleware's injection) wait for the piece marked `last`, so nothing lands inside it.
   */
  writePiece(source: Buffer, offset: number, length: number, last: boolean): void {
    this.streaming = !last;
    if (length > 0) this.write(source, offset, length);
    if (last && this.deferred.length > 0) {
      const waiting = this.deferred;
      this.deferred = [];
      for (const m of waiting) this.writeMessage(m);
    }
  }

  /** True while a streamed message is half written: nothing else may be written to this socket. */
  get midMessage(): boolean {
    return this.streaming;
  }

  /** Queues writes until the matching `release`. */
  hold(): void {
    this.held++;
  }

  release(): void {
    if (--this.held === 0 && this.run !== undefined) this.flush();
  }

  private endRun(): void {
    const run = this.run;
    if (run === undefined) return;
    this.pending.push(frameView(run, this.runStart, this.runEnd - this.runStart));
    this.run = undefined;
  }

  /** Writes everything queued now (used before closing a socket). */
  readonly flush = (): void => {
    this.scheduled = false;
    // Whatever was queued ends with the current run: most flushes are that run alone, written
    // without a list.
    const run = this.run;
    if (run === undefined) return;
    this.run = undefined;
    const last = frameView(run, this.runStart, this.runEnd - this.runStart);
    const before = this.pending;
    if (before.length > 0) this.pending = [];
    if (this.socket.destroyed || this.socket.writableEnded) return;
    let ok: boolean;
    if (before.length === 0) {
      ok = this.socket.write(last);
      this.bytesWritten += last.length;
    } else {
      this.socket.cork();
      for (const b of before) {
        this.socket.write(b);
        this.bytesWritten += b.length;
      }
      this.socket.write(last);
      this.bytesWritten += last.length;
      this.socket.uncork();
      ok = !this.socket.writableNeedDrain;
    }
    if (!ok && this.feeder && !this.paused) {
      this.paused = true;
      this.feeder.pause();
    }
  };

  private readonly onDrain = (): void => {
    if (this.paused && this.feeder) {
      this.paused = false;
      this.feeder.resume();
    }
  };

  /** Flushes and half-closes the socket once written. */
  end(): void {
    this.flush();
    if (!this.socket.destroyed && !this.socket.writableEnded) this.socket.end();
  }

  dispose(): void {
    this.socket.off('drain', this.onDrain);
  }
}

/**
 * A pull reader for the short async phases (startup, authentication, backend login), where one
 * side waits for the other's next message. `release()` hands over what was read ahead so the
 * relay can go on from exactly there.
 */
export class FrameReader {
  private queue: Frame[] = [];
  private waiter: { resolve: (f: Frame) => void; reject: (e: unknown) => void } | null = null;
  private failure: unknown = null;
  private readonly sink: FrameSink = (code, source, offset, length) => {
    this.queue.push({ code, raw: frameView(source, offset, length) });
  };

  /** `head`: what was read from `socket` already, framed before anything read from here on. */
  constructor(
    private readonly socket: Duplex,
    readonly framer: Framer,
    private readonly who: string,
    head?: Buffer,
  ) {
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('close', this.onEnd);
    socket.on('error', this.onError);
    socket.resume();
    if (head) this.onData(head);
  }

  private readonly onData = (chunk: Buffer) => {
    try {
      this.framer.push(chunk, this.sink);
    } catch (err) {
      this.fail(err);
      return;
    }
    // Startup phases exchange a few small messages; a peer that floods them is held back here.
    if (this.queue.length > 64) this.socket.pause();
    this.wake();
  };

  private readonly onEnd = () => this.fail(new ConnectionClosed(this.who));
  private readonly onError = (err: Error) => this.fail(err);

  private fail(err: unknown): void {
    if (this.failure === null) this.failure = err;
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    if (!w) return;
    if (this.queue.length > 0) {
      this.waiter = null;
      w.resolve(this.queue.shift()!);
    } else if (this.failure !== null) {
      this.waiter = null;
      w.reject(this.failure);
    }
  }

  /** Frames read but not yet taken, plus bytes framed only in part. */
  get hasBufferedInput(): boolean {
    return this.queue.length > 0 || this.framer.buffered > 0;
  }

  read(): Promise<Frame> {
    if (this.waiter) return Promise.reject(new Error('concurrent read'));
    if (this.queue.length > 0) {
      const f = this.queue.shift()!;
      if (this.queue.length <= 64) this.socket.resume();
      return Promise.resolve(f);
    }
    if (this.failure !== null) return Promise.reject(this.failure);
    this.socket.resume();
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  /** Stops reading and returns the frames read ahead; the socket is left paused. */
  release(): Frame[] {
    this.socket.pause();
    this.socket.off('data', this.onData);
    this.socket.off('end', this.onEnd);
    this.socket.off('close', this.onEnd);
    this.socket.off('error', this.onError);
    const rest = this.queue;
    this.queue = [];
    return rest;
  }
}
