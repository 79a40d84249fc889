import type net from 'node:net';
import type { Duplex } from 'node:stream';
import {
  asPgError,
  be,
  frontendMessage,
  PgError,
  Limits,
  SqlState,
  type BackendMessage,
} from '../protocol/index.js';
import { newSessionId, Session, type Middleware } from '../pipeline/index.js';
import { relay, type RelayObserver } from '../pipeline/relay.js';
import { FrameReader, SocketSink } from '../pipeline/socket-io.js';
import { guardSocket } from '../pipeline/socket-guard.js';
import type { AuthProvider, AuthResult, ClientChannel } from '../auth/provider.js';
import { connectBackend, type BackendConnection } from '../backend/login.js';
import type { CancelKey, CancelRegistry } from '../backend/cancel.js';
import type { Logger } from '../telemetry/log.js';
import { negotiate, type NegotiateOptions, type StartupMessage } from './negotiate.js';
import { backendStartupParams, replicationRefusal } from './startup-params.js';
import { watchExpiry, type ExpiryPolicy } from './token-expiry.js';
import { readProxyHeader } from './proxy-protocol.js';
import type { AuthThrottle } from './throttle.js';
import type { Metrics } from '../telemetry/metrics.js';
import { asClientClosed, clientGone, connectionResultOf } from './refusal.js';
import { startSessionSpan, type SessionSpan } from '../telemetry/spans.js';
import { traceparentFromStartup } from '../telemetry/traceparent.js';
import { SESSION_SPAN } from './statement-telemetry.js';
import { chooseAuthProvider, type ClientAuthDeps } from './client-auth-phase.js';
import { OAuthRefusal } from '../auth/oauth-bearer.js';
import { recordLogin, serveAdminSession, type AdminHook } from './admin-session.js';

export interface ConnectionDeps extends NegotiateOptions, ClientAuthDeps {
  auth: AuthProvider;
  middleware: readonly Middleware[];
  cancels: CancelRegistry;
  log: Logger;
  /** Refuse clients that did not use TLS (when TLS is configured and --insecure is not set). */
  requireTls: boolean;
  authTimeoutMs: number;
  /** What to do when the client's credential expires during the session. */
  expiry?: ExpiryPolicy;
  /** Startup parameters a client may not set (the proxy owns them). */
  reservedParams: ReadonlySet<string>;
  allowReplication: boolean;
  /** Read an HAProxy PROXY header first and take the client address from it. */
  proxyProtocol?: boolean;
  /** Told the client address a PROXY header gave; false: the connection was refused and is closing. */
  clientAddressKnown?(address: string): boolean;
  throttle?: AuthThrottle;
  /** Sessions per user (identity), with the limit; shared by all connections. */
  userLimit?: { max: number; counts: Map<string, number> };
  metrics?: Metrics;
  /** Most bytes the JavaScript relay holds whole for one message (`RelayOptions.maxMessageSize`). */
  maxMessageSize?: number;
  /** Let sessions whose pipeline looks at no message run on the native relay (see `RelayOptions.native`). */
  nativeRelay?: boolean;
  /** Always-on accounting of each session's statements (metrics, spans), outside the chain. */
  observeStatements?(session: Session): RelayObserver;
  onSessionStart?(session: Session): void;
  /** The client authenticated and its backend is connected; the relay starts next. */
  onAuthenticated?(session: Session): void;
  onSessionEnd?(session: Session): void;
  /** The operator's console (SPEC §10). */
  admin?: AdminHook;
}

