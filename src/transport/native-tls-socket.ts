// A Duplex over a native TLS endpoint: what `tls.TLSSocket` offers the login code (plaintext
// reads and writes, backpressure, close, the negotiated version and cipher, the peer
// certificate), with the TLS records read and written by the addon on the socket's own
// descriptor. Node's socket is only held open underneath: it neither reads nor writes once
// taken over, and is destroyed with this one. Without a context it is a plain TCP socket on the
// same kind of endpoint (no TLS, `encrypted` false): native code borrows it the same way, poll
// handle and all (see `plainEndpointSocket`).
import { X509Certificate } from 'node:crypto';
import type net from 'node:net';
import { Duplex } from 'node:stream';
import { nativeTlsAddon, TlsEvent, type NativeTlsContext, type TlsAddon } from './native-tls.js';
import { guardSocket } from './socket-guard.js';

export interface NativeTlsOptions {
  server: boolean;
  /** Client: the SNI host name (not for an IP address, as libpq). */
  servername?: string;
  /** Client, verify-full: the host name or IP address the certificate must name (libpq's rules). */
  verifyHost?: string;
  /** Server, direct TLS: the bytes of the ClientHello already read from the socket. */
  prefix?: Buffer;
}

/** The parts of Node's stream handle (`socket._handle`) taking a socket over relies on. */
interface StreamHandle {
  fd?: unknown;
  reading?: boolean;
  readStop?(): number;
}

function handleOf(socket: net.Socket): StreamHandle | undefined {
  const h = (socket as unknown as { _handle?: StreamHandle | null })._handle;
  return h ?? undefined;
}

/** Whether `socket` has a descriptor the native TLS layer can take over (a TCP socket of Node's, open). */
export function canTakeOver(socket: net.Socket): boolean {
  const fd = handleOf(socket)?.fd;
  return !socket.destroyed && typeof fd === 'number' && fd >= 0;
}

/**
 * Stops Node reading `socket` at once (a paused socket may otherwise go on reading into its
 * buffer) and returns what it read and nobody took yet.
 */
export function stopReading(socket: net.Socket): Buffer {
  socket.pause();
  const unread: Buffer[] = [];
  for (let chunk: Buffer | null; (chunk = socket.read() as Buffer | null) !== null; ) unread.push(chunk);
  // Last: a read() asks the handle to read on. Nothing is read before the loop turns, so stopping
  // here loses nothing.
  const h = handleOf(socket);
  if (h?.reading && typeof h.readStop === 'function') {
    // As net.Socket#pause does for a socket with its own read buffer: the flag is Node's own.
    h.reading = false;
    h.readStop();
  }
  return Buffer.concat(unread);
}

/**
 * An error of the connection's, without a stack: it comes from C through a callback, so the stack
 * would only name this file's event handler. Nearly every TLS session ends with one (the client
 * resets the connection once it has gone, before or after our close_notify), and capturing a stack
 * and formatting it (stream `destroy` reads `err.stack`) cost some 25 µs per connection.
 */
function stacklessError(message: string): Error {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return new Error(message);
  } finally {
    Error.stackTraceLimit = limit;
  }
}

export class NativeTlsSocket extends Duplex {
  /** As `tls.TLSSocket`: readers that tell TLS sockets apart look at this (false: a plain endpoint). */
  readonly encrypted: boolean;
  /** What errors call it: a plain endpoint's are no TLS connection's. */
  private get connectionKind(): string {
    return this.encrypted ? 'the TLS connection' : 'the connection';
  }
  alpnProtocol: string | false = false;
  private endpoint: object | undefined;
  private secured = false;
  private failure: Error | undefined;
  private version = '';
  private cipher = '';
  private peer: X509Certificate | null | undefined = undefined;
  private writeDone: ((err?: Error | null) => void) | undefined;
  private finalDone: ((err?: Error | null) => void) | undefined;

  /**
   * Takes `raw` over (see `canTakeOver`) and starts the handshake; `handshake()` says how it
   * went. Bytes Node read and nobody took are lost: check `stopReading` first where they matter.
   * With `plain` (the addon's TLS functions) instead of a context: no TLS, open at once.
   */
  constructor(
    readonly raw: net.Socket,
    context: NativeTlsContext | { plain: TlsAddon },
    opts: NativeTlsOptions = { server: false },
  ) {
    super({ allowHalfOpen: false });
    stopReading(raw);
    const fd = handleOf(raw)?.fd as number;
    const onEvent = (event: TlsEvent, data?: Buffer | string) => this.onEvent(event, data);
    if ('plain' in context) {
      this.lib = context.plain;
      this.encrypted = false;
      this.secured = true;
      this.endpoint = this.lib.openPlain(fd, onEvent);
    } else {
      this.lib = context.lib;
      this.encrypted = true;
      this.endpoint = this.lib.open(context.handle, fd, opts.server, opts.servername ?? null, opts.verifyHost ?? null, opts.prefix ?? null, onEvent);
    }
    // Destroying Node's socket (an authentication timeout during the handshake) ends this one too.
    raw.once('close', () => this.destroy());
  }

