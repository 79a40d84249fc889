import type { Duplex } from 'node:stream';
import { asPgError, be, frontendMessage, Limits, PgError, SqlState, type BackendMessage, type FrontendMessage } from '../protocol/index.js';
import type { Session } from '../pipeline/session.js';
import { relay, type RelayEnd } from '../pipeline/relay.js';
import { SocketSink, type Frame, type FrameReader } from '../transport/socket-io.js';
import { describeTls } from '../transport/tls-info.js';
import type { AuthResult, ClientChannel } from '../auth/provider.js';
import type { CancelKey } from '../backend/cancel.js';
import type { Logger } from '../telemetry/log.js';
import type { SessionSpan } from '../telemetry/spans.js';
import { recordLogin, serveAdminSession, type TokenInfo } from './admin-session.js';
import { AuthOutcome } from './auth-outcome.js';
import type { LoginAbort } from './login-abort.js';
import { LoginReply, parameterStatusBlock } from './login-reply.js';
import { obtainBackend, type BackendHandle } from './backend-phase.js';
import { chooseAuthProvider } from './client-auth-phase.js';
import type { ConnectionDeps } from './connection-deps.js';
import type { StartupMessage } from './negotiate.js';
import { asClientClosed } from './refusal.js';
import { backendStartupParams, replicationRefusal } from './startup-params.js';
import { watchExpiry } from './token-expiry.js';

export interface LifecycleInit {
  session: Session;
  socket: Duplex;
  reader: FrameReader;
  startup: StartupMessage;
  deps: ConnectionDeps;
  /** Bounds startup and login (`--authTimeout`); cleared once the backend is there. */
  authTimer: NodeJS.Timeout;
  /** Aborted when `--authTimeout` passes. */
  abort: LoginAbort;
  span: SessionSpan;
  log: Logger;
}

/**
 * One session from its startup packet to its close, as named steps in order — startup checks,
 * authenticate, the console or the limits, backend (pool hand-out or a new login), handshake,
 * relay — each owning the session's phase while it runs. `run` returns the error to send when the
 * session ended before the relay; it never leaves a cancel key, user slot or backend behind.
 */
export class SessionLifecycle {
  private readonly clientSink: SocketSink;
  private readonly channel: ClientChannel;
  private readonly keyLength: number;
  private reservedKey: CancelKey | undefined;
  private outcome: AuthOutcome | undefined;
  /** Set while relaying: the token expiry's watch and the byte counting stop as the relay ends. */
  private stopExpiry = NOTHING_TO_STOP;
  private stopCountingBytes = NOTHING_TO_STOP;
  private relayKind = 'js';

  constructor(private readonly init: LifecycleInit) {
    const { session, reader, startup, deps, authTimer, log } = init;
    this.clientSink = new SocketSink(init.socket);
    this.keyLength = startup.minor >= 2 ? 32 : 4;
    this.channel = {
      client: session.client,
      startup: startup.params,
      log,
      send: (...msgs: BackendMessage[]) => {
        for (const m of msgs) this.clientSink.write(m.raw);
      },
      // A continuation with module functions, not an async closure: one frame fewer per message read.
      read: () => reader.read().then(messageOf, rethrowAsClientClosed),
      reserveCancelKey: () => (this.reservedKey ??= deps.cancels.reserve(this.keyLength)),
      handshakeComplete: () => clearTimeout(authTimer),
    };
  }

  async run(): Promise<PgError | undefined> {
    const refusal = this.checkStartup();
    if (refusal) return refusal;
    try {
      const auth = await this.authenticate();
      const login = recordLogin(this.init.session, auth);
      if (this.wantsConsole(auth)) {
        const { deps, session, socket, reader } = this.init;
        return await serveAdminSession(deps.admin!, session, auth, this.channel, socket, reader, deps);
      }
      const limited = this.claimUserSlot(auth);
      if (limited) return limited;
      const handle = await this.connectBackend(auth);
      if (!handle) return undefined;
      return await this.handshakeAndRelay(auth, handle, login);
    } finally {
      // Unregistered on every path; once bound to a backend, the relay's end unregisters it first.
      if (this.reservedKey) this.init.deps.cancels.unregister(this.reservedKey);
    }
  }

