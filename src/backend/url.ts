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
export type SslMode = 'disable' | 'allow' | 'prefer' | 'require' | 'verify-ca' | 'verify-full';

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

export class BackendUrlError extends Error {
  readonly code = 'PGWARD_ERR_BACKEND_URL' as const;
  /** The URL with its passwords redacted. */
  readonly url: string;
  /** What is wrong with it, without the URL (for callers that show the URL their own way). */
  readonly detail: string;

  constructor(url: string, detail: string) {
    const shown = renderForError(url);
    super(`invalid backend URL ${shown}: ${detail}`);
    this.name = 'BackendUrlError';
    this.url = shown;
    this.detail = detail;
  }
}

const SSL_MODES: readonly SslMode[] = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'];

export const DEFAULT_PORT = 5432;
/** libpq's default sslmode. */
export const DEFAULT_SSLMODE: SslMode = 'prefer';
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

/**
 * Parses a libpq connection URL. Query keys `host`, `port`, `user`, `password` and `dbname`
 * override the corresponding URL parts, as in libpq.
 */
export function parseBackendUrl(url: string): BackendTarget {
  if (typeof url !== 'string') throw new BackendUrlError('', 'the URL must be a string');
  const redacted = redactUrl(url);
  const fail = (detail: string) => new BackendUrlError(url, detail);
  /** Quotes a piece of the URL for an error message, only if the redacted rendering shows it. */
  const q = (raw: string) => (raw !== '' && raw.length <= 100 && redacted.includes(raw) ? JSON.stringify(raw) : '(value not shown)');

  const scheme = /^postgres(?:ql)?:\/\//i.exec(url);
  if (!scheme) throw fail('the scheme must be postgres:// or postgresql://');
  const rest = url.slice(scheme[0].length);

  // userinfo: up to the last '@' before the first '/', so an unencoded '@' in a password works.
  const firstSlash = rest.indexOf('/');
  const region = firstSlash >= 0 ? rest.slice(0, firstSlash) : rest;
  const at = region.lastIndexOf('@');
  let user: string | undefined;
  let password: string | undefined;
  if (at >= 0) {
    const userinfo = region.slice(0, at);
    const colon = userinfo.indexOf(':');
    user = decode(colon >= 0 ? userinfo.slice(0, colon) : userinfo, fail, 'user name');
    if (colon >= 0) password = decode(userinfo.slice(colon + 1), fail, 'password');
  }

  const afterUserinfo = rest.slice(at + 1);
  const hostEnd = firstIndexOfAny(afterUserinfo, '/?');
  const hostport = afterUserinfo.slice(0, hostEnd);
  let tail = afterUserinfo.slice(hostEnd);

  if (hostport.includes(',')) throw fail('multiple hosts are not supported; give exactly one host');
  let host: string | undefined;
  let portText: string | undefined;
  if (hostport.startsWith('[')) {
    const close = hostport.indexOf(']');
    if (close < 0) throw fail('unterminated IPv6 address (missing "]")');
    host = decode(hostport.slice(1, close), fail, 'host');
    const after = hostport.slice(close + 1);
    if (after.startsWith(':')) portText = after.slice(1);
    else if (after !== '') throw fail('unexpected characters after the IPv6 address');
    if (!isIPv6Literal(host)) throw fail(`invalid IPv6 address ${q(hostport.slice(1, close))}`);
  } else {
    const colon = hostport.indexOf(':');
    if (colon >= 0) {
      if (hostport.indexOf(':', colon + 1) >= 0) throw fail('IPv6 addresses must be written in brackets, e.g. [::1]');
      portText = hostport.slice(colon + 1);
    }
    host = decode(colon >= 0 ? hostport.slice(0, colon) : hostport, fail, 'host');
  }

  let database: string | undefined;
  if (tail.startsWith('/')) {
    const qmark = tail.indexOf('?');
    const path = qmark >= 0 ? tail.slice(1, qmark) : tail.slice(1);
    database = decode(path, fail, 'database name');
    tail = qmark >= 0 ? tail.slice(qmark) : '';
  }

  // Query parameters (libpq: '+' is not a space; a later duplicate wins).
  const query = new Map<string, string>();
  const rawKeys = new Map<string, string>();
  if (tail.startsWith('?')) {
    for (const part of tail.slice(1).split('&')) {
      if (part === '') continue;
      const eq = part.indexOf('=');
      if (eq < 0) throw fail(`query parameter ${q(part)} has no "=value"`);
      const rawKey = part.slice(0, eq);
      const key = decode(rawKey, fail, 'query parameter name');
      if (key === '') throw fail('empty query parameter name');
      query.set(key, decode(part.slice(eq + 1), fail, `value of ${q(rawKey)}`));
      rawKeys.set(key, rawKey);
    }
  }

  let sslmode: SslMode | undefined;
  let sslmodeExplicit = false;
  let applicationName: string | undefined;
  let fallbackApplicationName: string | undefined;
  let options: string | undefined;
  let connectTimeoutMs = DEFAULT_CONNECT_TIMEOUT_MS;
  let maxProtocolMinor: 0 | 2 | undefined;
  const ssl: { sslrootcert?: string; sslcert?: string; sslkey?: string; sslpassword?: string } = {};
  const params: [string, string][] = [];

  for (const [key, value] of query) {
    const shownKey = q(rawKeys.get(key) ?? key);
    if (RECOGNISED.has(key)) {
      switch (key) {
        case 'host':
          if (value.includes(',')) throw fail('multiple hosts are not supported; give exactly one host');
          host = value.startsWith('[') && value.endsWith(']') ? value.slice(1, -1) : value;
          break;
        case 'port':
          if (value.includes(',')) throw fail('multiple ports are not supported');
          portText = value;
          break;
        case 'user':
          user = value;
          break;
        case 'password':
          password = value;
          break;
        case 'dbname':
          database = value;
          break;
        case 'sslmode':
          if (!(SSL_MODES as readonly string[]).includes(value)) {
            throw fail(`invalid sslmode ${q(value)} (expected one of ${SSL_MODES.join(', ')})`);
          }
          sslmode = value as SslMode;
          sslmodeExplicit = true;
          break;
        case 'ssl':
          // libpq's JDBC compatibility: ssl=true means sslmode=require.
          if (value !== 'true') throw fail('the only accepted value of "ssl" is "true" (use sslmode)');
          if (!sslmodeExplicit) sslmode = 'require';
          break;
        case 'sslrootcert':
        case 'sslcert':
        case 'sslkey':
        case 'sslpassword':
          if (value !== '') ssl[key] = value;
          break;
        case 'application_name':
          applicationName = value;
          break;
        case 'fallback_application_name':
          fallbackApplicationName = value;
          break;
        case 'options':
          options = value;
          break;
        case 'connect_timeout':
          connectTimeoutMs = parseConnectTimeout(value, fail);
          break;
        case 'max_protocol_version':
          if (value === '3.0') maxProtocolMinor = 0;
          else if (value === '3.2' || value === 'latest') maxProtocolMinor = 2;
          else throw fail(`max_protocol_version must be 3.0, 3.2 or latest, not ${q(value)}`);
          break;
      }
    } else if (IGNORED.has(key)) {
      continue;
    } else if (Object.hasOwn(UNSUPPORTED, key)) {
      if (!UNSUPPORTED[key]!.includes(value)) throw fail(`${shownKey} is not supported by pgward`);
    } else if (/^ssl/i.test(key)) {
      // Almost certainly a typo of a TLS setting: failing beats connecting with weaker TLS.
      throw fail(`unknown TLS parameter ${shownKey} (known: sslmode, sslrootcert, sslcert, sslkey, sslpassword)`);
    } else if (key === 'client_encoding') {
      // libpq's "auto" means "from the client's locale", which has no meaning here.
      if (value !== 'auto') params.push([key, value]);
    } else if (RESERVED_PARAMS.has(key)) {
      throw fail(`${shownKey} cannot be set as a startup parameter${key === 'database' ? ' (use the URL path or dbname)' : ''}`);
    } else if (key.startsWith('_pq_.')) {
      throw fail(`${shownKey} is a protocol option, not a startup parameter`);
    } else if (key.length <= 255 && GUC_NAME.test(key)) {
      params.push([key, value]);
    } else {
      throw fail(`unknown parameter ${shownKey}`);
    }
  }

  if (host === undefined || host === '') throw fail('no host given (Unix-domain sockets are not supported)');
  if (host.startsWith('/') || host.startsWith('@')) throw fail('Unix-domain sockets are not supported; give a TCP host');
  if (host.includes(':')) {
    if (!isIPv6Literal(host)) throw fail('invalid IPv6 address');
  } else if (!/^[A-Za-z0-9_.-]+$/.test(host) || host.length > 253) {
    throw fail('invalid host name');
  }

  let port = DEFAULT_PORT;
  if (portText !== undefined && portText !== '') {
    if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) {
      throw fail(`invalid port ${q(portText)} (expected 1-65535)`);
    }
    port = Number(portText);
  }

  // libpq ≥ 16: sslrootcert=system makes verify-full the default and forbids weaker modes, since
  // the system's public CAs vouch for any name they signed.
  if (ssl.sslrootcert === 'system') {
    if (!sslmodeExplicit) sslmode = 'verify-full';
    else if (sslmode !== 'verify-full') throw fail(`sslmode ${sslmode} may not be used with sslrootcert=system (use verify-full)`);
  }
  sslmode ??= DEFAULT_SSLMODE;
  // libpq fails verify-ca/verify-full without a root certificate rather than trusting something
  // implicit (pgward has no ~/.postgresql/root.crt default).
  if (sslmodeVerifiesChain(sslmode) && ssl.sslrootcert === undefined) {
    throw fail(`sslmode ${sslmode} needs sslrootcert (a CA file, or "system" for the system's trusted roots with verify-full)`);
  }
  if ((ssl.sslcert === undefined) !== (ssl.sslkey === undefined)) {
    throw fail('sslcert and sslkey must be given together');
  }

  const target: BackendTarget = { host, port, sslmode, connectTimeoutMs, params: Object.fromEntries(params) };
  if (user !== undefined && user !== '') target.user = user;
  if (password !== undefined && password !== '') target.password = password;
  if (database !== undefined && database !== '') target.database = database;
  if (ssl.sslrootcert !== undefined) target.sslrootcert = ssl.sslrootcert;
  if (ssl.sslcert !== undefined) target.sslcert = ssl.sslcert;
  if (ssl.sslkey !== undefined) target.sslkey = ssl.sslkey;
  if (ssl.sslpassword !== undefined) target.sslpassword = ssl.sslpassword;
  const appName = applicationName ?? fallbackApplicationName;
  if (appName !== undefined) target.applicationName = appName;
  if (options !== undefined) target.options = options;
  if (maxProtocolMinor !== undefined) target.maxProtocolMinor = maxProtocolMinor;
  return target;
}

