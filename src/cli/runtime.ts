import tls from 'node:tls';
import { commandProvider } from '../auth/command-provider.js';
import { jwtProvider } from '../auth/jwt-provider.js';
import { loadKeySet, type KeySet } from '../auth/key-sources.js';
import { passthroughProvider } from '../auth/passthrough.js';
import type { AuthProvider } from '../auth/provider.js';
import { loadBackendsFile } from '../auth/routing.js';
import type { ProxyConfig } from '../config/proxy-config.js';

/**
 * Everything a reload rebuilds: the auth provider (keys, backends) and the TLS context. Built
 * whole before it replaces the previous one, so a failed reload changes nothing.
 */
export interface Runtime {
  auth: AuthProvider;
  secureContext?: tls.SecureContext;
  /** Human-readable sources (keys, backends) for the banner and `pgward check`; no secrets. */
  describe(): string[];
  dispose(): void;
}

export async function buildRuntime(config: ProxyConfig): Promise<Runtime> {
  const secureContext = config.tls ? tls.createSecureContext({ cert: config.tls.cert, key: config.tls.key }) : undefined;
  const a = config.auth;
  switch (a.provider) {
    case 'jwt': {
      const routes = loadBackendsFile(a.backendsPath);
      const keys: KeySet = await loadKeySet({
        signingKeys: a.signingKeys,
        oidcDiscovery: a.oidcDiscovery,
        algorithms: a.verify.algorithms,
        refreshMs: config.refreshMs,
        cooldownMs: a.jwksCooldownMs,
      });
      const auth = jwtProvider({
        current: () => ({ keys, routes }),
        jwtField: a.jwtField,
        verify: a.verify,
        requireUserMatch: a.requireUserMatch,
      });
      return {
        auth,
        secureContext,
        describe: () => [...keys.describe().map((k) => `key source: ${k}`), ...routes.describe().map((r) => `backend: ${r}`)],
        dispose: () => keys.close?.(),
      };
    }
    case 'command':
      return {
        auth: commandProvider({ argv: a.argv, cleartext: a.cleartext, timeoutMs: a.timeoutMs }),
        secureContext,
        describe: () => [`authenticator: ${a.argv[0]}${a.cleartext ? ' (cleartext client passwords)' : ' (md5 client passwords)'}`],
        dispose: () => {},
      };
    case 'passthrough':
      return {
        auth: passthroughProvider({
          backend: a.backend,
          credsCmd: a.credsCmd,
          credsTtlMs: a.credsTtlMs,
          credsOverride: a.credsOverride,
          ignoreUsername: a.ignoreUsername,
        }),
        secureContext,
        describe: () => [`backend: ${a.backend.host}:${a.backend.port} (sslmode ${a.backend.sslmode})${a.credsCmd ? `, credentials from ${a.credsCmd[0]}` : ''}`],
        dispose: () => {},
      };
  }
}
