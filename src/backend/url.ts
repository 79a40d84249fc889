/**
 * libpq-style backend connection URLs:
 *
 *   postgres[ql]://[user[:password]@][host][:port][/dbname][?key=value&...]
 *
 * Pure parsing, no I/O. Every error is a {@link BackendUrlError} whose message shows the URL with
 * its passwords replaced by `***` (see {@link redactUrl}) and never echoes anything that is not
 * also visible in that redacted rendering.
 */
import { formatHostPort } from '../util/host-port.js';
import type { PoolOverride } from './pool-settings.js';
import { DEFAULT_SSLMODE, isSslMode, SSL_MODES, sslmodeVerifiesChain, type SslMode } from './sslmode.js';
import { BackendUrlError, decodeUrlPart as decode, firstIndexOfAny, isIPv6Literal, redactUrl, type UrlFailure } from './url-syntax.js';

export { DEFAULT_SSLMODE, sslmodeRequiresTls, sslmodeVerifiesChain, sslmodeVerifiesHost, type SslMode } from './sslmode.js';
export { BackendUrlError, redactUrl } from './url-syntax.js';

export interface BackendTarget {
  host: string;
  port: number;
  user?: string;
  password?: string;
  database?: string;
  sslmode: SslMode;
  /** A CA file, or `system` for the system's trusted roots (libpq ≥ 16; then only verify-full). */
  sslrootcert?: string;
  sslcert?: string;
  sslkey?: string;
  sslpassword?: string;
  applicationName?: string;
  options?: string;
  connectTimeoutMs: number;
  /**
   * The newest protocol minor to ask the backend for (libpq 18's `max_protocol_version`: 3.0, 3.2
   * or latest). Unset: 3.2 (a PostgreSQL 18 backend then issues 32-byte cancel keys), falling
   * back to 3.0 when the server refuses it.
   */
  maxProtocolMinor?: 0 | 2;
  /** Other startup parameters (GUC-style names given as query keys). */
  params: Record<string, string>;
  /** Pool settings of the backends-file entry this target came from, over the global ones. */
  pool?: PoolOverride;
  /**
   * Names the configuration entry the target came from (a digest, never its text): its pooled
   * connections are closed when a reload changes or removes the entry.
   */
  routeId?: string;
  /** The password comes from a command (a dynamic password, e.g. an RDS IAM token): pooled by that source, not by its value. */
  passwordFromCommand?: boolean;
}

export const DEFAULT_PORT = 5432;
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** Largest connect_timeout (seconds) whose milliseconds still fit a Node timer. */
const MAX_CONNECT_TIMEOUT_S = Math.floor(0x7fffffff / 1000);

/** Keys that map to {@link BackendTarget} fields. */
const RECOGNISED = new Set([
  'host',
  'port',
  'user',
  'password',
  'dbname',
  'sslmode',
  'sslrootcert',
  'sslcert',
  'sslkey',
  'sslpassword',
  'application_name',
  'fallback_application_name',
  'options',
  'connect_timeout',
  'max_protocol_version',
  'ssl',
]);

/** libpq keys that change nothing pgward does (single host, its own TCP settings): ignored. */
const IGNORED = new Set([
  'target_session_attrs',
  'load_balance_hosts',
  'keepalives',
  'keepalives_idle',
  'keepalives_interval',
  'keepalives_count',
  'tcp_user_timeout',
  'krbsrvname',
  'gsslib',
  'gssdelegation',
  'passfile',
  'requirepeer',
  'sslcompression',
  'sslkeylogfile',
]);

/**
 * libpq keys pgward does not implement and that would weaken security or change the target if
 * silently ignored. They are accepted only with the listed value(s) — libpq's default, which is
 * what pgward does anyway — and are an error otherwise (`[]` means: always an error).
 */
const UNSUPPORTED: Record<string, readonly string[]> = {
  hostaddr: [],
  service: [],
  servicefile: [],
  require_auth: [],
  replication: [],
  scram_client_key: [],
  scram_server_key: [],
  channel_binding: ['prefer'],
  gssencmode: ['disable', 'prefer'],
  sslcrl: [],
  sslcrldir: [],
  sslsni: ['1'],
  sslcertmode: ['allow'],
  sslnegotiation: ['postgres'],
  ssl_min_protocol_version: ['TLSv1.2'],
  ssl_max_protocol_version: [],
  min_protocol_version: ['3.0'],
};