/**
 * The URL with passwords replaced by `***`: the userinfo password and the value of every query key
 * whose name contains "pass" (password, sslpassword, passfile…). Deliberately conservative for
 * malformed input: the userinfo is taken to end at the LAST '@' in the whole string, so a password
 * holding unencoded '/', '?' or '@' is still hidden (at worst more than the password is hidden).
 */
export function redactUrl(url: string): string {
  const scheme = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.exec(url);
  const prefix = scheme ? scheme[0] : '';
  let rest = url.slice(prefix.length);
  const at = rest.lastIndexOf('@');
  if (at >= 0) {
    const userinfo = rest.slice(0, at);
    const colon = userinfo.indexOf(':');
    if (colon >= 0) rest = `${userinfo.slice(0, colon)}:***${rest.slice(at)}`;
  }
  // A secret value runs to the next "&name=" (so an unencoded '&' inside it stays hidden) or the end.
  rest = rest.replace(/([?&])([^=&?]*)=(.*?)(?=&[A-Za-z_%][^=&]*=|$)/gs, (all, sep: string, key: string) =>
    /pass/i.test(safeDecode(key)) ? `${sep}${key}=***` : all,
  );
  return prefix + rest;
}

/** `host:port/db (sslmode)` for logs; IPv6 hosts in brackets; no secrets. */
export function describeTarget(t: Pick<BackendTarget, 'host' | 'port' | 'database' | 'sslmode'>): string {
  return `${formatHostPort(t.host, t.port)}/${t.database ?? ''} (${t.sslmode})`;
}

