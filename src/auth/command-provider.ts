/**
 * The `command` auth provider: the external-authenticator protocol of KnifeMaster007/pgAuthProxy
 * (SPEC §3).
 *
 * Per connection the client is asked for a password (md5 with a fresh random salt, or cleartext),
 * then the configured command is run — without a shell — with these `key=value` lines on its stdin:
 *
 *   every client startup parameter (user, database, application_name, …), in the client's order
 *   _SOURCE_CRED=<the client's md5 response "md5…", or its cleartext password>
 *   _SOURCE_SALT=<the 4-byte salt as 8 lowercase hex digits; 00000000 in cleartext mode>
 *
 * Exit status 0 means "authenticated"; anything else means the credential was refused. On success
 * stdout holds `key=value` lines describing the backend login:
 *
 *   _META_TARGET_HOST=host | host:port | [ipv6] | [ipv6]:port   (required; port defaults to 5432)
 *   _META_TARGET_CRED=password, or a stored "md5…" hash          (optional; absent = no password)
 *   user=…, database=…                                          → target.user / target.database
 *   any other name                                              → a backend startup parameter
 *
 * As in pgAuthProxy, a later line wins over an earlier one with the same key, lines without `=`
 * are ignored, `_SOURCE_*` lines (an authenticator echoing its input) are dropped and other
 * `_META_*` keys are not forwarded.
 *
 * Hardening over the original:
 * - a startup parameter whose name or value holds a line break or NUL, or whose name holds `=`, is
 *   refused (FATAL 08P01) so no client can add lines to the authenticator's input; client
 *   parameters named `_SOURCE_*` / `_META_*` (any letter case) are refused (FATAL 28000) so no client
 *   can pose as the proxy; a cleartext password holding a line break is refused like a wrong one;
 * - the salt comes from the CSPRNG; the command has a deadline and an output cap;
 * - `replication` and `_pq_.*` keys in the output are dropped (the proxy owns them), an output
 *   parameter name must be a GUC-style identifier and no value may contain NUL.
 *
 * Failures (all FATAL, then the connection closes):
 * - 28P01 `password authentication failed for user "X"`: non-zero exit, or a password no
 *   authenticator could check (empty, not an md5 response in md5 mode, a line break in it);
 * - 08001 (connection class: worth retrying): the authenticator could not be started, timed out,
 *   printed more than the cap or was killed by a signal;
 * - 28000 (retrying does not help): it exited 0 but its output is unusable — malformed, or no
 *   `_META_TARGET_HOST`, i.e. no backend for this user.
 * Logs name the reason, the user and the exit status; never the client's credential, the target
 * credential or the command's stdout. The command's stderr is logged on failure, truncated, with
 * the client credential and the values of `_SOURCE_CRED=` / `_META_TARGET_CRED=` lines redacted.
 */
import { randomBytes } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import { MD5_HASH } from '../backend/md5.js';
import {
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_PORT,
  DEFAULT_SSLMODE,
  describeTarget,
  type BackendTarget,
} from '../backend/url.js';
import { be, decodePassword, PgError, SqlState } from '../protocol/index.js';
import { CommandError, runCommand, type CommandResult } from './command-runner.js';
import type { AuthProvider, AuthResult, ClientChannel } from './provider.js';

export const SOURCE_CRED = '_SOURCE_CRED';
export const SOURCE_SALT = '_SOURCE_SALT';
export const META_TARGET_HOST = '_META_TARGET_HOST';
export const META_TARGET_CRED = '_META_TARGET_CRED';
const SOURCE_PREFIX = '_SOURCE_';
const META_PREFIX = '_META_';
/** The names the proxy itself writes or reads; a client may not use them, in any letter case. */
const RESERVED_CLIENT_NAME = /^_(?:SOURCE|META)_/i;
/** Characters that would end or corrupt a line of the authenticator's input. */
const LINE_BREAKING = /[\n\r\0]/;

export const DEFAULT_AUTH_COMMAND_TIMEOUT_MS = 10_000;
export const DEFAULT_AUTH_COMMAND_MAX_OUTPUT = 64 * 1024;

export interface CommandProviderOptions {
  /** The authenticator: program and arguments, run without a shell. */
  argv: readonly string[];
  /** Ask the client for a cleartext password instead of an md5 response. */
  cleartext: boolean;
  /** Deadline for one authenticator run (default 10 s). */
  timeoutMs?: number;
  /** Largest stdout accepted, in bytes (default 64 KiB). */
  maxOutputBytes?: number;
  /**
   * Settings applied to every returned target (sslmode, sslrootcert, connectTimeoutMs, params…).
   * The authenticator's output wins over them. `host` is never taken from here (the authenticator
   * must name the host) and neither is `password` (a configured secret is never sent to a host the
   * authenticator chose); `port`, `user` and `database` are fallbacks when the output has none.
   */
  defaultTarget?: Partial<BackendTarget>;
}