  /** What PostgreSQL refuses before asking for a password: no user, no TLS where required, replication. */
  private checkStartup(): PgError | undefined {
    const { startup, deps, session } = this.init;
    const user = startup.params.get('user');
    if (!user) {
      return new PgError('FATAL', SqlState.InvalidAuthorizationSpecification, 'no PostgreSQL user name specified in startup packet');
    }
    if (deps.requireTls && !session.client.tls) {
      return new PgError('FATAL', SqlState.InvalidAuthorizationSpecification, 'TLS required', {
        hint: 'Connect with sslmode=require (or stronger).',
      });
    }
    return replicationRefusal(startup.params, deps.allowReplication);
  }

  private async authenticate(): Promise<AuthResult> {
    const { startup, deps, session, span, log } = this.init;
    const params = startup.params;
    const user = params.get('user')!;
    const provider = chooseAuthProvider(deps, session.client, user, params.get('database') ?? user);
    deps.onSessionStart?.(session);
    // Clients get at most 3.2 (whatever the backend speaks: cancel keys are mapped); _pq_ options are negotiated down.
    const unsupported = protocolOptions(params);
    if (startup.minor > 2 || unsupported) {
      // The field is the whole version (3 << 16 | minor), as PostgreSQL sends it and libpq checks.
      this.channel.send(be.negotiateProtocolVersion((3 << 16) | Math.min(startup.minor, 2), unsupported ?? []));
    }
    session.state.phase = 'authenticating';
    this.outcome = new AuthOutcome(provider.name, session.client, deps, log, span);
    let auth: AuthResult;
    try {
      auth = await provider.authenticate(this.channel);
    } catch (err) {
      this.outcome.failed(asPgError(err));
      throw err;
    }
    if (!auth.checkedByBackend) this.outcome.succeeded();
    span.identify({ identity: auth.identity, database: auth.target.database });
    return auth;
  }

  private wantsConsole(auth: AuthResult): boolean {
    const { deps, startup } = this.init;
    const user = startup.params.get('user')!;
    return deps.admin?.enabled === true && (auth.console === true || (startup.params.get('database') ?? user) === deps.admin.database);
  }

  /** `--maxConnectionsPerUser`: takes a slot for the session's identity, given back when it closes. */
  private claimUserSlot(auth: AuthResult): PgError | undefined {
    const { deps, session } = this.init;
    const limit = deps.userLimit;
    if (!limit || limit.max <= 0) return undefined;
    const n = limit.counts.get(auth.identity) ?? 0;
    if (n >= limit.max) {
      return new PgError('FATAL', SqlState.TooManyConnections, `too many connections for user "${auth.target.user ?? auth.identity}"`, {
        hint: `At most ${limit.max} sessions per user are allowed through this proxy.`,
      });
    }
    limit.counts.set(auth.identity, n + 1);
    void session.closed.then(() => {
      const left = (limit.counts.get(auth.identity) ?? 1) - 1;
      if (left > 0) limit.counts.set(auth.identity, left);
      else limit.counts.delete(auth.identity);
    });
    return undefined;
  }