/** Whether the connection must be TLS (no plaintext fallback). */
export function sslmodeRequiresTls(mode: SslMode): boolean {
  return mode === 'require' || mode === 'verify-ca' || mode === 'verify-full';
}

/**
 * Whether the server's certificate chain must verify against a trusted root.
 *
 * verify-ca and verify-full always verify. For the other modes libpq verifies the chain whenever a
 * root certificate is available: it sets SSL_VERIFY_PEER as soon as it loaded one, whatever the
 * sslmode. The documented consequence is that `require` with a root certificate behaves like
 * `verify-ca` ("for backwards compatibility with earlier versions of PostgreSQL"); pgward applies
 * that rule when `sslrootcert` is given explicitly (there is no implicit ~/.postgresql/root.crt).
 * The same holds for `prefer`/`allow` once TLS is in use — libpq would then retry without TLS
 * after a verification failure; pgward's dialer fails closed instead.
 */
export function sslmodeVerifiesChain(mode: SslMode, sslrootcert?: string): boolean {
  if (mode === 'verify-ca' || mode === 'verify-full') return true;
  if (mode === 'disable') return false;
  return sslrootcert !== undefined && sslrootcert !== '';
}

/** Whether the server's certificate must also match the host name (verify-full only, as in libpq). */
export function sslmodeVerifiesHost(mode: SslMode): boolean {
  return mode === 'verify-full';
}