/** What a successful authenticator run decided. */
export interface AuthenticatorOutput {
  host: string;
  port?: number;
  /** `_META_TARGET_CRED`: a password or an `md5…` hash. */
  credential?: string;
  user?: string;
  database?: string;
  /** The other backend startup parameters, in output order (later duplicates win). */
  params: Record<string, string>;
  /** Names the proxy did not forward (`_META_*` it does not know, `replication`, `_pq_.*`). */
  ignoredKeys: string[];
  /** How many non-empty lines had no `=` (ignored, as pgAuthProxy does). */
  ignoredLines: number;
}

/** Why an authenticator's output was refused; the message never quotes the output. */
export class AuthenticatorOutputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AuthenticatorOutputError';
  }
}

export function commandProvider(opts: CommandProviderOptions): AuthProvider {
  if (opts.argv.length === 0 || !opts.argv[0]) throw new Error('command provider: the authenticator command is empty');
  const timeoutMs = opts.timeoutMs ?? DEFAULT_AUTH_COMMAND_TIMEOUT_MS;
  const maxOutputBytes = opts.maxOutputBytes ?? DEFAULT_AUTH_COMMAND_MAX_OUTPUT;
  const argv = [...opts.argv];
  const base = opts.defaultTarget ?? {};
  const mode = opts.cleartext ? 'cleartext' : 'md5';

  return {
    name: 'command',
    async authenticate(channel: ClientChannel): Promise<AuthResult> {
      const user = channel.startup.get('user');
      if (user === undefined || user === '') {
        throw new PgError('FATAL', SqlState.InvalidAuthorizationSpecification, 'no PostgreSQL user name specified in startup packet');
      }
      checkStartupParams(channel);

      const salt = opts.cleartext ? null : randomBytes(4);
      const credential = await askPassword(channel, salt);
      const authFailed = () =>
        new PgError('FATAL', SqlState.InvalidPassword, `password authentication failed for user "${user}"`);
      const refusal = credentialProblem(credential, salt !== null);
      if (refusal) {
        channel.log.warn('authentication failed', { provider: 'command', user, mode, reason: refusal });
        throw authFailed();
      }

      const input = encodeAuthenticatorInput(channel.startup, credential, salt);
      let result: CommandResult;
      const started = Date.now();
      try {
        result = await runCommand({ argv, timeoutMs, maxOutputBytes, input });
      } catch (err) {
        const reason = err instanceof CommandError ? err.message : 'cannot run command';
        channel.log.error('authenticator failed', { provider: 'command', user, reason, elapsedMs: Date.now() - started });
        throw new PgError(
          'FATAL',
          SqlState.SqlclientUnableToEstablishSqlconnection,
          `could not authenticate user "${user}": ${clientReason(reason)}`,
        );
      }

      const stderr = redactStderr(result.stderr, [credential]);
      if (result.code === null) {
        channel.log.error('authenticator failed', { provider: 'command', user, reason: 'terminated by a signal', stderr });
        throw new PgError(
          'FATAL',
          SqlState.SqlclientUnableToEstablishSqlconnection,
          `could not authenticate user "${user}": the authenticator was terminated`,
        );
      }
      if (result.code !== 0) {
        channel.log.warn('authentication failed', { provider: 'command', user, mode, reason: 'authenticator refused', exitCode: result.code, stderr });
        throw authFailed();
      }

      let out: AuthenticatorOutput;
      try {
        out = parseAuthenticatorOutput(result.stdout);
      } catch (err) {
        const reason = err instanceof AuthenticatorOutputError ? err.message : 'invalid output';
        channel.log.error('authenticator output refused', { provider: 'command', user, reason, stderr });
        const missingHost = reason.startsWith(`no ${META_TARGET_HOST}`);
        throw new PgError(
          'FATAL',
          SqlState.InvalidAuthorizationSpecification,
          missingHost
            ? `no backend for user "${user}": the authenticator named no target host`
            : `could not authenticate user "${user}": the authenticator's answer is invalid`,
        );
      }
      if (out.ignoredKeys.length > 0 || out.ignoredLines > 0) {
        channel.log.debug('authenticator output: entries ignored', { keys: out.ignoredKeys, linesWithoutEquals: out.ignoredLines });
      }

      const target = buildTarget(base, out);
      channel.log.info('authenticated', {
        provider: 'command',
        user,
        mode,
        backend: describeTarget(target),
        backendUser: target.user ?? user,
      });
      return { target, identity: user };
    },
  };
}

