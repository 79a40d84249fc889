import { CancelRegistry } from '../backend/cancel.js';
import type { ProxyConfig } from '../config/proxy-config.js';
import type { Middleware } from '../pipeline/index.js';
import { PgError, SqlState } from '../protocol/index.js';
import { ProxyServer } from '../server/listener.js';
import { createLogger, type Logger } from '../telemetry/log.js';
import { buildRuntime } from './runtime.js';

/** Reserved startup parameters a client may never pass through (SPEC §3). */
export const RESERVED_PARAMS = new Set(['crdb:remote_addr', 'pgward.remote_addr']);

export interface RunningProxy {
  server: ProxyServer;
  address: { host: string; port: number };
  log: Logger;
  /** Rebuilds keys, backends and TLS from a new config and swaps them in; throws (and keeps the old) on error. */
  reload(config: ProxyConfig): Promise<void>;
  describe(): string[];
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
  let runtime = await buildRuntime(config);
  const server = new ProxyServer({
    host: config.listen.host,
    port: config.listen.port,
    maxConnections: config.maxConnections,
    secureContext: runtime.secureContext,
    requireTls: Boolean(runtime.secureContext) && !config.insecure,
    auth: runtime.auth,
    expiry: config.expiry,
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
    describe: () => runtime.describe(),
    async reload(next) {
      const built = await buildRuntime(next);
      server.reconfigure({
        auth: built.auth,
        secureContext: built.secureContext,
        requireTls: Boolean(built.secureContext) && !next.insecure,
        expiry: next.expiry,
        authTimeoutMs: next.authTimeoutMs,
        maxConnections: next.maxConnections,
      });
      const old = runtime;
      runtime = built;
      old.dispose();
    },
    async drain() {
      await server.stopListening();
      const all = [...server.sessions];
      for (const s of all) s.state.whenIdle(() => s.close(shutdown));
      const grace = new Promise<void>((r) => setTimeout(r, config.gracePeriodMs).unref());
      await Promise.race([Promise.all(all.map((s) => s.closed)), grace]);
      await server.close();
    },
    close: async () => {
      await server.close();
      runtime.dispose();
    },
  };
}

/** `pgward start`: runs until SIGTERM/SIGINT (drain) or a second signal (immediate close). */
export async function runStart(config: ProxyConfig, rebuild: () => ProxyConfig): Promise<number> {
  const proxy = await startProxy(config);
  const { log } = proxy;
  for (const line of proxy.describe()) log.info('source', { detail: line });
  let reloading = false;
  const reload = async (why: string) => {
    if (reloading) return;
    reloading = true;
    try {
      await proxy.reload(rebuild());
      log.info('configuration reloaded', { trigger: why });
    } catch (err) {
      log.error('configuration reload failed; keeping the previous configuration', {
        trigger: why,
        reason: (err as Error).message,
      });
    } finally {
      reloading = false;
    }
  };
  process.on('SIGHUP', () => void reload('SIGHUP'));
  const refresh = config.refreshMs > 0 ? setInterval(() => void reload('refresh'), config.refreshMs) : undefined;
  refresh?.unref();
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
    void proxy.server.closed.then(() => clearInterval(refresh));
    process.on('SIGINT', onSignal);
  });
}
