import net from 'node:net';
import { backendMessage, Framer, type BackendMessage } from '../../src/protocol/index.js';

/** A bare TCP client for sending hand-made bytes and reading what the proxy answers. */
export class RawClient implements AsyncDisposable {
  private framer = new Framer();
  readonly messages: BackendMessage[] = [];
  readonly raw: Buffer[] = [];
  /** Every byte received, framed or not. */
  bytes = 0;
  /** Resolves when the connection closes. */
  readonly closed: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.raw.push(chunk);
      this.bytes += chunk.length;
      try {
        this.framer.push(chunk, (code, source, offset, length) =>
          this.messages.push(backendMessage(code, Buffer.from(source.subarray(offset, offset + length)))),
        );
      } catch {
        // single-byte answers (S/N) are not framed messages; tests read `raw` for those
      }
    });
    socket.on('error', () => {});
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
  }

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }

  write(b: Buffer): void {
    this.socket.write(b);
  }

  /** Waits for the server to close the connection (or `ms` to pass: then rejects). */
  async closedWithin(ms: number, what = 'the connection'): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.closed,
      new Promise((_r, reject) => (timer = setTimeout(() => reject(new Error(`${what}: still open after ${ms} ms`)), ms))),
    ]);
    clearTimeout(timer);
  }

  errors(): Record<string, string | undefined>[] {
    return this.messages.filter((m) => m.type === 'ErrorResponse').map((m) => m.body() as Record<string, string>);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.socket.destroy();
  }
}
