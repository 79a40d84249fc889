import { pgwardVersion } from '../util/version.js';
import { BehaviorSubject } from 'rxjs';
import { CancelRegistry } from '../backend/cancel.js';
import { PeerCancelChannel } from '../backend/peers.js';
import { RoutingConfigError } from '../auth/routing.js';
import { ConfigError } from '../config/load.js';
import type { ProxyConfig } from '../config/proxy-config.js';
import type { Middleware } from '../pipeline/index.js';
import { nativeRelayAvailability } from '../pipeline/native-relay.js';
import { nativeTlsAvailability } from '../transport/native-tls.js';
import { useNativeBackendTls } from '../backend/native-tls-dial.js';
import { useNativePlainBackends } from '../backend/pooled-endpoint.js';
import { defaultBaseDir, loadPlugins } from '../plugins/loader.js';
import { ProxyServer } from '../server/listener.js';
import { createLogger, type Logger } from '../telemetry/log.js';
import { BUILTIN_PROVIDERS, buildRuntime, type Runtime } from './runtime.js';
import { BUILTIN_MIDDLEWARE_NAMES } from '../middleware/registry.js';
import { statementTelemetry } from '../server/statement-telemetry.js';
import { startMetricsServer } from '../telemetry/http.js';
import { createMetrics, type Metrics } from '../telemetry/metrics.js';
import { startTracing } from '../telemetry/tracing.js';
import { createAdminRuntime } from './admin-host.js';
import { startPool } from './pool-runtime.js';
import { consoleEnabled } from '../config/admin-config.js';
import { formatHostPort } from '../util/host-port.js';
import { liveSettings, runningProxy, type ProxyParts, type RunningProxy } from './running-proxy.js';

export type { RunningProxy } from './running-proxy.js';

/** Reserved startup parameters a client may never pass through (SPEC §3). */
const RESERVED_PARAMS = new Set(['crdb:remote_addr', 'pgward.remote_addr']);

export interface StartOptions {
  log?: Logger;
  /** Middleware placed after the configured pipeline (embedding and tests). */
  middleware?: Middleware[];
  /** Whether the tracing SDK is running (statement spans need the statement telemetry stage). */
  tracing?: boolean;
  /** Where relative plugin paths start; default the config file's folder or the working directory. */
  baseDir?: string;
  configPath?: string;
  /** What the console's RELOAD runs besides re-reading revocations (`pgward start`: the SIGHUP reload). */
  onReload?: () => Promise<void>;
}

/**
 * Starts the proxy described by `config` (in-process; used by `pgward start` and tests). When a
 * step fails, whatever the earlier steps started (listeners, peers, plugins) is stopped again
 * before the error is thrown: a failed start leaves nothing listening, never a half-started proxy.
 */
export async function startProxy(config: ProxyConfig, opts: StartOptions = {}): Promise<RunningProxy> {
  const undo: (() => unknown)[] = [];
  try {
    return await launch(config, opts, undo);
  } catch (err) {
    for (const step of undo.reverse()) await Promise.resolve().then(step).catch(() => undefined);
    throw err;
  }
}