/** Handles one accepted socket from first byte to close. Never throws. */
export async function handleConnection(raw: net.Socket, deps: ConnectionDeps): Promise<void> {
  raw.setNoDelay(true);
  guardSocket(raw);
  const client = { address: raw.remoteAddress ?? '', port: raw.remotePort ?? 0, tls: false };
  let log = deps.log.child({ client: endpoint(client.address, client.port) });
  let socket: Duplex = raw;
  let session: Session | undefined;
  let span: SessionSpan | undefined;
  let failed = false;
  const accepted = Date.now();
  const startupAbort = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  function fail(err: PgError) {
    if (timer) clearTimeout(timer);
    if (failed) return;
    failed = true;
    const result = connectionResultOf(err);
    if (result === 'abandoned') log.info('client closed the connection before the login was done', { session: session?.id });
    else log.info('connection refused', { sqlstate: err.sqlstate, reason: err.message, session: session?.id });
    deps.metrics?.connectionResult(result);
    // Some bad startup packets PostgreSQL only logs (COMMERROR): it closes without a word.
    if (!err.silent && result !== 'abandoned' && !socket.destroyed && socket.writable) {
      socket.end(be.errorResponse(err.toFields()).raw);
      setTimeout(() => socket.destroy(), 1000).unref();
    } else {
      socket.destroy();
    }
  }

  try {
    if (deps.proxyProtocol) {
      let header;
      try {
        ({ header } = await readProxyHeaderInto(raw, deps.authTimeoutMs));
      } catch (err) {
        log.warn('connection closed: no valid PROXY protocol header', { reason: (err as Error).message });
        deps.metrics?.connectionResult('refused');
        raw.destroy();
        return;
      }
      if (header.command === 'PROXY') {
        client.address = header.source.address;
        client.port = header.source.port;
        log = deps.log.child({ client: endpoint(client.address, client.port) });
      }
      if (deps.clientAddressKnown?.(client.address) === false) return;
    }
    const verdict = deps.throttle?.check(client.address) ?? { action: 'allow' as const };
    if (verdict.action === 'refuse') {
      deps.metrics?.authAttempt(deps.auth.name, 'failure', 'throttled');
      throw new PgError('FATAL', SqlState.TooManyConnections, 'too many failed login attempts from this address', {
        hint: `Try again in ${Math.ceil(verdict.retryAfterMs / 1000)} s.`,
      });
    }
    if (verdict.action === 'delay') {
      log.info('login delayed after repeated failures', { delay_ms: verdict.ms });
      await new Promise((r) => setTimeout(r, verdict.ms));
    }
    timer = setTimeout(() => {
      startupAbort.abort();
      fail(new PgError('FATAL', SqlState.QueryCanceled, 'canceling authentication due to timeout'));
    }, deps.authTimeoutMs);
    const negotiated = await negotiate(raw, deps);
    if (negotiated.kind === 'cancel') {
      clearTimeout(timer);
      const { processId, secretKey } = negotiated.request;
      const outcome = await deps.cancels.forward({ processId, secretKey }).catch((err) => {
        log.warn('cancel forwarding failed', { reason: (err as Error).message });
        return 'failed' as const;
      });
      deps.metrics?.cancelRequest(outcome);
      if (outcome === 'unknown') log.debug('cancel request with unknown key ignored');
      else if (outcome !== 'failed') log.debug('cancel request forwarded', { to: outcome });
      raw.destroy();
      return;
    }
    socket = guardSocket(negotiated.socket);
    client.tls = negotiated.tls;
    const id = newSessionId();
    const sessionLog = log.child({ session: id });
    session = new Session({ id, client, clientParams: negotiated.startup.params, log: sessionLog });
    span = startSessionSpan(client, traceparentFromStartup(negotiated.startup.params), accepted);
    session.attributes.set(SESSION_SPAN, span);
    const ended = await runSession(session, negotiated.socket, negotiated.reader, negotiated.startup, deps, timer, sessionLog, startupAbort.signal, span);
    if (ended) fail(ended);
    span.end(ended);
  } catch (err) {
    const e = asPgError(err);
    fail(e);
    span?.end(e);
  } finally {
    if (session) {
      session.markClosed();
      deps.onSessionEnd?.(session);
    }
  }
}

