/**
 * Where log lines go: a file descriptor written without blocking the event loop and without
 * losing lines when the process ends.
 *
 * `process.stdout` on a pipe (a container runtime, journald, `| tee`) writes asynchronously once
 * the pipe is full: what it still holds is lost when the process exits or crashes — measured, a
 * burst of 20 000 lines followed by `process.exit` kept about 8 000. A WriteStream to a file loses
 * its queue the same way. Here each line is written at once when the descriptor takes it (so it
 * is out before whatever the proxy does next, a client's ReadyForQuery included); when a pipe is
 * full the lines wait, in order, and are retried shortly after; and at exit, however the process
 * exits short of SIGKILL, whatever waits is written synchronously, waiting up to
 * {@link EXIT_FLUSH_MS} for a slow reader.
 */
import { closeSync, writeSync } from 'node:fs';

/** Most bytes held while a pipe is full; lines beyond it are dropped and counted. */
export const MAX_PENDING_BYTES = 8 * 1024 * 1024;
/** Waiting lines are written in chunks of up to this size. */
const CHUNK_BYTES = 256 * 1024;
/** At exit, how long a full pipe is waited for. */
export const EXIT_FLUSH_MS = 2000;

const writers = new Set<FdWriter>();
let exitHookInstalled = false;

// While held (see holdLines), each writer joins its lines here and writes them in one write.
let holding = false;
let heldBy: FdWriter[] = [];

/**
 * Holds every writer's lines until {@link writeHeldLines}: the native carrier's batches of one
 * hand-over log their statements this way, one write(2) for all of them instead of one per line,
 * before anything the chain wrote in that hand-over leaves (src/pipeline/carrier.ts).
 */
export function holdLines(): void {
  holding = true;
}

/** Writes what each writer held, in one write each, and stops holding. */
export function writeHeldLines(): void {
  if (!holding) return;
  holding = false;
  const held = heldBy;
  heldBy = [];
  for (const w of held) w.writeHeld();
}

export class FdWriter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private dropped = 0;
  private retry: NodeJS.Timeout | undefined;
  private retryMs = 1;
  private error: Error | undefined;
  /** Failed for good: later lines are not its to write (the owner sends them elsewhere). */
  private broken = false;
  /** Lines written while held, joined (see holdLines). */
  private held = '';

  /**
   * @param onError the descriptor failed (not merely full): it is given up, and the lines not
   *   written are passed on.
   * @param droppedLine the line that reports lines dropped while the output was not read.
   * @param ownsFd close the descriptor when done with it (a log file; not stdout).
   */
  constructor(
    private readonly fd: number,
    private readonly onError: (err: Error, unwritten: string) => void,
    private readonly droppedLine: (count: number) => string,
    private readonly ownsFd = false,
  ) {
    writers.add(this);
    if (!exitHookInstalled) {
      exitHookInstalled = true;
      process.once('exit', () => {
        for (const w of writers) w.flushAtExit();
      });
    }
  }

  write(text: string): void {
    if (this.broken) return;
    if (holding) {
      if (this.held === '') heldBy.push(this);
      this.held += text;
      return;
    }
    if (this.pending.length > 0) return this.hold(Buffer.from(text, 'utf8'));
    // The string goes to the descriptor as it is (Node encodes it on the stack): a Buffer is made
    // only for what a full descriptor did not take.
    let written: number;
    try {
      written = writeSync(this.fd, text);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') {
        this.error = err as Error;
        return this.fail(Buffer.from(text, 'utf8'));
      }
      written = 0;
    }
    if (written === text.length && written === Buffer.byteLength(text, 'utf8')) return;
    const data = Buffer.from(text, 'utf8');
    if (written >= data.length) return;
    const rest = this.tryWrite(data.subarray(written));
    if (rest === undefined) return this.fail(data.subarray(written));
    if (written + rest < data.length) {
      this.hold(data.subarray(written + rest));
      this.scheduleRetry();
    }
  }

  writeHeld(): void {
    const text = this.held;
    this.held = '';
    if (text !== '') this.write(text);
  }

  /** Stops using the descriptor (a reopened log file): what waits is written first. */
  close(): void {
    this.flushAtExit();
    this.release();
  }

  private release(): void {
    writers.delete(this);
    if (this.retry) clearTimeout(this.retry);
    if (!this.ownsFd) return;
    try {
      closeSync(this.fd);
    } catch {
      // Already unusable: nothing more to do with it.
    }
  }

  private hold(data: Buffer, always = false): void {
    if (!always && this.pendingBytes + data.length > MAX_PENDING_BYTES) {
      this.dropped++;
      return;
    }
    this.pending.push(data);
    this.pendingBytes += data.length;
  }

  /** Bytes written (possibly 0 when the descriptor is full), or undefined after a real error. */
  private tryWrite(data: Buffer): number | undefined {
    let off = 0;
    try {
      while (off < data.length) off += writeSync(this.fd, data, off);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') {
        this.error = err as Error;
        return undefined;
      }
    }
    return off;
  }

  private fail(unwritten: Buffer): void {
    const rest = Buffer.concat([unwritten, ...this.pending]).toString('utf8');
    this.pending = [];
    this.pendingBytes = 0;
    this.broken = true;
    this.release();
    this.onError(this.error ?? new Error('write failed'), rest);
  }

  private scheduleRetry(): void {
    if (this.retry) return;
    this.retry = setTimeout(() => {
      this.retry = undefined;
      this.drain();
    }, this.retryMs);
    this.retry.unref();
  }

  /**
   * Writes what waits, a chunk at a time, until the descriptor is full again: then tries again in
   * 1 ms, or later (up to 50 ms) while nothing at all gets through. Reports dropped lines once
   * nothing waits.
   */
  private drain(): void {
    while (this.pending.length > 0) {
      const chunk = this.takeChunk();
      const written = this.tryWrite(chunk);
      if (written === undefined) return this.fail(chunk);
      if (written < chunk.length) {
        this.pending.unshift(chunk.subarray(written));
        this.pendingBytes -= written;
        this.retryMs = written > 0 ? 1 : Math.min(this.retryMs * 2, 50);
        return this.scheduleRetry();
      }
      this.pendingBytes -= written;
    }
    this.retryMs = 1;
    this.reportDropped();
  }

  /** The waiting lines at the head, joined up to {@link CHUNK_BYTES}. */
  private takeChunk(): Buffer {
    let n = 0;
    let bytes = 0;
    while (n < this.pending.length && (n === 0 || bytes + this.pending[n]!.length <= CHUNK_BYTES)) bytes += this.pending[n++]!.length;
    const parts = this.pending.splice(0, n);
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, bytes);
  }

  private reportDropped(): void {
    if (this.dropped === 0) return;
    const n = this.dropped;
    this.dropped = 0;
    this.write(this.droppedLine(n));
  }

  private flushAtExit(): void {
    if (this.held !== '') this.hold(Buffer.from(this.held, 'utf8'), true);
    this.held = '';
    const deadline = Date.now() + EXIT_FLUSH_MS;
    const nap = new Int32Array(new SharedArrayBuffer(4));
    if (this.dropped > 0) this.hold(Buffer.from(this.droppedLine(this.dropped), 'utf8'), true);
    this.dropped = 0;
    while (this.pending.length > 0 && Date.now() < deadline) {
      const chunk = this.takeChunk();
      const written = this.tryWrite(chunk);
      if (written === undefined) return;
      this.pendingBytes -= written;
      if (written < chunk.length) {
        this.pending.unshift(chunk.subarray(written));
        Atomics.wait(nap, 0, 0, 2);
      }
    }
  }
}