/**
 * Refuses client startup parameters that could add lines to the authenticator's input or pose as
 * the proxy's own keys. Values are never quoted in messages or logs.
 */
function checkStartupParams(channel: ClientChannel): void {
  for (const [name, value] of channel.startup) {
    const badName = name === '' || LINE_BREAKING.test(name) || name.includes('=');
    if (badName || LINE_BREAKING.test(value)) {
      const shown = badName ? JSON.stringify(name.slice(0, 64)) : name;
      channel.log.warn('startup parameter refused', {
        provider: 'command',
        parameter: shown,
        reason: badName ? 'invalid characters in the name' : 'line break or NUL in the value',
      });
      throw new PgError(
        'FATAL',
        SqlState.ProtocolViolation,
        badName ? 'invalid startup parameter name' : `invalid value for startup parameter "${name}"`,
        { detail: 'Startup parameter names may not contain "=", line breaks or NUL; values may not contain line breaks or NUL.' },
      );
    }
    if (RESERVED_CLIENT_NAME.test(name)) {
      channel.log.warn('startup parameter refused', { provider: 'command', parameter: name, reason: 'reserved name' });
      throw new PgError('FATAL', SqlState.InvalidAuthorizationSpecification, `startup parameter "${name}" is reserved`, {
        detail: 'Names starting with _SOURCE_ or _META_ belong to the authenticator protocol.',
      });
    }
  }
}

async function askPassword(channel: ClientChannel, salt: Buffer | null): Promise<string> {
  channel.send(salt ? be.authMD5(salt) : be.authCleartext());
  const reply = await channel.read();
  if (reply.type !== 'AuthResponse') {
    throw new PgError('FATAL', SqlState.ProtocolViolation, `expected a password message, got ${reply.type}`);
  }
  return decodePassword(reply.body().data);
}

/** Why a client credential cannot be handed to the authenticator, or null when it can. */
function credentialProblem(credential: string, md5: boolean): string | null {
  if (credential === '') return 'empty password';
  if (md5) return MD5_HASH.test(credential) ? null : 'malformed md5 response';
  return LINE_BREAKING.test(credential) ? 'line break in the password' : null;
}

/**
 * The authenticator's stdin: the client's startup parameters in order, then `_SOURCE_CRED` and
 * `_SOURCE_SALT`. The caller has refused names and values that could break a line.
 */
export function encodeAuthenticatorInput(
  startup: ReadonlyMap<string, string>,
  credential: string,
  salt: Buffer | null,
): string {
  const lines: string[] = [];
  for (const [k, v] of startup) {
    if (k === '' || k.includes('=') || LINE_BREAKING.test(k) || LINE_BREAKING.test(v) || RESERVED_CLIENT_NAME.test(k)) {
      throw new Error('startup parameter not allowed in authenticator input');
    }
    lines.push(`${k}=${v}`);
  }
  if (LINE_BREAKING.test(credential)) throw new Error('credential not allowed in authenticator input');
  lines.push(`${SOURCE_CRED}=${credential}`);
  lines.push(`${SOURCE_SALT}=${salt ? salt.toString('hex') : '00000000'}`);
  return lines.join('\n') + '\n';
}

/** A PostgreSQL GUC-style name (also covers user, database, application_name, options…). */
const PARAM_NAME = /^[A-Za-z_][A-Za-z0-9_$]*(?:\.[A-Za-z_][A-Za-z0-9_$]*)*$/;