  /** A pooled connection or a new login; undefined when the login timed out meanwhile (already answered). */
  private async connectBackend(auth: AuthResult): Promise<BackendHandle | undefined> {
    const { session, deps, startup, span, abort, authTimer } = this.init;
    session.identity = auth.identity;
    session.user = auth.target.user ?? startup.params.get('user')!;
    session.database = auth.target.database ?? session.user;
    session.state.phase = 'connecting';
    const params = backendStartupParams(startup.params, auth.target, session.user, session.database, deps);
    for (const mw of deps.middleware) {
      // Awaited only when there is a hook: each await is a turn of the microtask queue per login.
      if (mw.beforeBackendStartup) await mw.beforeBackendStartup({ params, ctx: session });
    }
    const started = Date.now();
    const connectSpan = span.backendConnect(auth.target.host, auth.target.port, { tls: auth.target.sslmode !== 'disable' });
    let handle: BackendHandle;
    try {
      handle = await obtainBackend(deps.pool, { target: auth.target, params, user: session.user, database: session.database, reserved: deps, abort });
    } catch (err) {
      connectSpan.end({ error: err });
      if (auth.checkedByBackend) this.outcome!.failed(asPgError(err), 'backend_refused');
      throw err;
    }
    const backend = handle.connection;
    connectSpan.end({ authMethod: backend.authMethod });
    if (auth.checkedByBackend) this.outcome!.succeeded();
    deps.metrics?.backendConnected((Date.now() - started) / 1000);
    clearTimeout(authTimer);
    if (abort.aborted) {
      // Nothing of this session reached the backend: a pooled connection is as clean as it was.
      if (handle.lease) handle.lease.release(true);
      else backend.socket.destroy();
      return undefined;
    }
    session.backend = { address: auth.target.host, port: auth.target.port, tls: backend.tls };
    deps.metrics?.connectionResult('accepted');
    if (deps.logConnections !== false) this.logStarted(auth, handle, started);
    return handle;
  }

  private logStarted(auth: AuthResult, handle: BackendHandle, started: number): void {
    const { session, log } = this.init;
    const backend = handle.connection;
    const clientTls = describeTls(this.init.socket);
    const backendTls = backend.tls ? describeTls(backend.socket) : undefined;
    // The TLS fields named here: spreading a fresh object into the line costs more than the line.
    log.info('session started', {
      user: session.user,
      database: session.database,
      identity: session.identity,
      backend: `${auth.target.host}:${auth.target.port}`,
      tls_version: clientTls?.version,
      tls_cipher: clientTls?.cipher,
      tls_layer: clientTls?.layer,
      backend_tls: backend.tls,
      backend_tls_version: backendTls?.version,
      backend_tls_cipher: backendTls?.cipher,
      backend_tls_layer: backendTls?.layer,
      backend_auth: backend.authMethod,
      backend_protocol: `3.${backend.protocolMinor}`,
      backend_pool: handle.source,
      connect_ms: Date.now() - started,
    });
  }

  private async handshakeAndRelay(auth: AuthResult, handle: BackendHandle, login: TokenInfo): Promise<undefined> {
    const { deps } = this.init;
    const backend = handle.connection;
    // The client gets its backend's own pid (see CancelRegistry), unless the key was reserved earlier.
    const reserved = this.reservedKey;
    this.reservedKey = undefined;
    if (reserved && backend.key) deps.cancels.bind(reserved, backend.key, auth.target, backend.tls);
    const proxyKey = reserved ?? (backend.key ? deps.cancels.register(backend.key, auth.target, backend.tls, this.keyLength) : undefined);
    let backendKept = false;
    try {
      this.handshake(auth, handle, proxyKey);
      // The relay is awaited here, not in an async function of its own: a login makes one suspended frame fewer.
      backendKept = this.relayEnded(await this.startRelay(auth, handle, login), handle);
      return undefined;
    } finally {
      // The key goes first: a late cancel must not reach the connection's next session.
      if (proxyKey) deps.cancels.unregister(proxyKey);
      handle.lease?.release(backendKept, this.init.session.serverParams);
    }
  }

