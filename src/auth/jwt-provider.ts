import { be, decodePassword, PgError, SqlState } from '../protocol/index.js';
import { verifyToken, type VerifyOptions } from './jwt-verify.js';
import type { KeySet } from './key-sources.js';
import type { BackendRoutes } from './routing.js';
import type { AuthProvider, AuthResult } from './provider.js';

export interface JwtProviderOptions {
  /** The current keys and routes; read per login so a reload applies to the next connection. */
  current(): { keys: KeySet; routes: BackendRoutes };
  /** The claim whose value selects the backend (default `sub`). */
  jwtField: string;
  verify: VerifyOptions;
  /** The startup user must equal the selecting claim or the user the backend mapping sets. */
  requireUserMatch: boolean;
}

function refuse(sqlstate: string, message: string, hint?: string): PgError {
  return new PgError('FATAL', sqlstate, message, { hint });
}

/**
 * The token is the password: ask for it in cleartext (TLS protects it), verify it, route by one
 * claim, and log in to the mapped backend with credentials the client never sees.
 */
export function jwtProvider(opts: JwtProviderOptions): AuthProvider {
  return {
    name: 'jwt',
    async authenticate(channel): Promise<AuthResult> {
      channel.send(be.authCleartext());
      const reply = await channel.read();
      if (reply.type !== 'AuthResponse') {
        throw refuse(SqlState.ProtocolViolation, `expected a password message, got ${reply.type}`);
      }
      const token = decodePassword(reply.body().data);
      const { keys, routes } = opts.current();
      const { claims, expiresAt } = await verifyToken(token, keys, opts.verify);

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
      if (opts.requireUserMatch && startupUser !== selector && startupUser !== route.target.user) {
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
      const target = {
        ...route.target,
        password,
        user: route.target.user ?? startupUser,
        database: route.target.database ?? startupDatabase ?? route.target.user ?? startupUser,
      };
      return { target, identity: selector, expiresAt };
    },
  };
}