/** A PostgreSQL GUC-style name: identifiers, optionally dot-qualified (custom options). */
const GUC_NAME = /^[A-Za-z_][A-Za-z0-9_$]*(?:\.[A-Za-z_][A-Za-z0-9_$]*)*$/;
/** Startup-packet keys that are not GUCs or that the proxy owns. */
const RESERVED_PARAMS = new Set(['user', 'database', 'replication']);

/** What the URL says so far: its parts, then each query key over them, before the checks. */
interface Draft {
  user?: string;
  password?: string;
  host?: string;
  portText?: string;
  database?: string;
  sslmode?: SslMode;
  sslmodeExplicit: boolean;
  applicationName?: string;
  fallbackApplicationName?: string;
  options?: string;
  connectTimeoutMs: number;
  maxProtocolMinor?: 0 | 2;
  ssl: { sslrootcert?: string; sslcert?: string; sslkey?: string; sslpassword?: string };
  params: [string, string][];
}

/** Reports an error in one URL, quoting a piece of it only where the redacted URL shows that piece. */
interface Reporter {
  fail: UrlFailure;
  quote: (raw: string) => string;
}

/**
 * Parses a libpq connection URL. Query keys `host`, `port`, `user`, `password` and `dbname`
 * override the corresponding URL parts, as in libpq.
 */
export function parseBackendUrl(url: string): BackendTarget {
  if (typeof url !== 'string') throw new BackendUrlError('', 'the URL must be a string');
  const redacted = redactUrl(url);
  const r: Reporter = {
    fail: (detail) => new BackendUrlError(url, detail),
    quote: (raw) => (raw !== '' && raw.length <= 100 && redacted.includes(raw) ? JSON.stringify(raw) : '(value not shown)'),
  };
  const scheme = /^postgres(?:ql)?:\/\//i.exec(url);
  if (!scheme) throw r.fail('the scheme must be postgres:// or postgresql://');
  const draft: Draft = { sslmodeExplicit: false, connectTimeoutMs: DEFAULT_CONNECT_TIMEOUT_MS, ssl: {}, params: [] };
  const query = readAuthority(url.slice(scheme[0].length), draft, r);
  for (const [key, { value, raw }] of query) applyQueryKey(key, value, r.quote(raw), draft, r);
  return finish(draft, r);
}

/** Userinfo, host, port and path into the draft; returns the query parameters (decoded key → value and raw key). */
function readAuthority(rest: string, draft: Draft, r: Reporter): Map<string, { value: string; raw: string }> {
  // userinfo: up to the last '@' before the first '/', so an unencoded '@' in a password works.
  const firstSlash = rest.indexOf('/');
  const region = firstSlash >= 0 ? rest.slice(0, firstSlash) : rest;
  const at = region.lastIndexOf('@');
  if (at >= 0) {
    const userinfo = region.slice(0, at);
    const colon = userinfo.indexOf(':');
    draft.user = decode(colon >= 0 ? userinfo.slice(0, colon) : userinfo, r.fail, 'user name');
    if (colon >= 0) draft.password = decode(userinfo.slice(colon + 1), r.fail, 'password');
  }
  const afterUserinfo = rest.slice(at + 1);
  const hostEnd = firstIndexOfAny(afterUserinfo, '/?');
  readHostPort(afterUserinfo.slice(0, hostEnd), draft, r);
  let tail = afterUserinfo.slice(hostEnd);
  if (tail.startsWith('/')) {
    const qmark = tail.indexOf('?');
    draft.database = decode(qmark >= 0 ? tail.slice(1, qmark) : tail.slice(1), r.fail, 'database name');
    tail = qmark >= 0 ? tail.slice(qmark) : '';
  }
  // Query parameters (libpq: '+' is not a space; a later duplicate wins).
  const query = new Map<string, { value: string; raw: string }>();
  if (!tail.startsWith('?')) return query;
  for (const part of tail.slice(1).split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    if (eq < 0) throw r.fail(`query parameter ${r.quote(part)} has no "=value"`);
    const raw = part.slice(0, eq);
    const key = decode(raw, r.fail, 'query parameter name');
    if (key === '') throw r.fail('empty query parameter name');
    query.set(key, { value: decode(part.slice(eq + 1), r.fail, `value of ${r.quote(raw)}`), raw });
  }
  return query;
}