// ---------------------------------------------------------------------------------------------

function parseConnectTimeout(value: string, fail: (d: string) => BackendUrlError): number {
  const text = value.trim();
  if (!/^\d+$/.test(text)) throw fail('connect_timeout must be a whole number of seconds');
  const seconds = Number(text);
  // libpq treats 0 as "wait forever"; a proxy must not, so it is refused.
  if (seconds === 0) throw fail('connect_timeout must be at least 1 second (pgward never waits forever)');
  if (seconds > MAX_CONNECT_TIMEOUT_S) throw fail(`connect_timeout must be at most ${MAX_CONNECT_TIMEOUT_S} seconds`);
  // libpq rounds 1 up to 2 seconds so that timer granularity cannot make the wait almost zero.
  return Math.max(seconds, 2) * 1000;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** libpq-style percent-decoding: '%XX' only, no '+' → space, no NUL, valid UTF-8. */
function decode(raw: string, fail: (d: string) => BackendUrlError, what: string): string {
  if (!raw.includes('%')) return raw;
  const bytes: number[] = [];
  for (let i = 0; i < raw.length; ) {
    if (raw.charCodeAt(i) === 0x25 /* % */) {
      const hex = raw.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) throw fail(`invalid percent-encoding in the ${what}`);
      const byte = parseInt(hex, 16);
      if (byte === 0) throw fail(`forbidden %00 in the ${what}`);
      bytes.push(byte);
      i += 3;
    } else {
      const ch = String.fromCodePoint(raw.codePointAt(i)!);
      bytes.push(...Buffer.from(ch, 'utf8'));
      i += ch.length;
    }
  }
  try {
    return utf8.decode(Uint8Array.from(bytes));
  } catch {
    throw fail(`the ${what} is not valid UTF-8 after percent-decoding`);
  }
}

function safeDecode(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

function firstIndexOfAny(s: string, chars: string): number {
  for (let i = 0; i < s.length; i++) if (chars.includes(s[i]!)) return i;
  return s.length;
}

function isIPv6Literal(s: string): boolean {
  const [addr, zone, extra] = s.split('%');
  if (extra !== undefined || addr === undefined) return false;
  if (zone !== undefined && !/^[A-Za-z0-9._~-]+$/.test(zone)) return false;
  if (!/^[0-9A-Fa-f:.]+$/.test(addr) || (addr.match(/:/g) ?? []).length < 2) return false;
  const doubles = addr.split('::').length - 1;
  return doubles <= 1 && !/:::/.test(addr);
}

/** The redacted URL for an error message, truncated so a huge input cannot flood logs. */
function renderForError(url: string): string {
  const r = redactUrl(typeof url === 'string' ? url : '');
  return JSON.stringify(r.length > 300 ? `${r.slice(0, 300)}…` : r);
}
