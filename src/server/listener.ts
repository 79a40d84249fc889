import net from 'node:net';
import { be, PgError, SqlState } from '../protocol/index.js';
import type { Session } from '../pipeline/index.js';
import { adoptWithOwnReadBuffer } from '../pipeline/own-read.js';
import { guardSocket } from '../pipeline/socket-guard.js';
import { handleConnection, type ConnectionDeps } from './connection.js';

export interface ProxyServerOptions extends ConnectionDeps {
  host: string;
  port: number;
  maxConnections: number;
}

/**
 * The listening proxy: accepts sockets, enforces the connection limit, and keeps track of live
 * sessions so they can be drained or closed.
 */
export class ProxyServer {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  readonly sessions = new Set<Session>();
  /** Sessions per user, kept across reloads. */
  get userCounts(): Map<string, number> {
    return this.opts.userLimit?.counts ?? new Map();
  }
  private listening = false;

  get isListening(): boolean {
    return this.listening;
  }

  readonly closed: Promise<void>;
  private resolveClosed!: () => void;

  constructor(private opts: ProxyServerOptions) {
    this.closed = new Promise((r) => (this.resolveClosed = r));
    // Paused on connect so that nothing is read before the socket moves to its own read buffer.
    this.server = net.createServer({ noDelay: true, pauseOnConnect: true }, (socket) =>
      this.accept(guardSocket(adoptWithOwnReadBuffer(socket))),
    );
    this.server.on('error', (err) => opts.log.error('listener error', { error: err.message }));
  }

  /** Applies a reloaded configuration to new connections; live sessions keep what they had. */
  reconfigure(changes: Partial<Omit<ProxyServerOptions, 'host' | 'port'>>): void {
    this.opts = { ...this.opts, ...changes };
  }

  get connections(): number {
    return this.sockets.size;
  }

  private accept(socket: net.Socket): void {
    if (this.sockets.size >= this.opts.maxConnections) {
      this.opts.metrics?.connectionResult('refused');
      this.opts.log.warn('connection refused: too many connections', { limit: this.opts.maxConnections });
      const err = new PgError('FATAL', SqlState.TooManyConnections, 'sorry, too many clients already');
      socket.end(be.errorResponse(err.toFields()).raw);
      setTimeout(() => socket.destroy(), 1000).unref();
      return;
    }
    this.sockets.add(socket);
    this.opts.metrics?.connectionOpened();
    socket.once('close', () => {
      this.sockets.delete(socket);
      this.opts.metrics?.connectionClosed();
    });
    void handleConnection(socket, {
      ...this.opts,
      onSessionStart: (s) => {
        this.sessions.add(s);
        this.opts.onSessionStart?.(s);
      },
      onSessionEnd: (s) => {
        this.sessions.delete(s);
        this.opts.onSessionEnd?.(s);
      },
    });
  }

  listen(): Promise<net.AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host: this.opts.host, port: this.opts.port }, () => {
        this.server.off('error', reject);
        this.listening = true;
        resolve(this.server.address() as net.AddressInfo);
      });
    });
  }

  address(): net.AddressInfo {
    return this.server.address() as net.AddressInfo;
  }

  /**
   * Stops accepting; live sessions go on. Resolves as soon as the listening socket is closed —
   * net.Server's own close callback would wait for every connection to end.
   */
  stopListening(): Promise<void> {
    if (!this.listening) return Promise.resolve();
    this.listening = false;
    this.server.close();
    return Promise.resolve();
  }

  /** Stops accepting and ends every session now (FATAL 57P01 to clients in the relay). */
  async close(): Promise<void> {
    const stopped = this.stopListening();
    for (const s of this.sessions) {
      s.close(new PgError('FATAL', SqlState.AdminShutdown, 'terminating connection due to administrator command'));
    }
    for (const socket of this.sockets) socket.destroy();
    await stopped;
    this.resolveClosed();
  }
}