  /** AuthenticationOk, the backend's ParameterStatus set, BackendKeyData, ReadyForQuery: one write. */
  private handshake(auth: AuthResult, handle: BackendHandle, proxyKey: CancelKey | undefined): void {
    const { session, reader } = this.init;
    const backend = handle.connection;
    const done = auth.clientHandshake;
    const reply = new LoginReply();
    if (!done) reply.authOk();
    // A reused connection's login notices were its first session's.
    if (handle.source !== 'reused') for (const notice of backend.notices) reply.raw(notice.raw);
    if (!done) reply.raw(parameterStatusBlock(backend.parameters, session.serverParams));
    else {
      for (const name of backend.parameters.keys()) {
        const value = backend.parameters.get(name)!;
        session.serverParams.set(name, value);
        if (done.sentParameters.get(name) !== value) reply.parameterStatus(name, value);
      }
    }
    if (done) for (const m of done.completion) reply.raw(m.raw);
    else {
      if (proxyKey) reply.raw(be.backendKeyData(proxyKey.processId, proxyKey.secretKey).raw);
      reply.readyIdle();
    }
    this.clientSink.write(reply.toBuffer());
    this.clientSink.flush();
    this.clientSink.dispose();
    reader.framer.maxLength = Limits.message;
  }

  /** Starts relaying; the promise settles when the session ends. */
  private startRelay(auth: AuthResult, handle: BackendHandle, login: TokenInfo): Promise<RelayEnd> {
    const { session, deps, socket, reader } = this.init;
    const backend = handle.connection;
    session.state.phase = 'relay';
    deps.onAuthenticated?.(session);
    if (auth.expiresAt !== undefined && deps.expiry) this.stopExpiry = watchExpiry(session, auth.expiresAt, deps.expiry);
    return relay(
      session,
      deps.middleware,
      { socket, framer: reader.framer, leftover: reader.release() },
      { socket: backend.socket, framer: backend.framer, leftover: backend.leftover },
      {
        observer: deps.observeStatements?.(session),
        onTraffic: (traffic) => {
          if (deps.metrics) this.stopCountingBytes = deps.metrics.trackBytes(traffic);
          login.traffic = traffic;
        },
        native: deps.nativeRelay,
        maxMessageSize: deps.maxMessageSize,
        onRelayKind: (kind) => {
          deps.metrics?.relaySession(kind);
          this.relayKind = kind;
          login.relay = kind;
        },
        keepBackend: handle.lease !== undefined,
      },
    );
  }

  /** The relay's end: its watches stop, the line is logged; true when the backend was left idle and clean for the pool. */
  private relayEnded(end: RelayEnd, handle: BackendHandle): boolean {
    const { deps, log } = this.init;
    this.stopExpiry();
    this.stopCountingBytes();
    // A clean end by the client is the routine case --no-logDisconnections leaves out; every other
    // end says something the operator may need. A reset is no clean end: PostgreSQL logs "could not
    // receive data from client" whatever log_disconnections says.
    const routine = (end.reason === 'client-terminate' || end.reason === 'client-eof') && !end.error && !end.cause;
    if (routine && deps.logDisconnections === false) return end.backendKept;
    log.info('session ended', {
      reason: end.reason,
      relay: this.relayKind,
      sqlstate: end.error?.sqlstate,
      // Why a side went away when its socket failed (a reset, say): the client was told only that the backend did.
      cause: end.cause?.message,
      bytes_to_client: end.bytesToClient,
      bytes_to_backend: end.bytesToBackend,
      backend_kept: handle.lease ? end.backendKept : undefined,
    });
    return end.backendKept;
  }
}

const NOTHING_TO_STOP = (): void => {};

function messageOf(f: Frame): FrontendMessage {
  return frontendMessage(f.code, f.raw);
}

function rethrowAsClientClosed(err: unknown): never {
  throw asClientClosed(err);
}

/** The `_pq_.` protocol options a client asked for; undefined (and no array) when none, nearly always. */
function protocolOptions(params: ReadonlyMap<string, string>): string[] | undefined {
  let found: string[] | undefined;
  for (const k of params.keys()) if (k.startsWith('_pq_.')) (found ??= []).push(k);
  return found;
}