async function launch(config: ProxyConfig, opts: StartOptions, undo: (() => unknown)[]): Promise<RunningProxy> {
  const log = opts.log ?? createLogger(config.log);
  const draining$ = new BehaviorSubject(false);
  // Process metrics only when something can scrape them: their event-loop monitor is a timer
  // that would otherwise wake an idle proxy for nothing.
  const metrics = createMetrics({ version: pgwardVersion(), collectDefault: Boolean(config.metricsListen) });
  const plugins = await asConfigProblem(loadPlugins(config.plugins, {
    baseDir: opts.baseDir ?? defaultBaseDir(opts.configPath),
    version: pgwardVersion(),
    builtinMiddleware: BUILTIN_MIDDLEWARE_NAMES,
    builtinProviders: BUILTIN_PROVIDERS,
    onPluginError: (plugin, where, error) => {
      metrics.pluginError(plugin);
      log.error('plugin error', { plugin, where, error: error instanceof Error ? error.message : String(error) });
    },
  }));
  undo.push(() => plugins.runHook('preClose'));
  const pools = startPool(config.pool, metrics.registry, log);
  undo.push(() => pools.close());
  let server: ProxyServer | undefined;
  const admin = createAdminRuntime({
    config,
    version: pgwardVersion(),
    sessions: () => server?.sessions ?? new Set(),
    metrics,
    log,
    reload: async () => opts.onReload?.(),
    pools: () => pools.pool.stats(),
  });
  // With no metrics endpoint, no tracing and no console nobody could see statement accounting: skip it.
  const telemetry = statementTelemetry(metrics);
  const parts: Omit<ProxyParts, 'server' | 'runtime'> = {
    config, log, draining$, metrics, plugins, pools, admin,
    services: { plugins, draining$, log, revoked: admin.revoked, drainClosed: admin.drainClosed },
    extra: opts.middleware ?? [],
    observer: (c) => (Boolean(config.metricsListen) || opts.tracing === true || consoleEnabled(c.admin) ? telemetry : undefined),
  };
  const runtime: Runtime = await asConfigProblem(buildRuntime(config, parts.services));
  undo.push(() => runtime.dispose());
  useNativeBackendTls(config.nativeTls);
  useNativePlainBackends(config.nativeRelay);
  const { cancels, peers } = cancelForwarding(config, log, metrics);
  if (peers) undo.push(() => peers.close());
  const peerAddress = peers && config.peers ? await peers.listen(config.peers.listen.host, config.peers.listen.port) : undefined;
  server = new ProxyServer({
    ...liveSettings(config, runtime, parts),
    host: config.listen.host,
    port: config.listen.port,
    userLimit: { max: config.maxConnectionsPerUser, counts: new Map() },
    cancels,
    log,
    reservedParams: RESERVED_PARAMS,
    allowReplication: false,
    metrics,
    proxyProtocol: config.proxyProtocol,
    admin: admin.hook,
    pool: pools.pool,
    onSessionStart: (s) => void plugins.runHook('onSessionStart', s),
    onAuthenticated: (s) => void plugins.runHook('onAuthenticated', s),
    onSessionEnd: (s) => void plugins.runHook('onSessionEnd', s),
  });
  const listening = server;
  undo.push(() => listening.close());
  const addr = await server.listen();
  const metricsServer = config.metricsListen
    ? await startMetricsServer({ ...config.metricsListen, metrics, ready: () => listening.isListening && !draining$.value })
    : undefined;
  if (metricsServer) undo.push(() => metricsServer.close());
  await plugins.runHook('onReady');
  // In the background: a backend that is slow or down must not hold the listener back.
  void pools.warm(runtime.routes);
  return runningProxy({ ...parts, runtime, peers, server, metricsServer }, addr, peerAddress);
}

/**
 * What start loads from the configuration (plugins, keys, backends, certificates) failing is bad
 * configuration (exit 2, like `pgward check`), not a crash.
 */
async function asConfigProblem<T>(work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    if (err instanceof RoutingConfigError) throw new ConfigError(err.problems);
    throw new ConfigError([(err as Error).message]);
  }
}

/**
 * The cancel-key registry, and with `peers:` the channel that sends keys other instances own to
 * them and accepts theirs.
 */
function cancelForwarding(config: ProxyConfig, log: Logger, metrics: Metrics): { cancels: CancelRegistry; peers?: PeerCancelChannel } {
  const settings = config.peers;
  if (!settings) return { cancels: new CancelRegistry() };
  const peerLog = log.child({ component: 'peers' });
  const peers: PeerCancelChannel = new PeerCancelChannel({
    id: settings.id,
    secret: settings.secret,
    instances: settings.instances,
    deliverLocally: (key) => cancels.forwardLocally(key),
    onEvent: (event, detail) => {
      metrics.cancelRequest(event);
      if (event === 'rejected') peerLog.warn('peer cancel frame rejected', detail);
      else peerLog.debug(event === 'from_peer' ? 'cancel from a peer sent to the backend' : 'cancel from a peer for an unknown key', detail);
    },
  });
  const cancels = new CancelRegistry({ instanceId: settings.id, remote: peers });
  return { cancels, peers };
}