function readHostPort(hostport: string, draft: Draft, r: Reporter): void {
  if (hostport.includes(',')) throw r.fail('multiple hosts are not supported; give exactly one host');
  if (hostport.startsWith('[')) {
    const close = hostport.indexOf(']');
    if (close < 0) throw r.fail('unterminated IPv6 address (missing "]")');
    draft.host = decode(hostport.slice(1, close), r.fail, 'host');
    const after = hostport.slice(close + 1);
    if (after.startsWith(':')) draft.portText = after.slice(1);
    else if (after !== '') throw r.fail('unexpected characters after the IPv6 address');
    if (!isIPv6Literal(draft.host)) throw r.fail(`invalid IPv6 address ${r.quote(hostport.slice(1, close))}`);
    return;
  }
  const colon = hostport.indexOf(':');
  if (colon >= 0) {
    if (hostport.indexOf(':', colon + 1) >= 0) throw r.fail('IPv6 addresses must be written in brackets, e.g. [::1]');
    draft.portText = hostport.slice(colon + 1);
  }
  draft.host = decode(colon >= 0 ? hostport.slice(0, colon) : hostport, r.fail, 'host');
}

/** One query key: a setting, ignored, refused, or a startup parameter for the backend. */
function applyQueryKey(key: string, value: string, shownKey: string, draft: Draft, r: Reporter): void {
  if (RECOGNISED.has(key)) return applySetting(key, value, draft, r);
  if (IGNORED.has(key)) return;
  if (Object.hasOwn(UNSUPPORTED, key)) {
    if (!UNSUPPORTED[key]!.includes(value)) throw r.fail(`${shownKey} is not supported by pgward`);
    return;
  }
  if (/^ssl/i.test(key)) {
    // Almost certainly a typo of a TLS setting: failing beats connecting with weaker TLS.
    throw r.fail(`unknown TLS parameter ${shownKey} (known: sslmode, sslrootcert, sslcert, sslkey, sslpassword)`);
  }
  if (key === 'client_encoding') {
    // libpq's "auto" means "from the client's locale", which has no meaning here.
    if (value !== 'auto') draft.params.push([key, value]);
    return;
  }
  if (RESERVED_PARAMS.has(key)) {
    throw r.fail(`${shownKey} cannot be set as a startup parameter${key === 'database' ? ' (use the URL path or dbname)' : ''}`);
  }
  if (key.startsWith('_pq_.')) throw r.fail(`${shownKey} is a protocol option, not a startup parameter`);
  if (key.length <= 255 && GUC_NAME.test(key)) draft.params.push([key, value]);
  else throw r.fail(`unknown parameter ${shownKey}`);
}

/** A key of {@link RECOGNISED}: it sets a field of the target. */
function applySetting(key: string, value: string, draft: Draft, r: Reporter): void {
  switch (key) {
    case 'host':
      if (value.includes(',')) throw r.fail('multiple hosts are not supported; give exactly one host');
      draft.host = value.startsWith('[') && value.endsWith(']') ? value.slice(1, -1) : value;
      return;
    case 'port':
      if (value.includes(',')) throw r.fail('multiple ports are not supported');
      draft.portText = value;
      return;
    case 'user':
    case 'password':
    case 'options':
      draft[key] = value;
      return;
    case 'dbname':
      draft.database = value;
      return;
    case 'application_name':
      draft.applicationName = value;
      return;
    case 'fallback_application_name':
      draft.fallbackApplicationName = value;
      return;
    case 'sslmode':
      if (!isSslMode(value)) throw r.fail(`invalid sslmode ${r.quote(value)} (expected one of ${SSL_MODES.join(', ')})`);
      draft.sslmode = value;
      draft.sslmodeExplicit = true;
      return;
    case 'ssl':
      // libpq's JDBC compatibility: ssl=true means sslmode=require.
      if (value !== 'true') throw r.fail('the only accepted value of "ssl" is "true" (use sslmode)');
      if (!draft.sslmodeExplicit) draft.sslmode = 'require';
      return;
    case 'sslrootcert':
    case 'sslcert':
    case 'sslkey':
    case 'sslpassword':
      if (value !== '') draft.ssl[key] = value;
      return;
    case 'connect_timeout':
      draft.connectTimeoutMs = parseConnectTimeout(value, r.fail);
      return;
    case 'max_protocol_version':
      if (value === '3.0') draft.maxProtocolMinor = 0;
      else if (value === '3.2' || value === 'latest') draft.maxProtocolMinor = 2;
      else throw r.fail(`max_protocol_version must be 3.0, 3.2 or latest, not ${r.quote(value)}`);
      return;
  }
}