/** Parses the authenticator's stdout; errors name a line number or key, never a value. */
export function parseAuthenticatorOutput(stdout: string): AuthenticatorOutput {
  let hostValue: string | undefined;
  let credential: string | undefined;
  let user: string | undefined;
  let database: string | undefined;
  const params = new Map<string, string>();
  const ignoredKeys = new Set<string>();
  let ignoredLines = 0;

  const lines = stdout.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.endsWith('\r') ? lines[i]!.slice(0, -1) : lines[i]!;
    if (line === '') continue;
    const eq = line.indexOf('=');
    if (eq < 0) {
      ignoredLines++;
      continue;
    }
    const key = line.slice(0, eq);
    const value = line.slice(eq + 1);
    if (key.startsWith(SOURCE_PREFIX)) continue; // the input echoed back: never forwarded
    if (value.includes('\0') || value.includes('\r')) {
      throw new AuthenticatorOutputError(`line ${i + 1}: control character in the value`);
    }
    if (key === META_TARGET_HOST) hostValue = value;
    else if (key === META_TARGET_CRED) credential = value;
    else if (key.startsWith(META_PREFIX)) ignoredKeys.add(key);
    else if (key === 'replication' || key.startsWith('_pq_.')) ignoredKeys.add(key);
    else if (key.length > 255 || !PARAM_NAME.test(key)) {
      throw new AuthenticatorOutputError(`line ${i + 1}: invalid parameter name`);
    } else if (key === 'user') user = value;
    else if (key === 'database') database = value;
    else {
      params.delete(key); // a later duplicate wins and takes the later place
      params.set(key, value);
    }
  }

  if (hostValue === undefined) throw new AuthenticatorOutputError(`no ${META_TARGET_HOST} in the output`);
  const { host, port } = parseTargetHost(hostValue);
  if (user === '') throw new AuthenticatorOutputError('empty user');
  const out: AuthenticatorOutput = {
    host,
    params: Object.fromEntries(params),
    ignoredKeys: [...ignoredKeys],
    ignoredLines,
  };
  if (port !== undefined) out.port = port;
  if (credential !== undefined && credential !== '') out.credential = credential;
  if (user !== undefined) out.user = user;
  if (database !== undefined && database !== '') out.database = database;
  return out;
}

/** `host`, `host:port`, `[v6]` or `[v6]:port`; the value is never quoted in errors. */
export function parseTargetHost(value: string): { host: string; port?: number } {
  const fail = (why: string) => new AuthenticatorOutputError(`invalid ${META_TARGET_HOST}: ${why}`);
  let host: string;
  let portText: string | undefined;
  if (value.startsWith('[')) {
    const close = value.indexOf(']');
    if (close < 0) throw fail('unterminated IPv6 address (missing "]")');
    host = value.slice(1, close);
    const rest = value.slice(close + 1);
    if (rest.startsWith(':')) portText = rest.slice(1);
    else if (rest !== '') throw fail('unexpected characters after the IPv6 address');
    if (!isIPv6(host)) throw fail('invalid IPv6 address');
  } else {
    const colon = value.indexOf(':');
    if (colon >= 0 && value.indexOf(':', colon + 1) >= 0) throw fail('IPv6 addresses must be written in brackets');
    host = colon >= 0 ? value.slice(0, colon) : value;
    if (colon >= 0) portText = value.slice(colon + 1);
    if (host === '') throw fail('empty host');
    if (!isIPv4(host) && (host.length > 253 || !/^[A-Za-z0-9_.-]+$/.test(host))) throw fail('invalid host name');
  }
  if (portText === undefined) return { host };
  if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) {
    throw fail('invalid port (expected 1-65535)');
  }
  return { host, port: Number(portText) };
}

function buildTarget(base: Partial<BackendTarget>, out: AuthenticatorOutput): BackendTarget {
  // host and password are deliberately not inherited (see CommandProviderOptions.defaultTarget).
  const { host: _host, password: _password, port, user, database, params, ...rest } = base;
  const target: BackendTarget = {
    ...rest,
    host: out.host,
    port: out.port ?? port ?? DEFAULT_PORT,
    sslmode: rest.sslmode ?? DEFAULT_SSLMODE,
    connectTimeoutMs: rest.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    params: { ...params, ...out.params },
  };
  const targetUser = out.user ?? user;
  const targetDatabase = out.database ?? database;
  if (targetUser !== undefined) target.user = targetUser;
  if (targetDatabase !== undefined) target.database = targetDatabase;
  if (out.credential !== undefined) target.password = out.credential;
  return target;
}

/** The client-facing wording of a runner failure (no paths, no system error text). */
function clientReason(runnerMessage: string): string {
  if (runnerMessage.includes('timed out')) return 'the authenticator timed out';
  if (runnerMessage.includes('output exceeds')) return "the authenticator's output is too large";
  return 'the authenticator could not be run';
}

/**
 * The authenticator's stderr for the operator's log: at most 512 characters, the given secrets and
 * the values of `_SOURCE_CRED=` / `_META_TARGET_CRED=` assignments replaced by `***`.
 */
function redactStderr(stderr: string, secrets: readonly string[]): string | undefined {
  if (stderr === '') return undefined;
  let text = stderr;
  for (const s of secrets) if (s.length >= 1) text = text.split(s).join('***');
  text = text.replace(/((?:_SOURCE_CRED|_META_TARGET_CRED)\s*=)[^\n]*/gi, '$1***');
  text = text.replace(/[\0-\x08\x0b-\x1f\x7f]/g, '?');
  return text.length > 512 ? `${text.slice(0, 512)}…` : text;
}
