import tls from 'node:tls';
import type { Observable } from 'rxjs';
import { commandProvider } from '../auth/command-provider.js';
import { describeClientAuth } from '../auth/client-auth.js';
import { jwtProvider, tokenResolver, type JwtProviderOptions, type TokenResolver } from '../auth/jwt-provider.js';
import { oauthBearerProvider, type OAuthSettings } from '../auth/oauth-bearer.js';
import { DEFAULT_OAUTH_SCOPE } from '../config/client-auth-config.js';
import { loadKeySet, type KeySet } from '../auth/key-sources.js';
import { passthroughProvider } from '../auth/passthrough.js';
import type { AuthProvider } from '../auth/provider.js';
import { loadBackendsFile, type BackendRoutes } from '../auth/routing.js';
import { ConfigError } from '../config/load.js';
import { consoleEnabled, isAdmin } from '../config/admin-config.js';
import type { JwtAuthConfig, PipelineEntry, ProxyConfig } from '../config/proxy-config.js';
import { builtinMiddleware } from '../middleware/registry.js';
import type { Middleware } from '../pipeline/middleware.js';
import type { LoadedPlugins } from '../plugins/loader.js';
import { PgError, SqlState } from '../protocol/index.js';
import { NativeTlsContext, nativeTlsAvailability } from '../transport/native-tls.js';
import type { Logger } from '../telemetry/log.js';
import { formatHostPort } from '../util/host-port.js';

/**
 * Everything a reload rebuilds: the auth provider (keys, backends), the pipeline and the TLS
 * context. Built whole before it replaces the previous one, so a failed reload changes nothing.
 */
export interface Runtime {
  auth: AuthProvider;
  /** The OAUTHBEARER provider, when a clientAuth rule uses method oauth. */
  oauth?: AuthProvider;
  middleware: Middleware[];
  secureContext?: tls.SecureContext;
  /** The same certificate for the native TLS layer, with `--nativeTls` when the addon is built. */
  nativeTlsContext?: NativeTlsContext;
  /** The backends file's routes, when the provider routes by token (for pooling: warm targets, reload). */
  routes?: BackendRoutes;
  /** Human-readable sources (keys, backends) for the banner and `pgward check`; no secrets. */
  describe(): string[];
  dispose(): void;
}

/** Process-wide services the runtime's parts are built with. */
export interface RuntimeServices {
  plugins: LoadedPlugins;
  draining$: Observable<boolean>;
  log: Logger;
  /** True when a subject or token id is revoked now (SPEC §10). */
  revoked?(subject: string | undefined, tokenId: string | undefined): boolean;
  /** `drain-gate` closed a session for a shutdown (counted in `pgward_sessions_closed_total`). */
  drainClosed?(sessionId: string): void;
}

export const BUILTIN_PROVIDERS = new Set(['jwt', 'passthrough', 'command']);

interface TokenSetup {
  resolve: TokenResolver;
  routes: BackendRoutes;
  provider: AuthProvider;
  oauth?: AuthProvider;
  describe(): string[];
  dispose(): void;
}

async function tokenSetup(a: JwtAuthConfig, config: ProxyConfig, services: RuntimeServices): Promise<TokenSetup> {
  // Both the backends file and the keys are tried, so that one run reports what is wrong with each.
  let routes: ReturnType<typeof loadBackendsFile> | undefined;
  let routesError: unknown;
  try {
    routes = loadBackendsFile(a.backendsPath);
  } catch (err) {
    routesError = err;
  }
  let keys: KeySet;
  try {
    keys = await loadKeySet({
      signingKeys: a.signingKeys,
      oidcDiscovery: a.oidcDiscovery,
      algorithms: a.verify.algorithms,
      refreshMs: config.refreshMs,
      cooldownMs: a.jwksCooldownMs,
    });
  } catch (err) {
    if (routesError === undefined) throw err;
    throw new ConfigError([...problemsOf(routesError), ...problemsOf(err)]);
  }
  if (!routes) {
    keys.close?.();
    throw routesError;
  }
  const admin = config.admin;
  // Without --issuer, tokens must carry the discovery document's issuer (as OAuth logins do).
  const issuer = a.verify.issuer ?? keys.issuer;
  const opts = {
    current: () => ({ keys, routes: routes! }),
    jwtField: a.jwtField,
    verify: { ...a.verify, issuer },
    requireUserMatch: a.requireUserMatch,
    admin: consoleEnabled(admin) ? { database: admin.database, allows: (claims: Record<string, unknown>) => isAdmin(admin, claims) } : undefined,
    revoked: services.revoked,
  };
  const oauth = config.clientAuth?.some((r) => r.method === 'oauth') ? oauthSetup(config, opts, keys.issuer) : undefined;
  return {
    resolve: tokenResolver(opts),
    routes,
    provider: jwtProvider(opts),
    oauth: oauth?.provider,
    describe: () => [
      ...keys.describe().map((k) => `key source: ${k}`),
      `issuer: ${issuer === undefined ? 'not checked (set --issuer)' : `${issuer}${a.verify.issuer === undefined ? ' (from the --oidcDiscovery document)' : ''}`}`,
      ...routes.describe().map((r) => `backend: ${r}`),
      ...(oauth ? [`oauth: issuer ${oauth.settings.issuer}, scope "${oauth.settings.scope}"`] : []),
    ],
    dispose: () => keys.close?.(),
  };
}

