import { decodePassword, be, PgError, SqlState } from '../protocol/index.js';
import { loginTarget } from '../backend/target-copy.js';
import type { BackendTarget } from '../backend/url.js';
import { CachedCommandValue } from './command-runner.js';
import type { AuthProvider, AuthResult, ClientChannel } from './provider.js';

export interface PassthroughOptions {
  /** The one backend. */
  backend: BackendTarget;
  /** Command whose output is the backend password (e.g. an RDS IAM token), as argv. */
  credsCmd?: readonly string[];
  credsTtlMs: number;
  /** Replace the client's password with the command's output (or the URL's password). */
  credsOverride: boolean;
  /** Log in to the backend as the URL's user whatever user the client names. */
  ignoreUsername: boolean;
  credsTimeoutMs?: number;
}

/**
 * The pgpx model: one backend, no client check of its own; the backend decides. The client's
 * password is only asked for when it will be forwarded (credsOverride off).
 */
export function passthroughProvider(opts: PassthroughOptions): AuthProvider {
  const creds = opts.credsCmd
    ? new CachedCommandValue(
        { argv: opts.credsCmd, timeoutMs: opts.credsTimeoutMs ?? 30_000, maxOutputBytes: 64 * 1024 },
        opts.credsTtlMs,
      )
    : null;

  async function backendPassword(channel: ClientChannel): Promise<string | undefined> {
    if (!opts.credsOverride) {
      channel.send(be.authCleartext());
      const reply = await channel.read();
      if (reply.type !== 'AuthResponse') {
        throw new PgError('FATAL', SqlState.ProtocolViolation, `expected a password message, got ${reply.type}`);
      }
      return decodePassword(reply.body().data);
    }
    if (!creds) return opts.backend.password;
    try {
      return await creds.get();
    } catch (err) {
      channel.log.error('credentials command failed', { reason: (err as Error).message });
      throw new PgError('FATAL', SqlState.SqlclientUnableToEstablishSqlconnection, 'could not obtain backend credentials');
    }
  }

  return {
    name: 'passthrough',
    async authenticate(channel): Promise<AuthResult> {
      const clientUser = channel.startup.get('user')!;
      const user = opts.ignoreUsername ? (opts.backend.user ?? clientUser) : clientUser;
      const database = channel.startup.get('database') ?? opts.backend.database ?? user;
      const password = await backendPassword(channel);
      return { target: loginTarget(opts.backend, user, database, password), identity: clientUser, checkedByBackend: !opts.credsOverride };
    },
  };
}