  private readonly lib: TlsAddon;

  /** Resolves once the handshake is done; rejects with the reason it failed. */
  handshake(): Promise<void> {
    if (this.secured) return Promise.resolve();
    if (this.failure || this.destroyed) return Promise.reject(this.failure ?? new Error('the connection closed during the TLS handshake'));
    return new Promise((resolve, reject) => {
      const onSecure = () => {
        this.off('close', onClose);
        resolve();
      };
      const onClose = () => {
        this.off('secure', onSecure);
        reject(this.failure ?? new Error('the connection closed during the TLS handshake'));
      };
      this.once('secure', onSecure);
      this.once('close', onClose);
    });
  }

  private onEvent(event: TlsEvent, data?: Buffer | string): void {
    const endpoint = this.endpoint;
    if (endpoint === undefined) return;
    switch (event) {
      case TlsEvent.Secure: {
        const info = this.lib.info(endpoint);
        this.secured = true;
        this.version = info.version ?? '';
        this.cipher = info.cipher ?? '';
        this.alpnProtocol = info.alpn ? info.alpn : false;
        this.emit('secure');
        return;
      }
      case TlsEvent.Data:
        if (!this.push(data)) this.lib.setReading(endpoint, false);
        return;
      case TlsEvent.Eof:
        this.push(null);
        return;
      case TlsEvent.Error:
        this.failure = stacklessError(String(data));
        this.destroy(this.failure);
        return;
      case TlsEvent.Drain:
        return this.settle('writeDone');
      case TlsEvent.Finished:
        return this.settle('finalDone');
    }
  }

  private settle(which: 'writeDone' | 'finalDone', err?: Error): void {
    const done = this[which];
    this[which] = undefined;
    done?.(err);
  }

  override _read(): void {
    if (this.endpoint) this.lib.setReading(this.endpoint, true);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    const endpoint = this.endpoint;
    if (!endpoint) return callback(new Error(`${this.connectionKind} is closed`));
    if (!this.secured) {
      this.once('secure', () => this._write(chunk, _encoding, callback));
      return;
    }
    const r = this.lib.write(endpoint, chunk);
    if (r === 1) callback();
    else if (r === 0) this.writeDone = callback;
    else callback(new Error(this.lib.error(endpoint)));
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (err?: Error | null) => void): void {
    this._write(chunks.length === 1 ? chunks[0]!.chunk : Buffer.concat(chunks.map((c) => c.chunk)), 'binary', callback);
  }

  override _final(callback: (err?: Error | null) => void): void {
    const endpoint = this.endpoint;
    if (!endpoint || !this.secured) return callback();
    // A failed close_notify is no error of the session's: the connection is going anyway.
    if (this.lib.end(endpoint) === 0) this.finalDone = callback;
    else callback();
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    const endpoint = this.endpoint;
    this.endpoint = undefined;
    if (endpoint) this.lib.close(endpoint);
    this.raw.destroy();
    // Plaintext still queued in C is lost with the connection, as a TCP socket's unsent writes are.
    if (this.writeDone || this.finalDone) {
      const closed = err ?? stacklessError(`${this.connectionKind} closed`);
      this.settle('writeDone', closed);
      this.settle('finalDone', closed);
    }
    callback(err);
  }

  /**
   * The endpoint handle, for native code that carries the session on from here (the carrier:
   * `tls_endpoint_lend` in native/tls.h); undefined before the handshake and once closed.
   */
  get nativeHandle(): object | undefined {
    return this.secured ? this.endpoint : undefined;
  }

  /** "TLSv1.3" and the like, as `tls.TLSSocket#getProtocol`. */
  getProtocol(): string | null {
    return this.secured && this.encrypted ? this.version : null;
  }

  getCipher(): { name: string; standardName: string; version: string } {
    return { name: this.cipher, standardName: this.cipher, version: this.version };
  }

  getPeerX509Certificate(): X509Certificate | undefined {
    if (this.peer === undefined) {
      const der = this.endpoint ? this.lib.peerCertificate(this.endpoint) : undefined;
      this.peer = der ? new X509Certificate(der) : null;
    }
    return this.peer ?? undefined;
  }

  get remoteAddress(): string | undefined {
    return this.raw.remoteAddress;
  }

  get remotePort(): number | undefined {
    return this.raw.remotePort;
  }

  setNoDelay(noDelay?: boolean): this {
    this.raw.setNoDelay(noDelay);
    return this;
  }

  setKeepAlive(enable?: boolean, initialDelay?: number): this {
    this.raw.setKeepAlive(enable, initialDelay);
    return this;
  }
}

/**
 * `raw` (a plain TCP socket of Node's, with nothing unread) on a native endpoint without TLS;
 * undefined when the addon has no such endpoints or the socket cannot be taken over.
 */
export function plainEndpointSocket(raw: net.Socket): NativeTlsSocket | undefined {
  const lib = nativeTlsAddon();
  if (!lib || typeof lib.openPlain !== 'function' || !canTakeOver(raw) || raw.readableLength > 0) return undefined;
  return guardSocket(new NativeTlsSocket(raw, { plain: lib }));
}
