/**
 * A started proxy as its owner holds it: the addresses it serves on, and reload, drain and close.
 * A reload builds the configuration's runtime anew (keys, backends, pipeline, TLS) and swaps it in
 * for new sessions; live sessions keep what they had.
 */
import type { BehaviorSubject } from 'rxjs';
import { forgetBackendTlsContexts } from '../backend/dial.js';
import { useNativeBackendTls } from '../backend/native-tls-dial.js';
import { useNativePlainBackends } from '../backend/pooled-endpoint.js';
import type { PeerCancelChannel } from '../backend/peers.js';
import type { ProxyConfig } from '../config/proxy-config.js';
import type { Middleware } from '../pipeline/index.js';
import type { LoadedPlugins } from '../plugins/loader.js';
import { PgError, SqlState } from '../protocol/index.js';
import type { ProxyServer, ProxyServerOptions } from '../server/listener.js';
import { AuthThrottle } from '../server/throttle.js';
import type { startMetricsServer } from '../telemetry/http.js';
import type { Logger } from '../telemetry/log.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { AdminRuntime } from './admin-host.js';
import type { PoolRuntime } from './pool-runtime.js';
import { buildRuntime, type Runtime, type RuntimeServices } from './runtime.js';

export interface RunningProxy {
  server: ProxyServer;
  address: { host: string; port: number };
  log: Logger;
  plugins: LoadedPlugins;
  metrics: Metrics;
  /** Where /metrics is served, when --metricsAddr is set. */
  metricsAddress?: { host: string; port: number };
  /** Where peers' forwarded cancels are accepted, with `peers:`. */
  peerAddress?: { host: string; port: number };
  /** True once draining started (the process will stop). */
  readonly draining: boolean;
  /** Rebuilds keys, backends, pipeline and TLS from a new config and swaps them in; throws (and keeps the old) on error. */
  reload(config: ProxyConfig): Promise<void>;
  describe(): string[];
  /** Stops accepting, closes idle sessions at once and busy ones when idle or at the grace period. */
  drain(): Promise<void>;
  close(): Promise<void>;
}

/** What a started proxy is made of; a reload replaces `runtime`. */
export interface ProxyParts {
  config: ProxyConfig;
  log: Logger;
  draining$: BehaviorSubject<boolean>;
  metrics: Metrics;
  plugins: LoadedPlugins;
  pools: PoolRuntime;
  admin: AdminRuntime;
  services: RuntimeServices;
  /** Middleware placed after the configured pipeline (embedding and tests). */
  extra: Middleware[];
  /** The statement telemetry stage, when anything can see its results under this configuration. */
  observer: (config: ProxyConfig) => ProxyServerOptions['observeStatements'];
  runtime: Runtime;
  peers?: PeerCancelChannel;
  server: ProxyServer;
  metricsServer?: Awaited<ReturnType<typeof startMetricsServer>>;
}

/** The listener's settings that come from the configuration and its runtime: given at start, and again at each reload. */
export function liveSettings(
  config: ProxyConfig,
  runtime: Runtime,
  parts: Pick<ProxyParts, 'admin' | 'extra' | 'observer'>,
): Omit<ProxyServerOptions, 'host' | 'port' | 'userLimit' | 'cancels' | 'log' | 'reservedParams' | 'allowReplication' | 'metrics' | 'proxyProtocol' | 'admin' | 'pool'> {
  return {
    auth: runtime.auth,
    oauth: runtime.oauth,
    clientAuth: config.clientAuth,
    middleware: [...runtime.middleware, ...parts.extra],
    secureContext: runtime.secureContext,
    nativeTlsContext: runtime.nativeTlsContext,
    requireTls: Boolean(runtime.secureContext) && !config.insecure,
    expiry: parts.admin.expiryPolicy(config.expiry),
    observeStatements: parts.observer(config),
    nativeRelay: config.nativeRelay,
    authTimeoutMs: config.authTimeoutMs,
    maxConnections: config.maxConnections,
    pendingLogins: { max: config.maxPendingLogins, perAddress: config.maxPendingLoginsPerAddress },
    maxMessageSize: config.maxMessageSize,
    logConnections: config.log.connections,
    logDisconnections: config.log.disconnections,
    throttle: config.throttleAfter > 0 ? new AuthThrottle({ after: config.throttleAfter }) : undefined,
  };
}

type Address = { address: string; port: number };

export function runningProxy(parts: ProxyParts, addr: Address, peerAddress: Address | undefined): RunningProxy {
  const { server, log, plugins, metrics, metricsServer } = parts;
  return {
    server,
    address: { host: addr.address, port: addr.port },
    log,
    plugins,
    metrics,
    metricsAddress: metricsServer ? { host: metricsServer.address.address, port: metricsServer.address.port } : undefined,
    peerAddress: peerAddress ? { host: peerAddress.address, port: peerAddress.port } : undefined,
    get draining() {
      return parts.draining$.value;
    },
    describe: () => parts.runtime.describe(),
    reload: (next) => reload(parts, next),
    drain: () => drain(parts),
    close: () => closeAll(parts),
  };
}

async function reload(parts: ProxyParts, next: ProxyConfig): Promise<void> {
  const { admin, metrics, peers, server, log } = parts;
  admin.refresh('reload');
  let built: Runtime;
  try {
    built = await buildRuntime(next, parts.services);
  } catch (err) {
    metrics.configReload(false);
    throw err;
  }
  metrics.configReload(true);
  admin.reconfigure(next.admin);
  const was = parts.config.peers;
  const now = next.peers;
  if (peers && now) peers.update(now);
  if (Boolean(was) !== Boolean(now) || (was && now && (was.id !== now.id || was.listen.host !== now.listen.host || was.listen.port !== now.listen.port))) {
    log.warn('peers: a new id or listen address, or turning peers on or off, takes effect after a restart');
  }
  server.reconfigure({ ...liveSettings(next, built, parts), userLimit: { max: next.maxConnectionsPerUser, counts: server.userCounts } });
  useNativeBackendTls(next.nativeTls);
  useNativePlainBackends(next.nativeRelay);
  const old = parts.runtime;
  parts.runtime = built;
  old.dispose();
  forgetBackendTlsContexts();
  void parts.pools.reload(next.pool, built.routes);
}

const SHUTDOWN = (): PgError => new PgError('FATAL', SqlState.AdminShutdown, 'terminating connection due to administrator command');

/** Stops accepting, closes idle sessions at once and busy ones when idle or at the grace period. */
async function drain(parts: ProxyParts): Promise<void> {
  const { server, pools, admin } = parts;
  await server.stopListening();
  // Idle backend connections first; the others close as their sessions end.
  pools.close();
  parts.draining$.next(true);
  parts.metrics.setDraining(true);
  const all = [...server.sessions];
  const grace = new Promise<void>((r) => setTimeout(r, parts.config.gracePeriodMs).unref());
  await Promise.race([Promise.all(all.map((s) => s.closed)), grace]);
  const shutdown = SHUTDOWN();
  for (const s of server.sessions) {
    s.close(shutdown);
    admin.drainClosed(s.id);
  }
  await closeAll(parts);
}

async function closeAll(parts: ProxyParts): Promise<void> {
  parts.pools.close();
  await parts.server.close();
  await parts.peers?.close();
  await parts.metricsServer?.close();
  await parts.plugins.runHook('preClose');
  parts.runtime.dispose();
}
