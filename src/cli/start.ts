import tls from 'node:tls';
import { commandProvider } from '../auth/command-provider.js';
import { passthroughProvider } from '../auth/passthrough.js';
import type { AuthProvider } from '../auth/provider.js';
import { CancelRegistry } from '../backend/cancel.js';
import type { ProxyConfig } from '../config/proxy-config.js';
import type { Middleware } from '../pipeline/index.js';
import { PgError, SqlState } from '../protocol/index.js';
import { ProxyServer } from '../server/listener.js';
import { createLogger, type Logger } from '../telemetry/log.js';

/** Reserved startup parameters a client may never pass through (SPEC §3). */
export const RESERVED_PARAMS = new Set(['crdb:remote_addr', 'pgward.remote_addr']);

export function authProviderFor(config: ProxyConfig): AuthProvider {
  const a = config.auth;
  if (a.provider === 'command') {
    return commandProvider({ argv: a.argv, cleartext: a.cleartext, timeoutMs: a.timeoutMs });
  }
  return passthroughProvider({
    backend: a.backend,
    credsCmd: a.credsCmd,
    credsTtlMs: a.credsTtlMs,
    credsOverride: a.credsOverride,
    ignoreUsername: a.ignoreUsername,
  });
}

export interface RunningProxy {
  server: ProxyServer;
  address: { host: string; port: number };
  log: Logger;
  /** Stops accepting, closes idle sessions at once and busy ones when idle or at the grace period. */
  drain(): Promise<void>;
  close(): Promise<void>;
}

/** Starts the proxy described by `config` (in-process; used by `pgward start` and tests). */
export async function startProxy(
  config: ProxyConfig,
  opts: { log?: Logger; middleware?: Middleware[] } = {},
): Promise<RunningProxy> {
  const log = opts.log ?? createLogger(config.log);
  const secureContext = config.tls ? tls.createSecureContext({ cert: config.tls.cert, key: config.tls.key }) : undefined;
  const server = new ProxyServer({
    host: config.listen.host,
    port: config.listen.port,
    maxConnections: config.maxConnections,
    secureContext,
    requireTls: Boolean(secureContext) && !config.insecure,
    auth: authProviderFor(config),
    middleware: opts.middleware ?? [],
    cancels: new CancelRegistry(),
    log,
    authTimeoutMs: config.authTimeoutMs,
    reservedParams: RESERVED_PARAMS,
    allowReplication: false,
  });
  const addr = await server.listen();
  const shutdown = new PgError('FATAL', SqlState.AdminShutdown, 'terminating connection due to administrator command');
  return {
    server,
    address: { host: addr.address, port: addr.port },
    log,
    async drain() {
      await server.stopListening();
      const all = [...server.sessions];
      for (const s of all) s.state.whenIdle(() => s.close(shutdown));
      const grace = new Promise<void>((r) => setTimeout(r, config.gracePeriodMs).unref());
      await Promise.race([Promise.all(all.map((s) => s.closed)), grace]);
      await server.close();
    },
    close: () => server.close(),
  };
}

/** `pgward start`: runs until SIGTERM/SIGINT (drain) or a second signal (immediate close). */
export async function runStart(config: ProxyConfig): Promise<number> {
  const proxy = await startProxy(config);
  const { log } = proxy;
  log.info('pgward listening', {
    address: `${proxy.address.host}:${proxy.address.port}`,
    tls: Boolean(config.tls),
    auth: config.auth.provider,
    max_connections: config.maxConnections,
  });
  if (!config.tls) log.warn('running without TLS (--insecure): credentials cross the network in the clear');
  return new Promise<number>((resolve) => {
    let stopping = false;
    const onSignal = (sig: NodeJS.Signals) => {
      if (stopping) {
        log.warn('second signal: closing all sessions now', { signal: sig });
        void proxy.close().then(() => resolve(0));
        return;
      }
      stopping = true;
      log.info('draining', { signal: sig, sessions: proxy.server.sessions.size, grace_ms: config.gracePeriodMs });
      void proxy.drain().then(() => {
        log.info('stopped');
        resolve(0);
      });
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}
