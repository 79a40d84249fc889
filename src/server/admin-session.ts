import type { Duplex } from 'node:stream';
import { be, Limits, PgError, SqlState } from '../protocol/index.js';
import type { Session } from '../pipeline/session.js';
import type { FrameReader } from '../transport/socket-io.js';
import type { AuthResult, ClientChannel } from '../auth/provider.js';
import { serveConsole } from '../admin/responder.js';
import type { ConsoleHost } from '../admin/commands.js';
import type { CancelKey } from '../backend/cancel.js';
import { statementCounter } from './statement-telemetry.js';
import { watchExpiry, type ExpiryPolicy } from './token-expiry.js';

/** What the console and revocation know of a session's login; never the token itself. */
export interface TokenInfo {
  subject?: string;
  tokenId?: string;
  expiresAt?: number;
  started: number;
  console?: boolean;
  relay?: string;
  traffic?: { readonly bytesToClient: number; readonly bytesToBackend: number };
}

export const TOKEN_INFO = 'pgward.token-info';

export function tokenInfo(session: Session): TokenInfo | undefined {
  return session.attributes.get(TOKEN_INFO) as TokenInfo | undefined;
}

/** Notes who logged in (subject, token id, expiry) on the session, for the console and revocation. */
export function recordLogin(session: Session, auth: AuthResult): TokenInfo {
  const info: TokenInfo = { subject: auth.subject, tokenId: auth.tokenId, expiresAt: auth.expiresAt, started: Date.now() };
  session.attributes.set(TOKEN_INFO, info);
  return info;
}

export interface AdminHook {
  /** Whether the console is configured (`admin.subjects` or `admin.claim`); without it `database` is an ordinary name. */
  readonly enabled: boolean;
  /** The console's database name (`admin.database`). */
  readonly database: string;
  host: ConsoleHost;
}

/** Server parameters a client expects after login (psql, pg, JDBC read some of them). */
function serverParameters(version: string): [string, string][] {
  return [
    ['server_version', `16.0 (pgward ${version})`],
    ['server_encoding', 'UTF8'],
    ['client_encoding', 'UTF8'],
    ['DateStyle', 'ISO, MDY'],
    ['TimeZone', 'UTC'],
    ['integer_datetimes', 'on'],
    ['standard_conforming_strings', 'on'],
    ['IntervalStyle', 'postgres'],
    ['is_superuser', 'off'],
    ['application_name', ''],
  ];
}

/** What a console session takes from its connection: the same accounting as a relayed session. */
export interface ConsoleSessionDeps {
  cancels: { unregister(key: CancelKey): void };
  metrics?: { connectionResult(result: 'accepted'): void };
  expiry?: ExpiryPolicy;
  /** The login is done (releases the pending-login slot, counts the session, runs plugins' hook). */
  onAuthenticated?(session: Session): void;
}

/**
 * A client that asked for the console database: admins get pgward's own SQL console (no backend),
 * everyone else FATAL 28000. Returns the error to send, or undefined once the console session ended.
 */
export async function serveAdminSession(
  hook: AdminHook,
  session: Session,
  auth: AuthResult,
  channel: ClientChannel,
  socket: Duplex,
  reader: FrameReader,
  deps: ConsoleSessionDeps,
): Promise<PgError | undefined> {
  // A key a provider reserved during its handshake, or the console's own: issued like a session's
  // so a client that sends a CancelRequest for it gets nowhere (no backend is bound to it).
  const key = channel.reserveCancelKey();
  try {
    if (!auth.console) {
      session.log.info('console refused: not an administrator', { identity: auth.identity });
      return new PgError('FATAL', SqlState.InvalidAuthorizationSpecification, `database "${hook.database}" is the pgward console, open to administrators only`);
    }
    startConsoleSession(hook, session, auth, channel, reader, key);
    deps.metrics?.connectionResult('accepted');
    deps.onAuthenticated?.(session);
    session.onCloseRequest((err) => {
      if (err) socket.end(be.errorResponse(err.toFields()).raw);
      else socket.end();
      setTimeout(() => socket.destroy(), 1000).unref();
    });
    const stopExpiry = auth.expiresAt !== undefined && deps.expiry ? watchExpiry(session, auth.expiresAt, deps.expiry) : () => {};
    const count = statementCounter(session);
    const admin = auth.subject ?? auth.identity;
    await serveConsole(channel, {
      host: hook.host,
      onCommand: (sql) => {
        count.n++;
        session.log.info('admin command', { admin, command: sql.trim().slice(0, 200) });
      },
    });
    stopExpiry();
    if (!socket.destroyed) socket.end();
    return undefined;
  } finally {
    deps.cancels.unregister(key);
  }
}

/** Marks the session as the console's and sends the login's completion, BackendKeyData included. */
function startConsoleSession(hook: AdminHook, session: Session, auth: AuthResult, channel: ClientChannel, reader: FrameReader, key: CancelKey): void {
  const info = tokenInfo(session);
  if (info) {
    info.console = true;
    info.relay = 'console';
  }
  session.identity = auth.identity;
  session.user = channel.startup.get('user') ?? '';
  session.database = hook.database;
  channel.handshakeComplete();
  reader.framer.maxLength = Limits.message;
  channel.send(
    be.authOk(),
    ...serverParameters(hook.host.version).map(([k, v]) => be.parameterStatus(k, v)),
    be.backendKeyData(key.processId, key.secretKey),
    be.readyForQuery('I'),
  );
  session.log.info('console session started', { admin: auth.subject ?? auth.identity });
}
