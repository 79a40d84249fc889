import { be, decodePassword, PgError, SqlState } from '../protocol/index.js';
import { loginTarget } from '../backend/target-copy.js';
import { verifyToken, type VerifiedToken, type VerifyOptions } from './jwt-verify.js';
import type { KeySet } from './key-sources.js';
import { VerifiedTokenCache } from './token-cache.js';
import type { BackendRoutes } from './routing.js';
import type { AuthProvider, AuthResult, ClientChannel } from './provider.js';

export interface JwtProviderOptions {
  /** The current keys and routes; read per login so a reload applies to the next connection. */
  current(): { keys: KeySet; routes: BackendRoutes };
  /** The claim whose value selects the backend (default `sub`). */
  jwtField: string;
  verify: VerifyOptions;
  /** The startup user must equal the selecting claim or the user the backend mapping sets. */
  requireUserMatch: boolean;
  /** The console (SPEC §10): its database, and whether verified claims make an administrator. */
  admin?: { database: string; allows(claims: Record<string, unknown>): boolean };
  /** True when this subject or token id is revoked now. */
  revoked?(subject: string | undefined, tokenId: string | undefined): boolean;
  /**
   * Verified tokens kept until their `exp` (a new cache per resolver by default; null: verify
   * every time). Revocation and routing still run at every login.
   */
  tokenCache?: VerifiedTokenCache | null;
}

const stringClaim = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

function refuse(sqlstate: string, message: string, hint?: string): PgError {
  return new PgError('FATAL', sqlstate, message, { hint });
}

export type TokenResolver = (
  token: string,
  channel: ClientChannel,
  opts?: { matchStartupUser?: boolean },
) => Promise<AuthResult>;

/**
 * Verifies a token and routes it by its selecting claim to a backend target with credentials;
 * shared by the `jwt` provider and by plugins (statement login). Throws PgError 28P01/28000.
 */
export function tokenResolver(opts: JwtProviderOptions): TokenResolver {
  const cache = opts.tokenCache === undefined ? new VerifiedTokenCache() : opts.tokenCache;
  // A kept result is returned as it is, not as a promise: a login with a known token waits for nothing here.
  const verify = (token: string, keys: KeySet): VerifiedToken | Promise<VerifiedToken> => {
    if (!cache) return verifyToken(token, keys, opts.verify);
    return cache.get(token, keys) ?? verifyToken(token, keys, opts.verify).then((verified) => cache.keep(token, keys, verified));
  };
  return async (token, channel, { matchStartupUser = true } = {}) => {
    const { keys, routes } = opts.current();
    const checked = verify(token, keys);
    const { claims, expiresAt } = checked instanceof Promise ? await checked : checked;
    const subject = stringClaim(claims.sub);
    const tokenId = stringClaim(claims.jti);
    if (opts.revoked?.(subject, tokenId)) {
      channel.log.info('revoked token refused', { subject, jti: tokenId });
      throw refuse(SqlState.InvalidPassword, 'token revoked');
    }
    const admin = opts.admin;
    if (admin && matchStartupUser && channel.startup.get('database') === admin.database) {
      if (!admin.allows(claims)) {
        channel.log.info('console refused: not an administrator', { subject });
        throw refuse(SqlState.InvalidAuthorizationSpecification, `database "${admin.database}" is the pgward console, open to administrators only`);
      }
      return { target: { host: '', port: 0, sslmode: 'disable', connectTimeoutMs: 0, params: {} }, identity: subject ?? String(claims[opts.jwtField] ?? ''), subject, tokenId, expiresAt, console: true };
    }

    const selector = claims[opts.jwtField];
    if (typeof selector !== 'string' || selector === '' || selector.length > 1024 || /[\x00-\x1f\x7f]/.test(selector)) {
      throw refuse(SqlState.InvalidAuthorizationSpecification, `token has no usable "${opts.jwtField}" claim to select a backend`);
    }
    const startupUser = channel.startup.get('user')!;
    const startupDatabase = channel.startup.get('database');
    const route = routes.match(selector, { claims, startupUser, startupDatabase });
    // Claim values stay out of client messages (they are token content); the log has them.
    if (!route) {
      channel.log.info('no backend for token', { claim: opts.jwtField, value: selector });
      throw refuse(SqlState.InvalidAuthorizationSpecification, `no backend is configured for this token's "${opts.jwtField}" claim`);
    }
    const checkUser = opts.requireUserMatch && matchStartupUser;
    if (checkUser && startupUser !== selector && startupUser !== route.target.user) {
      channel.log.info('user does not match token', { user: startupUser, claim: opts.jwtField, value: selector });
      throw refuse(
        SqlState.InvalidAuthorizationSpecification,
        `user "${startupUser}" does not match the token`,
        `Connect with the user named by the token's "${opts.jwtField}" claim or by its backend mapping.`,
      );
    }
    let password = route.target.password;
    if (route.passwordCommand) {
      try {
        password = await route.passwordCommand.get();
      } catch (err) {
        channel.log.error('backend password command failed', { route: route.key, reason: (err as Error).message });
        throw refuse(SqlState.SqlclientUnableToEstablishSqlconnection, 'could not obtain backend credentials');
      }
    }
    // With the startup user not bound to the token, the token decides who the session is.
    const user = route.target.user ?? (matchStartupUser ? startupUser : selector);
    const database = route.target.database ?? (matchStartupUser ? startupDatabase : undefined) ?? user;
    const target = loginTarget(route.target, user, database, password);
    return { target, identity: selector, expiresAt, subject, tokenId };
  };
}

/**
 * The token is the password: ask for it in cleartext (TLS protects it), verify it, route by one
 * claim, and log in to the mapped backend with credentials the client never sees.
 */
export function jwtProvider(opts: JwtProviderOptions): AuthProvider {
  const resolve = tokenResolver(opts);
  return {
    name: 'jwt',
    async authenticate(channel): Promise<AuthResult> {
      channel.send(be.authCleartext());
      const reply = await channel.read();
      if (reply.type !== 'AuthResponse') {
        throw refuse(SqlState.ProtocolViolation, `expected a password message, got ${reply.type}`);
      }
      return resolve(decodePassword(reply.body().data), channel);
    },
  };
}
