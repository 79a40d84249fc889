import { parseClientAuth, type ClientAuthRule } from '../auth/client-auth.js';

/** `oauth:` settings; `issuer` left out means the --oidcDiscovery document's issuer (or --issuer). */
export interface OAuthConfig {
  readonly issuer?: string;
  readonly scope: string;
}

export const DEFAULT_OAUTH_SCOPE = 'openid';

/**
 * The config file's `clientAuth:` rules and `oauth:` settings. An `oauth` rule needs the jwt
 * provider (that is what verifies tokens) and an issuer to name to clients and to require as `iss`.
 */
export function parseClientAuthSettings(
  file: { clientAuth?: unknown; oauth?: unknown },
  jwt: { provider: string; issuer?: string; oidcDiscovery?: string } | undefined,
  problems: string[],
): { clientAuth?: readonly ClientAuthRule[]; oauth?: OAuthConfig } {
  const clientAuth = parseClientAuth(file.clientAuth, problems);
  let oauth: OAuthConfig | undefined;
  if (file.oauth !== undefined) {
    const o = file.oauth as Record<string, unknown>;
    if (o === null || typeof o !== 'object' || Array.isArray(o)) problems.push('oauth: expected a mapping { issuer, scope }');
    else {
      for (const k of Object.keys(o)) if (k !== 'issuer' && k !== 'scope') problems.push(`oauth.${k}: unknown setting (known: issuer, scope)`);
      const issuer = o.issuer;
      const scope = o.scope ?? DEFAULT_OAUTH_SCOPE;
      if (issuer !== undefined && (typeof issuer !== 'string' || !/^https?:\/\/\S+$/.test(issuer))) {
        problems.push('oauth.issuer: expected the issuer URL (https://…)');
      }
      if (typeof scope !== 'string' || scope.trim() === '' || /["\\\x00-\x1f]/.test(scope)) {
        problems.push('oauth.scope: expected space-separated scope names such as "openid email"');
      }
      oauth = { issuer: typeof issuer === 'string' ? issuer : undefined, scope: String(scope) };
    }
  }
  if (clientAuth?.some((r) => r.method === 'oauth')) {
    if (jwt?.provider !== 'jwt') problems.push('clientAuth: method oauth needs the jwt auth provider (it verifies the bearer tokens)');
    oauth ??= { scope: DEFAULT_OAUTH_SCOPE };
    if (oauth.issuer && jwt?.issuer && oauth.issuer !== jwt.issuer) {
      problems.push(`oauth.issuer: "${oauth.issuer}" differs from --issuer "${jwt.issuer}"; tokens must carry the one issuer as iss`);
    }
    if (!oauth.issuer && !jwt?.issuer && !jwt?.oidcDiscovery) {
      problems.push('oauth.issuer: an oauth rule needs the issuer (oauth.issuer, --issuer, or the --oidcDiscovery document)');
    }
  } else if (oauth) {
    problems.push('oauth: set, but no clientAuth rule uses method oauth');
  }
  return { clientAuth, oauth };
}
