import net from 'node:net';
import { be, PgError, SqlState } from '../protocol/index.js';
import { setBatchHooks, type BatchHooks, type Session } from '../pipeline/index.js';
import { acceptWithOwnReadBuffer, adoptWithOwnReadBuffer } from '../transport/own-read.js';
import { guardSocket } from '../transport/socket-guard.js';
import { holdLines, writeHeldLines } from '../telemetry/log-output.js';
import type { LimitReason } from '../telemetry/metrics.js';
import { handleConnection, type ConnectionDeps } from './connection.js';
import { LoginGate, type PendingLoginLimits } from './login-gate.js';

export interface ProxyServerOptions extends ConnectionDeps {
  host: string;
  port: number;
  /** Most sessions (connections whose login finished and whose relay runs). */
  maxConnections: number;
  /** Connections still logging in have their own budget; default 100, 20 per address. */
  pendingLogins?: PendingLoginLimits;
}

/** How often a refusal by connection limits is logged at most, per limit (the rest are counted). */
const REFUSAL_LOG_INTERVAL_MS = 10_000;

const REFUSALS: Record<LimitReason, (limit: number) => PgError> = {
  max_connections: (n) =>
    new PgError('FATAL', SqlState.TooManyConnections, 'sorry, too many clients already', {
      hint: `At most ${n} sessions are allowed through this proxy (--maxConnections).`,
    }),
  max_pending_logins: (n) =>
    new PgError('FATAL', SqlState.TooManyConnections, 'sorry, too many clients already logging in', {
      hint: `At most ${n} connections may be logging in at once (--maxPendingLogins); try again shortly.`,
    }),
  max_pending_logins_per_address: (n) =>
    new PgError('FATAL', SqlState.TooManyConnections, 'too many connections logging in from this address', {
      hint: `At most ${n} connections from one address may be logging in at once (--maxPendingLoginsPerAddress).`,
    }),
};

/** The log's lines of one turn's native batches leave in one write, before those sessions' answers. */
const LOG_BATCH_HOOKS: BatchHooks = { begin: holdLines, end: writeHeldLines };

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
  /** Connections past their login (the relay runs), counted against `maxConnections`. */
  private established = 0;
  private readonly gate: LoginGate;
  private readonly refusalLog = new Map<LimitReason, { at: number; suppressed: number }>();

  get isListening(): boolean {
    return this.listening;
  }

  readonly closed: Promise<void>;
  private resolveClosed!: () => void;

  constructor(private opts: ProxyServerOptions) {
    this.closed = new Promise((r) => (this.resolveClosed = r));
    setBatchHooks(LOG_BATCH_HOOKS);
    this.gate = new LoginGate(opts.pendingLogins ?? { max: 100, perAddress: 20 }, (n) => opts.metrics?.setLoginsPending(n));
    // Paused on connect so that nothing is read before the socket moves to its own read buffer.
    this.server = net.createServer({ noDelay: true, pauseOnConnect: true }, (socket) =>
      this.accept(guardSocket(adoptWithOwnReadBuffer(socket))),
    );
    this.server.on('error', (err) => opts.log.error('listener error', { error: err.message }));
  }

  /** Applies a reloaded configuration to new connections; live sessions keep what they had. */
  reconfigure(changes: Partial<Omit<ProxyServerOptions, 'host' | 'port'>>): void {
    this.opts = { ...this.opts, ...changes };
    if (changes.pendingLogins) this.gate.limits = changes.pendingLogins;
  }

  /** Connections logging in now (accepted, relay not started). */
  get pendingLogins(): number {
    return this.gate.pending;
  }

  get connections(): number {
    return this.sockets.size;
  }

  /**
   * A new connection needs a free session slot (`maxConnections` counts sessions only) and a
   * pending-login slot, by client address too; it keeps the latter until its relay starts. With
   * the PROXY protocol the per-address budget is checked once the header has given the address.
   */
  private accept(socket: net.Socket): void {
    if (this.established >= this.opts.maxConnections) return this.refuse(socket, 'max_connections');
    const pending = this.gate.enter(this.opts.proxyProtocol ? undefined : (socket.remoteAddress ?? ''));
    if (typeof pending === 'string') return this.refuse(socket, pending);
    const opts = this.opts;
    let inSession = false;
    this.sockets.add(socket);
    this.opts.metrics?.connectionOpened();
    socket.once('close', () => {
      this.sockets.delete(socket);
      pending.done();
      if (inSession) this.established--;
      this.opts.metrics?.connectionClosed();
    });
    // The settings as they are now, plus this connection's hooks, without copying ~35 properties
    // per connection: a reload replaces `this.opts`, so a login in flight keeps what it started with.
    const deps: ConnectionDeps = Object.assign(Object.create(this.opts) as ConnectionDeps, {
      clientAddressKnown: (address: string) => {
        if (pending.from(address)) return true;
        this.refuse(socket, 'max_pending_logins_per_address');
        return false;
      },
      onAuthenticated: (s: Session) => {
        pending.done();
        inSession = true;
        this.established++;
        opts.onAuthenticated?.(s);
      },
      onSessionStart: (s: Session) => {
        this.sessions.add(s);
        opts.onSessionStart?.(s);
      },
      onSessionEnd: (s: Session) => {
        this.sessions.delete(s);
        opts.onSessionEnd?.(s);
      },
    });
    void handleConnection(socket, deps);
  }

  /** Turns a connection away with 53300; counted, and logged at most once per interval and limit. */
  private refuse(socket: net.Socket, reason: LimitReason): void {
    this.opts.metrics?.connectionLimited(reason);
    const limit =
      reason === 'max_connections' ? this.opts.maxConnections : reason === 'max_pending_logins' ? this.gate.limits.max : this.gate.limits.perAddress;
    const now = Date.now();
    const seen = this.refusalLog.get(reason);
    if (!seen || now - seen.at >= REFUSAL_LOG_INTERVAL_MS) {
      this.opts.log.warn('connection refused: over a connection limit', {
        reason,
        limit,
        address: socket.remoteAddress,
        suppressed: seen?.suppressed || undefined,
      });
      this.refusalLog.set(reason, { at: now, suppressed: 0 });
    } else seen.suppressed++;
    socket.on('error', () => {});
    socket.end(be.errorResponse(REFUSALS[reason](limit).toFields()).raw);
    setTimeout(() => socket.destroy(), 1000).unref();
  }

  listen(): Promise<net.AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host: this.opts.host, port: this.opts.port }, () => {
        this.server.off('error', reject);
        // One socket per connection, made over the accepted handle (else Node's, adopted as above).
        acceptWithOwnReadBuffer(this.server, (socket) => this.accept(guardSocket(socket)));
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
