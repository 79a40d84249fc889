import { matchClientAuth, noRuleError, rejectedError, type ClientAuthRule } from '../auth/client-auth.js';
import type { AuthProvider } from '../auth/provider.js';
import type { Endpoint } from '../pipeline/index.js';
import { PgError, SqlState } from '../protocol/index.js';

export interface ClientAuthDeps {
  /** The configured provider: what `password` rules (and no rules at all) use. */
  auth: AuthProvider;
  clientAuth?: readonly ClientAuthRule[];
  /** OAUTHBEARER, for `oauth` rules. */
  oauth?: AuthProvider;
}

/**
 * The auth provider for this connection, by the first clientAuth rule that matches it (without
 * rules, the configured provider); throws FATAL 28000 when no rule matches or the rule rejects.
 */
export function chooseAuthProvider(deps: ClientAuthDeps, client: Endpoint, user: string, database: string): AuthProvider {
  if (!deps.clientAuth) return deps.auth;
  const connection = { database, user, address: client.address, tls: client.tls };
  const rule = matchClientAuth(deps.clientAuth, connection);
  if (!rule) throw noRuleError(connection);
  switch (rule.method) {
    case 'reject':
      throw rejectedError(connection);
    case 'password':
      return deps.auth;
    case 'oauth':
      if (!deps.oauth) throw new PgError('FATAL', SqlState.InternalError, 'OAuth is not configured on this proxy');
      return deps.oauth;
  }
}