/** Startup to close for one session; returns an error to send if it ended before the relay. */
async function runSession(
  session: Session,
  socket: Duplex,
  reader: FrameReader,
  startup: StartupMessage,
  deps: ConnectionDeps,
  authTimer: NodeJS.Timeout,
  log: Logger,
  signal: AbortSignal,
  span: SessionSpan,
): Promise<PgError | undefined> {
  const params = startup.params;
  const user = params.get('user');
  if (!user) {
    return new PgError('FATAL', SqlState.InvalidAuthorizationSpecification, 'no PostgreSQL user name specified in startup packet');
  }
  if (deps.requireTls && !session.client.tls) {
    return new PgError('FATAL', SqlState.InvalidAuthorizationSpecification, 'TLS required', {
      hint: 'Connect with sslmode=require (or stronger).',
    });
  }
  const replication = replicationRefusal(params, deps.allowReplication);
  if (replication) return replication;
  const provider = chooseAuthProvider(deps, session.client, user, params.get('database') ?? user);
  deps.onSessionStart?.(session);
  const clientSink = new SocketSink(socket);
  const keyLength = startup.minor >= 2 ? 32 : 4;
  let reservedKey: CancelKey | undefined;
  const channel: ClientChannel = {
    client: session.client,
    startup: params,
    log,
    send: (...msgs: BackendMessage[]) => msgs.forEach((m) => clientSink.write(m.raw)),
    read: async () => {
      const f = await reader.read().catch((err: unknown) => {
        throw asClientClosed(err);
      });
      return frontendMessage(f.code, f.raw);
    },
    reserveCancelKey: () => (reservedKey ??= deps.cancels.reserve(keyLength)),
    handshakeComplete: () => clearTimeout(authTimer),
  };

  // Clients get at most 3.2 (whatever the backend speaks: cancel keys are mapped); _pq_ options are negotiated down.
  const unsupported = [...params.keys()].filter((k) => k.startsWith('_pq_.'));
  if (startup.minor > 2 || unsupported.length > 0) {
    // The field is the whole version (3 << 16 | minor), as PostgreSQL sends it and libpq checks.
    channel.send(be.negotiateProtocolVersion((3 << 16) | Math.min(startup.minor, 2), unsupported));
  }

  session.state.phase = 'authenticating';
  let auth: AuthResult;
  const authSpan = span.auth(provider.name);
  try {
    auth = await provider.authenticate(channel);
  } catch (err) {
    if (reservedKey) deps.cancels.unregister(reservedKey);
    authFailed(asPgError(err));
    throw err;
  }
  function authFailed(e: PgError, reason = e instanceof OAuthRefusal ? (e.detail ?? e.message) : e.message) {
    if (clientGone(e)) {
      // E.g. psql's first, password-less try: asked for a password, it closes and asks the user.
      deps.metrics?.authAttempt(provider.name, 'abandoned', 'client_gone');
      authSpan.end({ result: 'abandoned', reason: 'client_gone' });
      log.info('client closed the connection during authentication', { provider: provider.name });
      return;
    }
    // Credentials refused count toward throttling; an unreachable backend or a timeout does not.
    // An OAuth discovery request is the first half of a token login, not a failed one.
    if (e instanceof OAuthRefusal && e.discovery) {
      deps.metrics?.authAttempt(provider.name, 'discovery', 'oauth_discovery');
      authSpan.end({ result: 'discovery', reason: 'oauth_discovery' });
      log.info('OAuth discovery answered', { provider: provider.name });
      return;
    }
    const refused = e.sqlstate.startsWith('28');
    if (refused) deps.throttle?.failure(session.client.address);
    deps.metrics?.authAttempt(provider.name, refused ? 'failure' : 'error', reason);
    authSpan.end({ result: refused ? 'failure' : 'error', reason });
    log.info('authentication failed', { provider: provider.name, sqlstate: e.sqlstate, reason: e.message, detail: e.detail });
  }
  function authSucceeded() {
    deps.throttle?.success(session.client.address);
    deps.metrics?.authAttempt(provider.name, 'success');
    authSpan.end({ result: 'success' });
  }
  if (!auth.checkedByBackend) authSucceeded();
  span.identify({ identity: auth.identity, database: auth.target.database });
  const login = recordLogin(session, auth);
  if (deps.admin?.enabled && (auth.console || (params.get('database') ?? user) === deps.admin.database)) {
    return serveAdminSession(deps.admin, session, auth, channel, socket, reader, deps);
  }
  const limit = deps.userLimit;
  if (limit && limit.max > 0) {
    const n = limit.counts.get(auth.identity) ?? 0;
    if (n >= limit.max) {
      if (reservedKey) deps.cancels.unregister(reservedKey);
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
  }
  session.identity = auth.identity;
  session.user = auth.target.user ?? user;
  session.database = auth.target.database ?? session.user;

  session.state.phase = 'connecting';
  const backendParams = backendStartupParams(params, auth.target, session.user, session.database, deps);
  for (const mw of deps.middleware) {
    await mw.beforeBackendStartup?.({ params: backendParams, ctx: session });
  }
  const started = Date.now();
  let backend: BackendConnection;
  const connectSpan = span.backendConnect(auth.target.host, auth.target.port, { tls: auth.target.sslmode !== 'disable' });
  try {
    backend = await connectBackend(auth.target, { params: backendParams, password: auth.target.password, signal });
  } catch (err) {
    if (reservedKey) deps.cancels.unregister(reservedKey);
    connectSpan.end({ error: err });
    if (auth.checkedByBackend) authFailed(asPgError(err), 'backend_refused');
    throw err;
  }
  connectSpan.end({ authMethod: backend.authMethod });
  if (auth.checkedByBackend) authSucceeded();
  deps.metrics?.backendConnected((Date.now() - started) / 1000);
  clearTimeout(authTimer);
  if (signal.aborted) {
    backend.socket.destroy();
    if (reservedKey) deps.cancels.unregister(reservedKey);
    return undefined;
  }
  session.backend = { address: auth.target.host, port: auth.target.port, tls: backend.tls };
  deps.metrics?.connectionResult('accepted');
  log.info('session started', {
    user: session.user,
    database: session.database,
    identity: session.identity,
    backend: `${auth.target.host}:${auth.target.port}`,
    backend_tls: backend.tls,
    backend_auth: backend.authMethod,
    backend_protocol: `3.${backend.protocolMinor}`,
    connect_ms: Date.now() - started,
  });

  // The client gets its backend's own pid (see CancelRegistry), unless the key was reserved earlier.
  if (reservedKey && backend.key) deps.cancels.bind(reservedKey, backend.key, auth.target, backend.tls);
  const proxyKey =
    reservedKey ?? (backend.key ? deps.cancels.register(backend.key, auth.target, backend.tls, keyLength) : undefined);
  try {
    const done = auth.clientHandshake;
    if (!done) channel.send(be.authOk());
    channel.send(...backend.notices);
    for (const [name, value] of backend.parameters) {
      session.serverParams.set(name, value);
      if (done?.sentParameters.get(name) !== value) channel.send(be.parameterStatus(name, value));
    }
    if (done) channel.send(...done.completion);
    else {
      if (proxyKey) channel.send(be.backendKeyData(proxyKey.processId, proxyKey.secretKey));
      channel.send(be.readyForQuery('I'));
    }
    clientSink.flush();
    clientSink.dispose();
    reader.framer.maxLength = Limits.message;
    deps.onAuthenticated?.(session);
    const stopExpiry =
      auth.expiresAt !== undefined && deps.expiry ? watchExpiry(session, auth.expiresAt, deps.expiry) : () => {};
    let stopCountingBytes = () => {};
    let relayKind = 'js';
    const end = await relay(
      session,
      deps.middleware,
      { socket, framer: reader.framer, leftover: reader.release() },
      { socket: backend.socket, framer: backend.framer, leftover: backend.leftover },
      {
        observer: deps.observeStatements?.(session),
        onTraffic: (traffic) => {
          if (deps.metrics) stopCountingBytes = deps.metrics.trackBytes(traffic);
          login.traffic = traffic;
        },
        native: deps.nativeRelay,
        maxMessageSize: deps.maxMessageSize,
        onRelayKind: (kind, moved) => {
          deps.metrics?.relaySession(moved ? 'handover' : kind);
          relayKind = moved ? 'native-then-js' : kind;
          login.relay = relayKind;
        },
      },
    );
    stopExpiry();
    stopCountingBytes();
    log.info('session ended', {
      reason: end.reason,
      relay: relayKind,
      sqlstate: end.error?.sqlstate,
      bytes_to_client: end.bytesToClient,
      bytes_to_backend: end.bytesToBackend,
    });
    return undefined;
  } finally {
    if (proxyKey) deps.cancels.unregister(proxyKey);
  }
}

/** `host:port` for logs, IPv6 in brackets (`[2001:db8::17]:40002`) so the port is unambiguous. */
function endpoint(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

/** Reads the PROXY header and puts back what followed it, leaving the socket flowing. */
async function readProxyHeaderInto(socket: net.Socket, timeoutMs: number) {
  const result = await readProxyHeader(socket, timeoutMs);
  if (result.rest.length > 0) socket.unshift(result.rest);
  return result;
}
