import tls from 'node:tls';
import type { Observable } from 'rxjs';
import { commandProvider } from '../auth/command-provider.js';
import { jwtProvider, tokenResolver, type TokenResolver } from '../auth/jwt-provider.js';
import { loadKeySet, type KeySet } from '../auth/key-sources.js';
import { passthroughProvider } from '../auth/passthrough.js';
import type { AuthProvider } from '../auth/provider.js';
import { loadBackendsFile } from '../auth/routing.js';
import { ConfigError } from '../config/load.js';
import { isAdmin } from '../config/admin-config.js';
import type { JwtAuthConfig, PipelineEntry, ProxyConfig } from '../config/proxy-config.js';
import { builtinMiddleware } from '../middleware/registry.js';
import type { Middleware } from '../pipeline/middleware.js';
import type { LoadedPlugins } from '../plugins/loader.js';
import { PgError, SqlState } from '../protocol/index.js';
import type { Logger } from '../telemetry/log.js';

/**
 * Everything a reload rebuilds: the auth provider (keys, backends), the pipeline and the TLS
 * context. Built whole before it replaces the previous one, so a failed reload changes nothing.
 */
export interface Runtime {
  auth: AuthProvider;
  middleware: Middleware[];
  secureContext?: tls.SecureContext;
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
}

export const BUILTIN_PROVIDERS = new Set(['jwt', 'passthrough', 'command']);

interface TokenSetup {
  resolve: TokenResolver;
  provider: AuthProvider;
  describe(): string[];
  dispose(): void;
}

async function tokenSetup(a: JwtAuthConfig, config: ProxyConfig, services: RuntimeServices): Promise<TokenSetup> {
  const routes = loadBackendsFile(a.backendsPath);
  const keys: KeySet = await loadKeySet({
    signingKeys: a.signingKeys,
    oidcDiscovery: a.oidcDiscovery,
    algorithms: a.verify.algorithms,
    refreshMs: config.refreshMs,
    cooldownMs: a.jwksCooldownMs,
  });
  const admin = config.admin;
  const opts = {
    current: () => ({ keys, routes }),
    jwtField: a.jwtField,
    verify: a.verify,
    requireUserMatch: a.requireUserMatch,
    admin: { database: admin.database, allows: (claims: Record<string, unknown>) => isAdmin(admin, claims) },
    revoked: services.revoked,
  };
  return {
    resolve: tokenResolver(opts),
    provider: jwtProvider(opts),
    describe: () => [...keys.describe().map((k) => `key source: ${k}`), ...routes.describe().map((r) => `backend: ${r}`)],
    dispose: () => keys.close?.(),
  };
}

function buildPipeline(entries: readonly PipelineEntry[], services: RuntimeServices): Middleware[] {
  const builtins = builtinMiddleware({ draining$: services.draining$, log: services.log });
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
  const secureContext = config.tls ? tls.createSecureContext({ cert: config.tls.cert, key: config.tls.key }) : undefined;
  const middleware = buildPipeline(config.pipeline, services);
  const a = config.auth;
  const base = { middleware, secureContext };
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
      describe: () => [`auth provider from plugin "${registered.plugin}"`, ...(tokens?.describe() ?? [])],
      dispose: () => tokens?.dispose(),
    };
  }
  switch (a.provider) {
    case 'jwt': {
      const tokens = await tokenSetup(a, config, services);
      return { ...base, auth: tokens.provider, describe: tokens.describe, dispose: tokens.dispose };
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
        describe: () => [`backend: ${a.backend.host}:${a.backend.port} (sslmode ${a.backend.sslmode})${a.credsCmd ? `, credentials from ${a.credsCmd[0]}` : ''}`],
        dispose: () => {},
      };
  }
}