/** OAUTHBEARER logins verify like password tokens, and must carry the OAuth issuer as `iss`. */
function oauthSetup(config: ProxyConfig, opts: JwtProviderOptions, discovered: string | undefined) {
  const issuer = config.oauth?.issuer ?? opts.verify.issuer ?? discovered;
  if (!issuer) throw new ConfigError(['oauth.issuer: the --oidcDiscovery document names no issuer; set oauth.issuer']);
  const settings: OAuthSettings = { issuer, scope: config.oauth?.scope ?? DEFAULT_OAUTH_SCOPE };
  const resolve = tokenResolver({ ...opts, verify: { ...opts.verify, issuer } });
  return { settings, provider: oauthBearerProvider(() => settings, resolve) };
}

function buildPipeline(entries: readonly PipelineEntry[], services: RuntimeServices): Middleware[] {
  const builtins = builtinMiddleware({ draining$: services.draining$, log: services.log, drainClosed: services.drainClosed });
  const problems: string[] = [];
  const chain: Middleware[] = [];
  for (const { name, options } of entries) {
    const factory = builtins.get(name) ?? services.plugins.middleware.get(name)?.factory;
    if (!factory) {
      const known = [...builtins.keys(), ...services.plugins.middleware.keys()];
      problems.push(`pipeline: unknown middleware "${name}" (known: ${known.join(', ')})`);
      continue;
    }
    try {
      chain.push(factory(options));
    } catch (err) {
      problems.push(`pipeline: ${name}: ${(err as Error).message}`);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return chain;
}

export async function buildRuntime(config: ProxyConfig, services: RuntimeServices): Promise<Runtime> {
  const runtime = await buildProviderRuntime(config, services);
  if (!config.clientAuth) return runtime;
  const rules = describeClientAuth(config.clientAuth);
  return { ...runtime, describe: () => [...runtime.describe(), ...rules] };
}

async function buildProviderRuntime(config: ProxyConfig, services: RuntimeServices): Promise<Runtime> {
  const secureContext = config.tls ? tls.createSecureContext({ cert: config.tls.cert, key: config.tls.key }) : undefined;
  const nativeTlsContext = config.tls && config.nativeTls && nativeTlsAvailability().available
    ? NativeTlsContext.server(config.tls.cert, config.tls.key)
    : undefined;
  const middleware = buildPipeline(config.pipeline, services);
  const a = config.auth;
  const base = { middleware, secureContext, nativeTlsContext };
  if ('plugin' in a) {
    const registered = services.plugins.authProviders.get(a.provider);
    if (!registered) {
      const known = [...BUILTIN_PROVIDERS, ...services.plugins.authProviders.keys()];
      throw new ConfigError([`auth: provider "${a.provider}" is not registered by any plugin (known: ${known.join(', ')})`]);
    }
    const tokens = a.jwt ? await tokenSetup(a.jwt, config, services) : undefined;
    const notConfigured = async (): Promise<never> => {
      throw new PgError('FATAL', SqlState.InvalidAuthorizationSpecification, 'token login is not configured on this proxy');
    };
    let auth: AuthProvider;
    try {
      auth = registered.factory({ resolveToken: tokens?.resolve ?? notConfigured }, a.options);
    } catch (err) {
      tokens?.dispose();
      throw new ConfigError([`auth: ${a.provider}: ${(err as Error).message}`]);
    }
    return {
      ...base,
      auth,
      routes: tokens?.routes,
      describe: () => [`auth provider from plugin "${registered.plugin}"`, ...(tokens?.describe() ?? [])],
      dispose: () => tokens?.dispose(),
    };
  }
  switch (a.provider) {
    case 'jwt': {
      const tokens = await tokenSetup(a, config, services);
      return { ...base, auth: tokens.provider, oauth: tokens.oauth, routes: tokens.routes, describe: tokens.describe, dispose: tokens.dispose };
    }
    case 'command':
      return {
        ...base,
        auth: commandProvider({ argv: a.argv, cleartext: a.cleartext, timeoutMs: a.timeoutMs, defaultTarget: a.backendDefaults }),
        describe: () => [
          `authenticator: ${a.argv[0]}${a.cleartext ? ' (cleartext client passwords)' : ' (md5 client passwords)'}`,
          `authenticator's backends: sslmode ${a.backendDefaults?.sslmode ?? 'prefer'}`,
        ],
        dispose: () => {},
      };
    case 'passthrough':
      return {
        ...base,
        auth: passthroughProvider({
          backend: a.backend,
          credsCmd: a.credsCmd,
          credsTtlMs: a.credsTtlMs,
          credsOverride: a.credsOverride,
          ignoreUsername: a.ignoreUsername,
        }),
        describe: () => [`backend: ${formatHostPort(a.backend.host, a.backend.port)} (sslmode ${a.backend.sslmode})${a.credsCmd ? `, credentials from ${a.credsCmd[0]}` : ''}`],
        dispose: () => {},
      };
  }
}

function problemsOf(err: unknown): string[] {
  const listed = (err as { problems?: unknown }).problems;
  return Array.isArray(listed) ? (listed as string[]) : [(err as Error).message];
}
