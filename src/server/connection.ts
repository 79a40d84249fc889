import type net from 'node:net';
import type { Duplex } from 'node:stream';
import { asPgError, be, PgError, SqlState } from '../protocol/index.js';
import { Session } from '../pipeline/index.js';
import { guardSocket } from '../transport/socket-guard.js';
import { negotiate } from './negotiate.js';
import { readProxyHeader } from './proxy-protocol.js';
import { connectionResultOf } from './refusal.js';
import { startSessionSpan, type SessionSpan } from '../telemetry/spans.js';
import { traceparentFromStartup } from '../telemetry/traceparent.js';
import { SESSION_SPAN } from './statement-telemetry.js';
import type { ConnectionDeps } from './connection-deps.js';
import type { Logger } from '../telemetry/log.js';
import { SessionLifecycle } from './session-lifecycle.js';
import { LoginAbort } from './login-abort.js';
import { formatHostPort } from '../util/host-port.js';
import { pooledRandomHex } from '../util/random-pool.js';

export type { ConnectionDeps } from './connection-deps.js';

/** Handles one accepted socket from first byte to close. Never throws. */
export async function handleConnection(raw: net.Socket, deps: ConnectionDeps): Promise<void> {
  // TCP_NODELAY is set by the listener (`noDelay`) as it accepts: a second setsockopt per connection buys nothing.
  guardSocket(raw);
  const client = { address: raw.remoteAddress ?? '', port: raw.remotePort ?? 0, tls: false };
  let socket: Duplex = raw;
  let session: Session | undefined;
  let span: SessionSpan | undefined;
  let failed = false;
  const accepted = Date.now();
  const startupAbort = new LoginAbort();
  let timer: NodeJS.Timeout | undefined;
  function fail(err: PgError) {
    if (timer) clearTimeout(timer);
    if (failed) return;
    failed = true;
    const result = connectionResultOf(err);
    const log = clientLog(deps, client);
    if (result === 'abandoned') log.info('client closed the connection before the login was done', { session: session?.id });
    // The discovery half of an OAuth login was logged as such; it is no refusal.
    else if (result !== 'discovery') log.info('connection refused', { sqlstate: err.sqlstate, reason: err.message, session: session?.id });
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
    if (deps.proxyProtocol && !(await takeProxyHeader(raw, deps, client))) return;
    const throttled = throttleGate(deps, client);
    if (throttled) await throttled;
    timer = setTimeout(() => {
      startupAbort.abort();
      fail(new PgError('FATAL', SqlState.QueryCanceled, 'canceling authentication due to timeout'));
    }, deps.authTimeoutMs);
    const negotiated = await negotiate(raw, deps);
    if (negotiated.kind === 'cancel') {
      clearTimeout(timer);
      await forwardCancel(negotiated.request, deps, clientLog(deps, client));
      raw.destroy();
      return;
    }
    socket = guardSocket(negotiated.socket);
    client.tls = negotiated.tls;
    // Like newSessionId (6 random bytes in hex), from the pooled random block.
    const id = pooledRandomHex(6);
    // The client's logger and the session's in one step: the first is made only when a line needs it.
    const sessionLog = deps.log.child({ client: formatHostPort(client.address, client.port), session: id });
    session = new Session({ id, client, clientParams: negotiated.startup.params, log: sessionLog });
    span = startSessionSpan(client, traceparentFromStartup(negotiated.startup.params), accepted);
    session.attributes.set(SESSION_SPAN, span);
    const ended = await new SessionLifecycle({
      session,
      socket: negotiated.socket,
      reader: negotiated.reader,
      startup: negotiated.startup,
      deps,
      authTimer: timer,
      abort: startupAbort,
      span,
      log: sessionLog,
    }).run();
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

/** The logger of lines about a connection before its session (or without one): its client's address. */
function clientLog(deps: ConnectionDeps, client: { address: string; port: number }): Logger {
  return deps.log.child({ client: formatHostPort(client.address, client.port) });
}

/**
 * `--proxyProtocol`: the client address from the PROXY header, into `client`. False when the
 * connection was closed (no valid header, or the address refused).
 */
async function takeProxyHeader(raw: net.Socket, deps: ConnectionDeps, client: { address: string; port: number }): Promise<boolean> {
  let header;
  try {
    ({ header } = await readProxyHeaderInto(raw, deps.authTimeoutMs));
  } catch (err) {
    clientLog(deps, client).warn('connection closed: no valid PROXY protocol header', { reason: (err as Error).message });
    deps.metrics?.connectionResult('refused');
    raw.destroy();
    return false;
  }
  if (header.command === 'PROXY') {
    client.address = header.source.address;
    client.port = header.source.port;
  }
  return deps.clientAddressKnown?.(client.address) !== false;
}

/**
 * Auth-failure throttling: an address past the limit is delayed (the promise to wait for), or
 * refused with 53300. Nothing to wait for (the usual case) costs no promise and no await.
 */
function throttleGate(deps: ConnectionDeps, client: { address: string; port: number }): Promise<void> | undefined {
  const verdict = deps.throttle?.check(client.address) ?? ALLOW;
  if (verdict.action === 'refuse') {
    deps.metrics?.authAttempt(deps.auth.name, 'failure', 'throttled');
    throw new PgError('FATAL', SqlState.TooManyConnections, 'too many failed login attempts from this address', {
      hint: `Try again in ${Math.ceil(verdict.retryAfterMs / 1000)} s.`,
    });
  }
  if (verdict.action === 'delay') {
    clientLog(deps, client).info('login delayed after repeated failures', { delay_ms: verdict.ms });
    return new Promise((r) => setTimeout(r, verdict.ms));
  }
  return undefined;
}

const ALLOW = { action: 'allow' as const };

/** A CancelRequest: to the backend of the session that holds the key, or a peer instance. */
async function forwardCancel(key: { processId: number; secretKey: Buffer }, deps: ConnectionDeps, log: Logger): Promise<void> {
  const outcome = await deps.cancels.forward(key).catch((err) => {
    log.warn('cancel forwarding failed', { reason: (err as Error).message });
    return 'failed' as const;
  });
  deps.metrics?.cancelRequest(outcome);
  if (outcome === 'unknown') log.debug('cancel request with unknown key ignored');
  else if (outcome !== 'failed') log.debug('cancel request forwarded', { to: outcome });
}

/** Reads the PROXY header and puts back what followed it, leaving the socket flowing. */
async function readProxyHeaderInto(socket: net.Socket, timeoutMs: number) {
  const result = await readProxyHeader(socket, timeoutMs);
  if (result.rest.length > 0) socket.unshift(result.rest);
  return result;
}
