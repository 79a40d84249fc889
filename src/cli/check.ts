import { existsSync, readFileSync } from 'node:fs';
import { parseRevocations } from '../admin/revocations.js';
import { RoutingConfigError, type BackendRoutes } from '../auth/routing.js';
import { describePoolSettings, poolSettings } from '../backend/pool-settings.js';
import { ConfigError } from '../config/load.js';
import { buildProxyConfig, type ProxyConfig } from '../config/proxy-config.js';
import { BehaviorSubject } from 'rxjs';
import { BUILTIN_MIDDLEWARE_NAMES } from '../middleware/registry.js';
import { defaultBaseDir, loadPlugins } from '../plugins/loader.js';
import { silentLogger } from '../telemetry/log.js';
import { BUILTIN_PROVIDERS, buildRuntime } from './runtime.js';
import { configPathOf } from './config-path.js';
import { nativeRelayAvailability } from '../pipeline/native-relay.js';
import { pgwardVersion } from '../util/version.js';
import { formatDuration } from '../util/duration.js';
import { formatHostPort } from '../util/host-port.js';

/** Text for `pgward check`: what would run, with no secrets. */
function describeConfig(config: ProxyConfig, sources: string[]): string[] {
  return [
    `listen: ${formatHostPort(config.listen.host, config.listen.port)} (${config.tls ? `TLS from ${config.tls.certPath}` : 'no TLS, --insecure'})`,
    `auth provider: ${config.auth.provider}`,
    `pipeline: auth${config.pipelineNames.length ? ' → ' + config.pipelineNames.join(' → ') : ''}`,
    ...(config.plugins.length ? [`plugins: ${config.plugins.join(', ')}`] : []),
    ...sources,
    `relay: ${relayDescription(config)}`,
    `limits: maxConnections ${config.maxConnections}, maxPendingLogins ${config.maxPendingLogins} (${config.maxPendingLoginsPerAddress || 'no limit'} per address), maxMessageSize ${config.maxMessageSize} bytes, authTimeout ${formatDuration(config.authTimeoutMs)}, gracePeriod ${formatDuration(config.gracePeriodMs)}`,
    ...(config.peers
      ? [
          `peers: this is instance ${config.peers.id}, accepting forwarded cancels on ${formatHostPort(config.peers.listen.host, config.peers.listen.port)}; ` +
            `instances ${[...config.peers.instances].map(([id, a]) => `${id}=${formatHostPort(a.host, a.port)}`).join(', ')}; secret from ${config.peers.secretSource}`,
        ]
      : []),
    `token expiry: ${config.expiry.mode}${config.refreshMs > 0 ? `; reload every ${formatDuration(config.refreshMs)}` : '; no periodic reload'}`,
  ];
}

/**
 * `pgward check [start flags]`: loads and validates everything `start` would (files, keys, remote
 * key sources, backends), prints the resolved setup and exits 0, or 2 with every problem listed.
 */
export async function runCheck(argv: string[], out = process.stdout, err = process.stderr): Promise<number> {
  let config: ProxyConfig;
  // Problems of the settings themselves; when they still leave a configuration (a missing TLS
  // file, a bad number), the keys, backends and plugins are loaded too, so one run lists all.
  let early: string[] = [];
  try {
    config = buildProxyConfig(argv);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    if (!e.partial) return fail(e.problems, err);
    early = e.problems;
    config = e.partial as ProxyConfig;
  }
  try {
    const plugins = await loadPlugins(config.plugins, {
      baseDir: defaultBaseDir(configPathOf(argv)),
      version: pgwardVersion(),
      builtinMiddleware: BUILTIN_MIDDLEWARE_NAMES,
      builtinProviders: BUILTIN_PROVIDERS,
      onPluginError: () => {},
    });
    const admin = checkAdmin(config);
    const runtime = await buildRuntime(config, { plugins, draining$: new BehaviorSubject(false), log: silentLogger });
    try {
      if (early.length > 0) return fail(early, err);
      out.write([...describeConfig(config, runtime.describe()), ...describePools(config, runtime.routes), ...admin].join('\n') + '\n');
      out.write('configuration OK\n');
      return 0;
    } finally {
      runtime.dispose();
    }
  } catch (e) {
    if (e instanceof RoutingConfigError || e instanceof ConfigError) return fail([...early, ...e.problems], err);
    return fail([...early, (e as Error).message], err);
  }
}

/** The pool settings every target gets, and those of the backends-file entries that set their own. */
function describePools(config: ProxyConfig, routes: BackendRoutes | undefined): string[] {
  return [
    `backend ${describePoolSettings(config.pool)}`,
    ...(routes?.poolOverrides() ?? []).map(({ key, pool }) => `backend ${JSON.stringify(key)}: ${describePoolSettings(poolSettings(config.pool, pool))}`),
  ];
}

function fail(problems: string[], err: NodeJS.WritableStream): number {
  err.write(`pgward: configuration problems:\n${problems.map((p) => `  - ${p}`).join('\n')}\n`);
  return 2;
}

function relayDescription(config: ProxyConfig): string {
  if (!config.nativeRelay) return 'JavaScript for every session (--no-nativeRelay)';
  const native = nativeRelayAvailability();
  return native.available
    ? 'native for sessions that no middleware, trace or TLS needs to see into; JavaScript for the rest'
    : `JavaScript for every session (the native relay is not available: ${native.reason})`;
}

/** The console's settings and the revocation file, as lines; throws ConfigError when the file is broken. */
function checkAdmin(config: ProxyConfig): string[] {
  const a = config.admin;
  const who = [a.subjects.length > 0 ? `subjects ${a.subjects.join(', ')}` : '', a.claim ? `claim ${a.claim} = ${a.value}` : ''].filter(Boolean);
  const lines = [
    who.length > 0
      ? `admin console: database "${a.database}", ${who.join('; ')}`
      : `admin console: off (no admin.subjects or admin.claim); database "${a.database}" is routed like any other`,
  ];
  const path = config.revocationsPath;
  if (!path) return lines;
  if (!existsSync(path)) return [...lines, `revocations: ${path} (not there yet; REVOKE creates it)`];
  try {
    lines.push(`revocations: ${parseRevocations(readFileSync(path, 'utf8')).length} entries in ${path}`);
  } catch (err) {
    throw new ConfigError([`revocations: ${path}: ${(err as Error).message}`]);
  }
  return lines;
}
