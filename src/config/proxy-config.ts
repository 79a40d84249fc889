import { accessSync, constants as fsConstants, readFileSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { BackendUrlError, parseBackendUrl, type BackendTarget } from '../backend/url.js';
import { parsePeers, type PeersConfig } from './peers.js';
import { parsePipeline, type PipelineEntry } from './pipeline-config.js';
import { parseClientAuthSettings, type OAuthConfig } from './client-auth-config.js';
import type { ClientAuthRule } from '../auth/client-auth.js';
import { parseAdmin, type AdminConfig } from './admin-config.js';
import { parsePoolConfig } from './pool-config.js';
import type { PoolSettings } from '../backend/pool-settings.js';
import { splitCommandLine } from '../util/command-line.js';
import { parseDuration } from '../util/duration.js';
import { parseHostPort } from '../util/host-port.js';
import { ConfigError, isLoopback, loadSettings, type LoadedSettings } from './load.js';

export interface PassthroughConfig {
  provider: 'passthrough';
  backend: BackendTarget;
  credsCmd?: string[];
  credsTtlMs: number;
  credsOverride: boolean;
  ignoreUsername: boolean;
}

export interface CommandAuthConfig {
  provider: 'command';
  argv: string[];
  cleartext: boolean;
  timeoutMs?: number;
  /** Connection settings (TLS, timeouts, parameters) for every backend the authenticator names. */
  backendDefaults?: Partial<BackendTarget>;
}

export interface JwtAuthConfig {
  provider: 'jwt';
  backendsPath: string;
  jwtField: string;
  signingKeys: string[];
  oidcDiscovery?: string;
  jwksCooldownMs: number;
  verify: { algorithms: string[]; issuer?: string; audience?: string; clockToleranceSec: number; requireExp: boolean };
  requireUserMatch: boolean;
}

/** A provider a plugin registers; checked once plugins are loaded. */
export interface PluginAuthConfig {
  provider: string;
  plugin: true;
  /** The other keys of the config's `auth:` mapping, for the provider. */
  options: Record<string, unknown>;
  /** Token verification settings, when given (plugins verify tokens like the jwt provider). */
  jwt?: JwtAuthConfig;
}

export type { PipelineEntry } from './pipeline-config.js';

export type AuthConfig = PassthroughConfig | CommandAuthConfig | JwtAuthConfig | PluginAuthConfig;

/** The validated, immutable configuration of one `pgward start`. */
export interface ProxyConfig {
  readonly listen: { host: string; port: number };
  readonly tls?: { cert: Buffer; key: Buffer; certPath: string; keyPath: string };
  readonly insecure: boolean;
  /** Carry quiet sessions in the native relay when it is built. */
  readonly nativeRelay: boolean;
  /** Run TLS on the native TLS layer (native/tls*.c) when it is built, instead of Node's TLS sockets. */
  readonly nativeTls: boolean;
  readonly auth: AuthConfig;
  /** Middleware after auth, in order (frontend messages pass them first to last). */
  readonly pipeline: readonly PipelineEntry[];
  readonly pipelineNames: readonly string[];
  /** Modules to load before the listener opens (issue 6). */
  readonly plugins: readonly string[];
  readonly authTimeoutMs: number;
  readonly metricsListen?: { host: string; port: number };
  readonly proxyProtocol: boolean;
  readonly throttleAfter: number;
  readonly maxConnectionsPerUser: number;
  readonly maxConnections: number;
  readonly maxPendingLogins: number;
  readonly maxPendingLoginsPerAddress: number;
  readonly maxMessageSize: number;
  readonly gracePeriodMs: number;
  /** Reload interval for keys, backends and certificates; 0 = never. */
  readonly refreshMs: number;
  readonly expiry: { mode: 'close' | 'ignore'; toleranceMs: number; warningMs: number };
  /** `connections`, `disconnections`: each session's start line, and its line when the client ends it cleanly. */
  readonly log: { level: 'info' | 'debug' | 'trace'; format: 'text' | 'json' | 'fluent'; destination?: string; connections: boolean; disconnections: boolean };
  readonly peers?: PeersConfig;
  /** `clientAuth:` rules in order; absent means the one rule { method: password }. */
  readonly clientAuth?: readonly ClientAuthRule[];
  readonly oauth?: OAuthConfig;
  /** The operator's console (SPEC §10). */
  readonly admin: AdminConfig;
  /** The revocation file, when set. */
  readonly revocationsPath?: string;
  /** Backend connection reuse (SPEC §8): the global settings; backends-file entries may override them. */
  readonly pool: PoolSettings;
}

const AVAILABLE_PROVIDERS = ['jwt', 'passthrough', 'command'];

/** Builds the config from argv, environment and file; throws ConfigError with every problem. */
export function buildProxyConfig(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): ProxyConfig {
  return resolve(loadSettings(argv, env), env);
}

type Values = LoadedSettings['values'];

function resolve({ values: v, verbosity, extra, problems }: LoadedSettings, env: NodeJS.ProcessEnv): ProxyConfig {
  const str = (k: string) => v[k] as string | undefined;
  const num = (k: string) => v[k] as number;
  const bool = (k: string) => v[k] as boolean;
  const listen = address(str('bindAddr'), 'bindAddr', problems) ?? { host: '127.0.0.1', port: 13013 };
  const tls = clientTls(v, problems);
  const auth = authConfig(v, extra, problems, listen.host, Boolean(tls));
  const metricsListen = str('metricsAddr') ? address(str('metricsAddr'), 'metricsAddr', problems) : undefined;
  checkOutputsAndLimits(v, problems);
  const pipeline = parsePipeline(extra.pipeline, problems);
  if (v.reportRemoteAddr && !pipeline.some((e) => e.name === 'remote-addr')) {
    pipeline.push({ name: 'remote-addr', options: { param: 'crdb:remote_addr' } });
  }
  const plugins = extra.plugins ?? [];
  if (!Array.isArray(plugins) || !plugins.every((p) => typeof p === 'string')) {
    problems.push('plugins: expected a list of module paths or package names');
  }
  const peers = extra.peers === undefined ? undefined : parsePeers(extra.peers, env, problems);
  const jwtAuth = auth && auth.provider === 'jwt' ? (auth as JwtAuthConfig) : undefined;
  const { clientAuth, oauth } = parseClientAuthSettings(
    extra,
    auth && { provider: auth.provider, issuer: jwtAuth?.verify.issuer, oidcDiscovery: jwtAuth?.oidcDiscovery },
    problems,
  );
  const admin = parseAdmin(extra.admin, problems);
  const pool = parsePoolConfig(extra.pool, v, problems);
  for (const k of Object.keys(extra)) {
    if (!['pipeline', 'plugins', 'auth', 'peers', 'clientAuth', 'oauth', 'admin', 'pool'].includes(k)) problems.push(`${k}: unknown setting`);
  }
  if (!auth) throw new ConfigError(problems);
  const config: ProxyConfig = Object.freeze({
    listen,
    tls,
    insecure: bool('insecure'),
    nativeRelay: bool('nativeRelay'),
    nativeTls: bool('nativeTls'),
    auth,
    pipeline,
    pipelineNames: pipeline.map((e) => e.name),
    plugins: plugins as string[],
    authTimeoutMs: num('authTimeout'),
    metricsListen,
    proxyProtocol: bool('proxyProtocol'),
    throttleAfter: num('throttleAfter'),
    maxConnectionsPerUser: num('maxConnectionsPerUser'),
    maxConnections: num('maxConnections'),
    maxPendingLogins: num('maxPendingLogins'),
    maxPendingLoginsPerAddress: num('maxPendingLoginsPerAddress'),
    maxMessageSize: num('maxMessageSize'),
    gracePeriodMs: num('gracePeriod'),
    refreshMs: num('refresh'),
    expiry: { mode: str('sessionExpiry') as 'close' | 'ignore', toleranceMs: num('clockTolerance'), warningMs: num('expiryWarning') },
    log: {
      level: (verbosity >= 2 ? 'trace' : verbosity === 1 ? 'debug' : 'info') as ProxyConfig['log']['level'],
      format: str('logFormat') as ProxyConfig['log']['format'],
      destination: str('logDestination'),
      connections: bool('logConnections'), disconnections: bool('logDisconnections'),
    },
    peers,
    clientAuth,
    oauth,
    admin,
    revocationsPath: str('revocations'),
    pool,
  });
  if (problems.length > 0) throw new ConfigError(problems, config);
  return config;
}

/** A `host:port` flag's value, or undefined (with the problem noted) when absent or invalid. */
function address(text: string | undefined, flag: string, problems: string[]): { host: string; port: number } | undefined {
  if (text === undefined) return undefined;
  try {
    return parseHostPort(text);
  } catch (err) {
    problems.push(`${flag}: ${(err as Error).message}`);
    return undefined;
  }
}

/** The client-facing certificate and key (`--bindCert`/`--bindKey`), or none with `--insecure`. */
function clientTls(v: Values, problems: string[]): ProxyConfig['tls'] {
  const certPath = v.bindCert as string | undefined;
  const keyPath = v.bindKey as string | undefined;
  let tls: ProxyConfig['tls'];
  if (Boolean(certPath) !== Boolean(keyPath)) problems.push('bindCert and bindKey must be given together');
  else if (certPath && keyPath) {
    const read = (flag: string, path: string) => {
      try {
        return readFileSync(path);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        problems.push(`${flag}: cannot read ${path}: ${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (err as Error).message}`);
        return undefined;
      }
    };
    const cert = read('bindCert', certPath);
    const key = read('bindKey', keyPath);
    if (cert && key) tls = { cert, key, certPath, keyPath };
  }
  // Only when neither file was named: a named file that cannot be read is its own problem above.
  if (!tls && !v.insecure && !certPath && !keyPath) {
    problems.push('no TLS configured: give --bindCert and --bindKey, or --insecure to run without TLS');
  }
  return tls;
}

/** The auth provider's settings: a built-in one, or a plugin's (with the JWT settings when it routes by a backends file). */
function authConfig(v: Values, extra: LoadedSettings['extra'], problems: string[], host: string, hasTls: boolean): AuthConfig | undefined {
  const provider = v.auth as string;
  if (provider === 'jwt') return jwt(v, problems);
  if (provider === 'passthrough') return passthrough(v, problems, host, hasTls);
  if (provider === 'command') return command(v, (extra.auth ?? {}) as Record<string, unknown>, problems);
  if (provider && Array.isArray(extra.plugins) && extra.plugins.length > 0) {
    return { provider, plugin: true, options: (extra.auth ?? {}) as Record<string, unknown>, jwt: v.backends ? jwt(v, problems) : undefined };
  }
  problems.push(`auth: provider "${provider}" is not available (built in: ${AVAILABLE_PROVIDERS.join(', ')}; others come from plugins)`);
  return undefined;
}

/** The log settings and the numeric limits that have a range. */
function checkOutputsAndLimits(v: Values, problems: string[]): void {
  const num = (k: string) => v[k] as number | undefined;
  const format = v.logFormat as string;
  if (!['text', 'json', 'fluent'].includes(format)) problems.push(`logFormat: expected text, json or fluent, got "${format}"`);
  const logDestination = v.logDestination as string | undefined;
  if (logDestination) {
    const problem = appendProblem(logDestination);
    if (problem) problems.push(`logDestination: cannot append to ${logDestination}: ${problem}`);
  }
  if (num('maxConnections') !== undefined && num('maxConnections')! < 1) problems.push('maxConnections: must be at least 1');
  if (num('maxPendingLogins') !== undefined && num('maxPendingLogins')! < 1) problems.push('maxPendingLogins: must be at least 1');
  if (num('maxPendingLoginsPerAddress') !== undefined && num('maxPendingLoginsPerAddress')! < 0) problems.push('maxPendingLoginsPerAddress: must be 0 or more');
  const maxMessageSize = num('maxMessageSize');
  if (maxMessageSize !== undefined && (maxMessageSize < 8192 || maxMessageSize > 1073741823)) {
    problems.push('maxMessageSize: must be between 8192 and 1073741823 bytes');
  }
  const expiryMode = v.sessionExpiry as string;
  if (expiryMode !== 'close' && expiryMode !== 'ignore') problems.push(`sessionExpiry: expected close or ignore, got "${expiryMode}"`);
}

function passthrough(
  v: LoadedSettings['values'],
  problems: string[],
  host: string,
  hasTls: boolean,
): PassthroughConfig | undefined {
  const url = v.backend as string | undefined;
  if (!url) {
    problems.push('backend: passthrough needs --backend URL');
    return undefined;
  }
  // No client password is checked in this mode: exposing it beyond this host must be deliberate.
  if (!isLoopback(host) && !(hasTls && v.allowNonLoopback)) {
    problems.push(
      `bindAddr: passthrough checks no client password, so it listens only on loopback unless TLS is configured and --allowNonLoopback is given`,
    );
  }
  let backend: BackendTarget;
  try {
    backend = parseBackendUrl(url);
  } catch (err) {
    problems.push(`backend: ${(err as Error).message}`);
    return undefined;
  }
  let credsCmd: string[] | undefined;
  if (v.credsCmd) {
    try {
      credsCmd = splitCommandLine(v.credsCmd as string);
    } catch (err) {
      problems.push(`credsCmd: ${(err as Error).message}`);
    }
  }
  return {
    provider: 'passthrough',
    backend,
    credsCmd,
    credsTtlMs: v.credsTtl as number,
    credsOverride: v.credsOverride as boolean,
    ignoreUsername: v.ignoreUsername as boolean,
  };
}

function command(
  v: LoadedSettings['values'],
  file: Record<string, unknown>,
  problems: string[],
): CommandAuthConfig | undefined {
  const known = new Set(['cmd', 'cleartext', 'timeout', 'backendParams']);
  for (const k of Object.keys(file)) if (!known.has(k)) problems.push(`auth.${k}: unknown setting for the command provider`);
  let argv: string[] | undefined;
  if (v.authCmd) {
    try {
      argv = splitCommandLine(v.authCmd as string);
    } catch (err) {
      problems.push(`authCmd: ${(err as Error).message}`);
    }
  } else if (file.cmd !== undefined) {
    if (Array.isArray(file.cmd) && file.cmd.length > 0 && file.cmd.every((a) => typeof a === 'string')) argv = file.cmd as string[];
    else problems.push('auth.cmd: expected a non-empty list of strings (program and arguments)');
  }
  if (!argv || argv.length === 0) {
    if (!problems.some((p) => p.startsWith('auth'))) problems.push('authCmd: the command provider needs --authCmd or auth.cmd');
    return undefined;
  }
  let timeoutMs: number | undefined;
  if (file.timeout !== undefined) {
    try {
      timeoutMs = parseDuration(String(file.timeout));
    } catch (err) {
      problems.push(`auth.timeout: ${(err as Error).message}`);
    }
  }
  const cleartext = Boolean(v.clearPasswd) || file.cleartext === true;
  const config: CommandAuthConfig = { provider: 'command', argv, cleartext, timeoutMs };
  const params = v.authCmdBackendParams ?? file.backendParams;
  if (params !== undefined) {
    const where = v.authCmdBackendParams !== undefined ? 'authCmdBackendParams' : 'auth.backendParams';
    if (typeof params !== 'string') problems.push(`${where}: expected a string of URL parameters such as "sslmode=verify-full&sslrootcert=ca.pem"`);
    else {
      const defaults = backendDefaults(params, (p) => problems.push(`${where}: ${p}`));
      if (defaults) config.backendDefaults = defaults;
    }
  }
  return config;
}

/** Keys that name the backend or its login: the authenticator decides those, never the config. */
const AUTHENTICATOR_DECIDES = ['host', 'hostaddr', 'port', 'user', 'password', 'dbname', 'passfile'];

/** libpq URL parameters applied to every backend the command provider's authenticator names. */
function backendDefaults(query: string, fail: (p: string) => void): Partial<BackendTarget> | undefined {
  const text = query.startsWith('?') ? query.slice(1) : query;
  const decided = [...new URLSearchParams(text).keys()].filter((k) => AUTHENTICATOR_DECIDES.includes(k));
  if (decided.length > 0) {
    fail(`${decided.join(', ')} cannot be set here: the authenticator names the backend and its login`);
    return undefined;
  }
  try {
    const { host: _host, port: _port, user: _user, password: _password, database: _database, ...settings } =
      parseBackendUrl(`postgres://authenticator-chosen-host/?${text}`);
    return settings;
  } catch (err) {
    fail(err instanceof BackendUrlError ? err.detail : (err as Error).message);
    return undefined;
  }
}

function jwt(v: LoadedSettings['values'], problems: string[]): JwtAuthConfig | undefined {
  const backendsPath = v.backends as string | undefined;
  const signingKeys = (v.signingKeys as string[] | undefined) ?? [];
  const oidcDiscovery = v.oidcDiscovery as string | undefined;
  if (!backendsPath) problems.push('backends: the jwt provider needs --backends FILE');
  if (signingKeys.length === 0 && !oidcDiscovery) problems.push('signingKeys: the jwt provider needs --signingKeys or --oidcDiscovery');
  const algorithms = v.algorithms as string[];
  const refused = algorithms.filter((a) => a === 'none' || /^HS/i.test(a));
  if (refused.length > 0) problems.push(`algorithms: ${refused.join(', ')} can never be accepted with public keys`);
  if (!backendsPath) return undefined;
  return {
    provider: 'jwt',
    backendsPath,
    jwtField: v.jwtField as string,
    signingKeys,
    oidcDiscovery,
    jwksCooldownMs: v.jwksCooldown as number,
    verify: {
      algorithms: algorithms.filter((a) => !refused.includes(a)),
      issuer: v.issuer as string | undefined,
      audience: v.audience as string | undefined,
      clockToleranceSec: Math.round((v.clockTolerance as number) / 1000),
      requireExp: v.requireExp as boolean,
    },
    requireUserMatch: v.requireUserMatch as boolean,
  };
}

/**
 * Why a file could not be appended to, or undefined when it can; checked without creating it, so
 * `pgward check` leaves nothing behind.
 */
function appendProblem(path: string): string | undefined {
  try {
    const st = statSync(path, { throwIfNoEntry: false });
    if (st?.isDirectory()) return 'it is a directory';
    if (st) accessSync(path, fsConstants.W_OK);
    else accessSync(dirname(path), fsConstants.W_OK | fsConstants.X_OK);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}