/** `pgward start`: runs until SIGTERM/SIGINT (drain) or a second signal (immediate close). */
export async function runStart(config: ProxyConfig, rebuild: () => ProxyConfig, configPath?: string): Promise<number> {
  const tracing = startTracing();
  let reloadNow = async () => {};
  const proxy = await startProxy(config, { configPath, tracing: Boolean(tracing), onReload: () => reloadNow() }).catch(async (err: unknown) => {
    await tracing?.shutdown().catch(() => undefined);
    throw err;
  });
  const { log } = proxy;
  const flushTraces = async () => {
    await tracing?.shutdown().catch((err: Error) => log.warn('could not flush traces', { reason: err.message }));
  };
  const native = nativeRelayAvailability();
  const nativeTls = nativeTlsAvailability();
  log.info('pgward listening', {
    address: formatHostPort(proxy.address.host, proxy.address.port),
    tls: Boolean(config.tls),
    auth: config.auth.provider,
    pipeline: ['auth', ...config.pipelineNames].join(' → '),
    plugins: proxy.plugins.plugins.map((p) => `${p.name}@${p.version}`).join(', ') || undefined,
    max_connections: config.maxConnections,
    metrics: proxy.metricsAddress ? `http://${formatHostPort(proxy.metricsAddress.host, proxy.metricsAddress.port)}/metrics` : undefined,
    tracing: tracing ? 'on' : 'off',
    native_relay: !config.nativeRelay ? 'off' : native.available ? 'on' : 'unavailable',
    native_tls: !config.nativeTls ? 'off' : nativeTls.available ? 'on' : 'unavailable',
    proxy_protocol: config.proxyProtocol || undefined,
    peers: proxy.peerAddress && config.peers
      ? `instance ${config.peers.id} on ${formatHostPort(proxy.peerAddress.host, proxy.peerAddress.port)}; peers ${[...config.peers.instances.keys()].filter((i) => i !== config.peers!.id).join(', ')}; secret from ${config.peers.secretSource}`
      : undefined,
  });
  for (const line of proxy.describe()) log.info('source', { detail: line });
  if (config.nativeRelay && !native.available) log.warn('native relay not available: every session relays in JavaScript', { reason: native.reason });
  if (config.nativeTls && !nativeTls.available) log.warn('native TLS not available: TLS runs on Node\'s TLS sockets', { reason: nativeTls.reason });
  if (!config.tls) log.warn('running without TLS (--insecure): credentials cross the network in the clear');
  let reloading = false;
  const reload = async (why: string) => {
    if (reloading || proxy.draining) return;
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
  reloadNow = () => reload('RELOAD');
  process.on('SIGHUP', () => {
    log.reopen?.();
    void reload('SIGHUP');
  });
  const refresh = config.refreshMs > 0 ? setInterval(() => void reload('refresh'), config.refreshMs) : undefined;
  refresh?.unref();
  return new Promise<number>((resolve) => {
    let stopping = false;
    const onSignal = (sig: NodeJS.Signals) => {
      if (stopping) {
        log.warn('second signal: closing all sessions now', { signal: sig });
        void proxy.close().then(flushTraces).then(() => resolve(0));
        return;
      }
      stopping = true;
      log.info('draining', { signal: sig, sessions: proxy.server.sessions.size, grace_ms: config.gracePeriodMs });
      void proxy
        .drain()
        .then(flushTraces)
        .then(() => {
          log.info('stopped');
          resolve(0);
        });
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    void proxy.server.closed.then(() => clearInterval(refresh));
  });
}
