import { PgError, SqlState } from '../protocol/index.js';
import { ConnectionClosed } from '../transport/socket-io.js';
import { isBackendRefusal } from '../backend/login.js';
import { OAuthRefusal } from '../auth/oauth-bearer.js';
import type { ConnectionResult } from '../telemetry/metrics.js';

/** The client went away (closed or reset its socket): nobody to answer, nothing went wrong. */
export function clientGone(err: unknown): boolean {
  return err instanceof ConnectionClosed && err.who === 'client';
}

/** A client socket's failure (ECONNRESET, EPIPE…) is the client going away, not an internal error. */
export function asClientClosed(err: unknown): unknown {
  return err instanceof PgError ? err : new ConnectionClosed('client');
}

/**
 * How a connection that never reached the relay ended, for `pgward_connections_total`: the
 * client, the policy or the backend refused (auth, limits, protocol, timeout, a backend
 * ErrorResponse such as 28P01 or 42704), the client went away (`abandoned`), an OAuth client
 * asked where to get a token (`discovery`: the first half of a login; it reconnects with one),
 * the proxy was shutting down, or something on pgward's side failed (backend unreachable,
 * internal error).
 */
export function connectionResultOf(err: PgError): ConnectionResult {
  if (clientGone(err)) return 'abandoned';
  if (err instanceof OAuthRefusal && err.discovery) return 'discovery';
  if (isBackendRefusal(err)) return 'refused';
  const c = err.sqlstate;
  if (c === SqlState.AdminShutdown || c === SqlState.CannotConnectNow) return 'draining';
  if (/^(28|53|3D)/.test(c) || c === SqlState.ProtocolViolation || c === SqlState.QueryCanceled) return 'refused';
  if (c === SqlState.FeatureNotSupported) return 'refused';
  return 'failed';
}