/** The checks that need the whole URL, then the target. */
function finish(draft: Draft, r: Reporter): BackendTarget {
  const host = checkedHost(draft.host, r.fail);
  const port = checkedPort(draft.portText, r);
  const { ssl } = draft;
  const sslmode = resolvedSslmode(draft, r.fail);
  const target: BackendTarget = { host, port, sslmode, connectTimeoutMs: draft.connectTimeoutMs, params: Object.fromEntries(draft.params) };
  if (draft.user) target.user = draft.user;
  if (draft.password) target.password = draft.password;
  if (draft.database) target.database = draft.database;
  if (ssl.sslrootcert !== undefined) target.sslrootcert = ssl.sslrootcert;
  if (ssl.sslcert !== undefined) target.sslcert = ssl.sslcert;
  if (ssl.sslkey !== undefined) target.sslkey = ssl.sslkey;
  if (ssl.sslpassword !== undefined) target.sslpassword = ssl.sslpassword;
  const appName = draft.applicationName ?? draft.fallbackApplicationName;
  if (appName !== undefined) target.applicationName = appName;
  if (draft.options !== undefined) target.options = draft.options;
  if (draft.maxProtocolMinor !== undefined) target.maxProtocolMinor = draft.maxProtocolMinor;
  return target;
}

function checkedHost(host: string | undefined, fail: UrlFailure): string {
  if (host === undefined || host === '') throw fail('no host given (Unix-domain sockets are not supported)');
  if (host.startsWith('/') || host.startsWith('@')) throw fail('Unix-domain sockets are not supported; give a TCP host');
  if (host.includes(':')) {
    if (!isIPv6Literal(host)) throw fail('invalid IPv6 address');
  } else if (!/^[A-Za-z0-9_.-]+$/.test(host) || host.length > 253) {
    throw fail('invalid host name');
  }
  return host;
}

function checkedPort(portText: string | undefined, r: Reporter): number {
  if (portText === undefined || portText === '') return DEFAULT_PORT;
  if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) {
    throw r.fail(`invalid port ${r.quote(portText)} (expected 1-65535)`);
  }
  return Number(portText);
}

function resolvedSslmode(draft: Draft, fail: UrlFailure): SslMode {
  const { ssl } = draft;
  let sslmode = draft.sslmode;
  // libpq ≥ 16: sslrootcert=system makes verify-full the default and forbids weaker modes, since
  // the system's public CAs vouch for any name they signed.
  if (ssl.sslrootcert === 'system') {
    if (!draft.sslmodeExplicit) sslmode = 'verify-full';
    else if (sslmode !== 'verify-full') throw fail(`sslmode ${sslmode} may not be used with sslrootcert=system (use verify-full)`);
  }
  sslmode ??= DEFAULT_SSLMODE;
  // libpq fails verify-ca/verify-full without a root certificate rather than trusting something
  // implicit (pgward has no ~/.postgresql/root.crt default).
  if (sslmodeVerifiesChain(sslmode) && ssl.sslrootcert === undefined) {
    throw fail(`sslmode ${sslmode} needs sslrootcert (a CA file, or "system" for the system's trusted roots with verify-full)`);
  }
  if ((ssl.sslcert === undefined) !== (ssl.sslkey === undefined)) throw fail('sslcert and sslkey must be given together');
  return sslmode;
}

/** `host:port/db (sslmode)` for logs; IPv6 hosts in brackets; no secrets. */
export function describeTarget(t: Pick<BackendTarget, 'host' | 'port' | 'database' | 'sslmode'>): string {
  return `${formatHostPort(t.host, t.port)}/${t.database ?? ''} (${t.sslmode})`;
}

function parseConnectTimeout(value: string, fail: UrlFailure): number {
  const text = value.trim();
  if (!/^\d+$/.test(text)) throw fail('connect_timeout must be a whole number of seconds');
  const seconds = Number(text);
  // libpq treats 0 as "wait forever"; a proxy must not, so it is refused.
  if (seconds === 0) throw fail('connect_timeout must be at least 1 second (pgward never waits forever)');
  if (seconds > MAX_CONNECT_TIMEOUT_S) throw fail(`connect_timeout must be at most ${MAX_CONNECT_TIMEOUT_S} seconds`);
  // libpq rounds 1 up to 2 seconds so that timer granularity cannot make the wait almost zero.
  return Math.max(seconds, 2) * 1000;
}
