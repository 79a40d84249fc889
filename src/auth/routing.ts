/**
 * The backends file (SPEC §4): which backend a token goes to, chosen by one claim's value.
 *
 * ```yaml
 * alice@example.com: postgres://app:secret@db1:5432/app?sslmode=verify-full&sslrootcert=ca.pem
 * /^(.*)@example\.com$/: postgres://$1@db2:5432/$1?sslmode=require
 * analyst: { url: "postgres://analyst@rds:5432/dw", passwordCommand: "aws rds generate-db-auth-token …", passwordTtl: 10m }
 * "*": postgres://readonly:ro@db1:5432/public
 * ```
 *
 * Precedence: an exact key, then `/regex/flags` keys in file order (a regex matches wherever it
 * matches unless its author anchored it), then `*`.
 *
 * Templates. A URL and the `user`, `database`, `options` and `application_name` fields may use
 * `{claim.NAME}` (a top-level string claim), `{startup.user}` and `{startup.database}` (the
 * client's startup parameters; the database defaults to the user, as in PostgreSQL), and — in
 * regex routes only — `$1`…`$99` and `${1}`/`${name}` for capture groups (`$$` is a literal `$`;
 * in exact and `*` routes `$` is always literal).
 *
 * Security. Every substituted value must be a string of at most 256 characters without control
 * characters, and is checked or encoded for where it lands, so that a claim can never add URL
 * parts, query parameters or `-c` options:
 * - URL host: letters, digits, `.`, `_`, `-` only; port: digits only;
 * - URL user: no `/ ? # @ : %`, then percent-encoded; URL password, path and query values:
 *   percent-encoded;
 * - placeholders in the scheme, in query parameter names, or in the values of connection or TLS
 *   parameters (`sslmode`, `sslrootcert`, `host`, `port`…) are configuration errors;
 * - `options` (the field, or the URL's `options` parameter): no whitespace or backslash, and no
 *   leading `-`, so a value stays one argument of the option it was put in.
 * The URL that results is parsed again with {@link parseBackendUrl}.
 */
import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import { BackendUrlError, parseBackendUrl, redactUrl, type BackendTarget } from '../backend/url.js';
import { parseDuration } from '../config/duration.js';
import { PgError, SqlState } from '../protocol/errors.js';
import { CachedCommandValue, splitCommandLine } from './command-runner.js';

export interface RouteContext {
  /** The verified token's claims. */
  claims: Record<string, unknown>;
  startupUser: string;
  startupDatabase?: string;
}

export interface RouteMatch {
  /** The backends-file key that matched (an exact value, `/regex/flags` or `*`). */
  key: string;
  /** A fresh object per match, with the route's user/database/options/application_name applied. */
  target: BackendTarget;
  /** The route's password command; one instance per route key, so its TTL cache is shared. */
  passwordCommand?: CachedCommandValue;
}

export interface BackendRoutes {
  /** The file (or other source) the routes came from. */
  readonly source: string;
  /** Number of routes. */
  readonly size: number;
  /**
   * The route for a claim value, or undefined when none matches. Throws
   * {@link RouteSubstitutionError} (FATAL 28000) when a matching route cannot use a value.
   */
  match(claimValue: string, ctx: RouteContext): RouteMatch | undefined;
  /** One line per route for `pgward check`, passwords redacted. */
  describe(): string[];
}

/** The backends file is invalid; `problems` lists each as `<source>: key "<key>": <problem>`. */
export class RoutingConfigError extends Error {
  readonly code = 'PGWARD_ERR_BACKENDS_CONFIG' as const;

  constructor(
    readonly source: string,
    readonly problems: string[],
  ) {
    super(
      problems.length === 1
        ? `invalid backends file: ${problems[0]}`
        : `invalid backends file ${source} (${problems.length} problems):\n${problems.map((p) => `  - ${p}`).join('\n')}`,
    );
    this.name = 'RoutingConfigError';
  }
}

/**
 * A matching route cannot be used with this token or connection (a value failed validation or
 * the resulting URL is invalid). FATAL 28000 with a generic message; `problem` says what went
 * wrong for the operator's log and names claims and fields, never their values.
 */
export class RouteSubstitutionError extends PgError {
  readonly code = 'PGWARD_ERR_ROUTE_SUBSTITUTION' as const;

  constructor(
    readonly routeKey: string,
    readonly field: string,
    readonly problem: string,
  ) {
    super('FATAL', SqlState.InvalidAuthorizationSpecification, 'no usable backend for this token');
    this.name = 'RouteSubstitutionError';
  }
}

/** Longest value substituted into a template. */
export const MAX_SUBSTITUTED_LENGTH = 256;
export const DEFAULT_PASSWORD_TTL_MS = 10 * 60_000;
export const PASSWORD_COMMAND_TIMEOUT_MS = 30_000;
export const PASSWORD_COMMAND_MAX_OUTPUT = 64 * 1024;

const OBJECT_KEYS = ['url', 'user', 'database', 'options', 'application_name', 'passwordCommand', 'passwordTtl'];
const TEMPLATE_FIELDS = ['user', 'database', 'options', 'application_name'] as const;
type TemplateField = (typeof TEMPLATE_FIELDS)[number];

/** Reads a YAML or JSON backends file (JSON is read as YAML, which also catches duplicate keys). */
export function loadBackendsFile(path: string): BackendRoutes {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new RoutingConfigError(path, [`${path}: cannot read the file (${e.code ?? e.message})`]);
  }
  const doc = parseDocument(text, { uniqueKeys: true });
  if (doc.errors.length > 0) {
    // yaml's own messages quote the offending line, which may hold a password: position and code only.
    throw new RoutingConfigError(
      path,
      doc.errors.map((e) => {
        const pos = e.linePos?.[0];
        const where = pos ? ` at line ${pos.line}, column ${pos.col}` : '';
        return e.code === 'DUPLICATE_KEY' ? `${path}: duplicate key${where}` : `${path}: syntax error${where} (${e.code})`;
      }),
    );
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: 100 });
  } catch {
    throw new RoutingConfigError(path, [`${path}: the document cannot be read (too many aliases?)`]);
  }
  return parseBackends(value, path);
}

/** Validates a parsed backends document; throws {@link RoutingConfigError} listing every problem. */
export function parseBackends(doc: unknown, source: string): BackendRoutes {
  const problems: string[] = [];
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw new RoutingConfigError(source, [`${source}: expected a mapping of claim values to backends`]);
  }
  const entries = Object.entries(doc as Record<string, unknown>);
  if (entries.length === 0) throw new RoutingConfigError(source, [`${source}: no backends defined`]);

  const exact = new Map<string, Route>();
  const regexes: Route[] = [];
  let fallback: Route | undefined;
  for (const [key, value] of entries) {
    const report = (problem: string) => problems.push(`${source}: key ${showKey(key)}: ${problem}`);
    const route = compileRoute(key, value, report);
    if (!route) continue;
    if (route.regex) regexes.push(route);
    else if (key === '*') fallback = route;
    else exact.set(key, route);
  }
  if (problems.length > 0) throw new RoutingConfigError(source, problems);

  return {
    source,
    size: entries.length,
    match(claimValue: string, ctx: RouteContext): RouteMatch | undefined {
      if (typeof claimValue !== 'string') return undefined;
      const hit = exact.get(claimValue);
      if (hit) return hit.build(null, ctx);
      for (const route of regexes) {
        const m = route.regex!.exec(claimValue);
        if (m) return route.build(m, ctx);
      }
      return fallback?.build(null, ctx);
    },
    describe(): string[] {
      return [...exact.values(), ...regexes, ...(fallback ? [fallback] : [])].map((r) => r.description);
    },
  };
}

// ------------------------------------------------------------------------------------------------
// Routes

interface Route {
  regex?: RegExp;
  description: string;
  build(m: RegExpExecArray | null, ctx: RouteContext): RouteMatch;
}

interface Captures {
  count: number;
  names: Set<string>;
}

function compileRoute(key: string, value: unknown, report: (p: string) => void): Route | undefined {
  const before = { n: 0 };
  const fail = (p: string) => {
    before.n += 1;
    report(p);
  };

  let regex: RegExp | undefined;
  let captures: Captures | null = null;
  if (key === '') {
    fail('empty key');
  } else if (key.startsWith('/') && key !== '*') {
    const last = key.lastIndexOf('/');
    // `/pattern/flags`, or pg-auth-proxy's `/pattern` (no closing slash, no flags) so its
    // backends files work unchanged.
    const closed = last > 0 && /^[a-z]*$/.test(key.slice(last + 1));
    const pattern = closed ? key.slice(1, last) : key.slice(1);
    const flags = closed ? key.slice(last + 1) : '';
    const stateful = [...flags].filter((f) => 'gyd'.includes(f));
    if (stateful.length > 0) {
      fail(`regular expression flag ${stateful.join('')} is not allowed (use i, m, s, u or v)`);
    } else {
      try {
        regex = new RegExp(pattern, flags);
        const probe = new RegExp(`(?:${pattern})|`, flags).exec('')!;
        captures = { count: probe.length - 1, names: new Set(Object.keys(probe.groups ?? {})) };
      } catch (err) {
        fail(`invalid regular expression: ${(err as Error).message.replace(/^Invalid regular expression: /, '')}`);
      }
    }
  }

  let urlTemplate: unknown;
  const fields: Partial<Record<TemplateField, string>> = {};
  let commandArgv: string[] | undefined;
  let ttlMs = DEFAULT_PASSWORD_TTL_MS;
  if (typeof value === 'string') {
    urlTemplate = value;
  } else if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    const obj = value as Record<string, unknown>;
    for (const k of Object.keys(obj)) {
      if (!OBJECT_KEYS.includes(k)) fail(`unknown field ${JSON.stringify(k)} (known: ${OBJECT_KEYS.join(', ')})`);
    }
    if (obj.url === undefined) fail('"url" is required');
    else if (typeof obj.url !== 'string') fail('"url" must be a string');
    else urlTemplate = obj.url;
    for (const f of TEMPLATE_FIELDS) {
      const v = obj[f];
      if (v === undefined) continue;
      if (typeof v !== 'string') fail(`"${f}" must be a string`);
      else fields[f] = v;
    }
    const cmd = obj.passwordCommand;
    if (cmd !== undefined) {
      if (typeof cmd === 'string') {
        try {
          commandArgv = splitCommandLine(cmd);
        } catch (err) {
          fail(`"passwordCommand": ${(err as Error).message}`);
        }
      } else if (Array.isArray(cmd) && cmd.every((a) => typeof a === 'string')) {
        commandArgv = [...(cmd as string[])];
      } else {
        fail('"passwordCommand" must be a command line (string) or an argv list');
      }
      if (commandArgv && commandArgv.length === 0) fail('"passwordCommand" is empty');
    }
    const ttl = obj.passwordTtl;
    if (ttl !== undefined) {
      if (cmd === undefined) fail('"passwordTtl" is given without "passwordCommand"');
      try {
        if (typeof ttl === 'number') ttlMs = Math.round(ttl * 1000);
        else if (typeof ttl === 'string') ttlMs = parseDuration(ttl);
        else throw new Error('must be a duration such as "10m"');
        if (!(ttlMs > 0)) throw new Error('must be more than zero');
      } catch (err) {
        fail(`"passwordTtl" ${(err as Error).message.replace(/^invalid duration/, 'is an invalid duration')}`);
      }
    }
  } else {
    fail('the value must be a backend URL or an object with "url" and optional templates');
  }

  let url: UrlTemplate | undefined;
  if (typeof urlTemplate === 'string') {
    url = compileUrl(urlTemplate, captures, fail);
    if (url && commandArgv && url.hasPassword) fail('give either a password in "url" or "passwordCommand", not both');
  }
  const compiledFields: Partial<Record<TemplateField, Piece[]>> = {};
  for (const f of TEMPLATE_FIELDS) {
    const t = fields[f];
    if (t === undefined) continue;
    const pieces = tokenize(t, captures, (p) => fail(`"${f}": ${p}`));
    if (pieces) compiledFields[f] = pieces;
  }
  if (before.n > 0 || !url) return undefined;

  const passwordCommand = commandArgv
    ? new CachedCommandValue(
        { argv: commandArgv, timeoutMs: PASSWORD_COMMAND_TIMEOUT_MS, maxOutputBytes: PASSWORD_COMMAND_MAX_OUTPUT },
        ttlMs,
      )
    : undefined;
  const kind = regex ? 'regex' : key === '*' ? 'fallback' : 'exact';
  const extras = [
    ...TEMPLATE_FIELDS.filter((f) => fields[f] !== undefined).map((f) => `${f} ${JSON.stringify(fields[f])}`),
    ...(passwordCommand ? [`passwordCommand (${commandArgv![0]}), ttl ${Math.round(ttlMs / 1000)}s`] : []),
  ];
  const description = `${kind} ${showKey(key)} → ${redactUrl(urlTemplate as string)}${extras.length ? ` (${extras.join(', ')})` : ''}`;
  const compiledUrl = url;

  return {
    regex,
    description,
    build(m, ctx) {
      const values = new Values(key, m, ctx);
      const target = compiledUrl.render(values);
      for (const f of TEMPLATE_FIELDS) {
        const pieces = compiledFields[f];
        if (!pieces) continue;
        const text = render(pieces, values, FIELD_SECTION[f], f);
        switch (f) {
          case 'user':
            if (text === '') throw new RouteSubstitutionError(key, f, 'the user name is empty');
            target.user = text;
            break;
          case 'database':
            if (text === '') throw new RouteSubstitutionError(key, f, 'the database name is empty');
            target.database = text;
            break;
          case 'options':
            if (text === '') delete target.options;
            else target.options = text;
            break;
          case 'application_name':
            if (text === '') delete target.applicationName;
            else target.applicationName = text;
            break;
        }
      }
      const match: RouteMatch = { key, target };
      if (passwordCommand) match.passwordCommand = passwordCommand;
      return match;
    },
  };
}

const FIELD_SECTION: Record<TemplateField, Section> = {
  user: 'text',
  database: 'text',
  options: 'options',
  application_name: 'text',
};

// ------------------------------------------------------------------------------------------------
// Templates

type Piece =
  | { t: 'lit'; text: string }
  | { t: 'group'; ref: number | string }
  | { t: 'claim'; name: string }
  | { t: 'startup'; name: 'user' | 'database' };

/** Where a substituted value lands, which decides how it is checked and encoded. */
type Section = 'text' | 'options' | 'url-user' | 'url-password' | 'url-host' | 'url-port' | 'url-path' | 'url-query' | 'url-options';

const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

/**
 * Splits a template into literal text and placeholders. `captures` is null outside regex routes,
 * where `$` is literal.
 */
function tokenize(template: string, captures: Captures | null, fail: (p: string) => void): Piece[] | undefined {
  const pieces: Piece[] = [];
  let lit = '';
  let ok = true;
  const push = (p: Piece) => {
    if (lit) pieces.push({ t: 'lit', text: lit });
    lit = '';
    pieces.push(p);
  };
  if (CONTROL.test(template)) {
    fail('contains a control character');
    ok = false;
  }
  for (let i = 0; i < template.length; ) {
    const c = template[i]!;
    if (c === '$' && captures) {
      const next = template[i + 1];
      if (next === '$') {
        lit += '$';
        i += 2;
        continue;
      }
      const digits = /^\d{1,2}/.exec(template.slice(i + 1));
      const braced = next === '{' ? /^\{([^{}]*)\}/.exec(template.slice(i + 1)) : null;
      if (digits || braced) {
        const ref = digits ? digits[0] : braced![1]!;
        const len = 1 + (digits ? digits[0].length : braced![0].length);
        if (/^\d+$/.test(ref)) {
          const n = Number(ref);
          if (n < 1 || n > captures.count) {
            fail(`$${ref} refers to capture group ${n}, but the regular expression has ${captures.count === 0 ? 'none' : `only ${captures.count}`}`);
            ok = false;
          }
          push({ t: 'group', ref: n });
        } else if (captures.names.has(ref)) {
          push({ t: 'group', ref });
        } else {
          fail(`\${${ref}} names no capture group of the regular expression`);
          ok = false;
        }
        i += len;
        continue;
      }
      if (next === '{') {
        fail('unterminated "${"');
        ok = false;
      }
      lit += c;
      i += 1;
      continue;
    }
    if (c === '{') {
      const m = /^\{([A-Za-z_][A-Za-z0-9_]*)\.([^{}]*)\}/.exec(template.slice(i));
      if (m) {
        const [all, scope, name] = m as unknown as [string, string, string];
        if (scope === 'claim' && name !== '') push({ t: 'claim', name });
        else if (scope === 'startup' && (name === 'user' || name === 'database')) push({ t: 'startup', name });
        else {
          fail(`unknown template variable ${JSON.stringify(all.slice(0, 80))} (use {claim.NAME}, {startup.user} or {startup.database})`);
          ok = false;
        }
        i += all.length;
        continue;
      }
    }
    lit += c;
    i += 1;
  }
  if (lit) pieces.push({ t: 'lit', text: lit });
  return ok ? pieces : undefined;
}

/** Values available to one match, each checked before use. */
class Values {
  constructor(
    private readonly key: string,
    private readonly m: RegExpExecArray | null,
    private readonly ctx: RouteContext,
  ) {}

  /** The raw value of a placeholder, checked for type, length and control characters. */
  get(p: Exclude<Piece, { t: 'lit' }>, field: string): string {
    let what: string;
    let v: unknown;
    switch (p.t) {
      case 'group':
        what = typeof p.ref === 'number' ? `capture group ${p.ref}` : `capture group "${p.ref}"`;
        v = typeof p.ref === 'number' ? this.m?.[p.ref] : this.m?.groups?.[p.ref];
        if (v === undefined) this.fail(field, `${what} did not take part in the match`);
        break;
      case 'claim':
        what = `claim ${JSON.stringify(p.name.slice(0, 80))}`;
        v = Object.hasOwn(this.ctx.claims, p.name) ? this.ctx.claims[p.name] : undefined;
        if (v === undefined) this.fail(field, `the token has no ${what}`);
        break;
      case 'startup':
        what = `startup parameter ${p.name}`;
        v = p.name === 'user' ? this.ctx.startupUser : (this.ctx.startupDatabase ?? this.ctx.startupUser);
        break;
    }
    if (typeof v !== 'string') this.fail(field, `${what} is not a string`);
    const s = v as string;
    if (s.length > MAX_SUBSTITUTED_LENGTH) this.fail(field, `${what} is longer than ${MAX_SUBSTITUTED_LENGTH} characters`);
    if (CONTROL.test(s)) this.fail(field, `${what} contains a control character`);
    return s;
  }

  fail(field: string, problem: string): never {
    throw new RouteSubstitutionError(this.key, field, problem);
  }

  /** A checked value, validated and encoded for its section. */
  place(p: Exclude<Piece, { t: 'lit' }>, section: Section, field: string): string {
    const v = this.get(p, field);
    const what = p.t === 'group' ? 'a capture group' : p.t === 'claim' ? `claim ${JSON.stringify(p.name.slice(0, 80))}` : `startup parameter ${p.name}`;
    const bad = (why: string) => this.fail(field, `${what} ${why}`);
    switch (section) {
      case 'text':
        return v;
      case 'options':
      case 'url-options':
        if (/[\s\\]/u.test(v)) bad('contains whitespace or a backslash, which are not allowed in options');
        if (v.startsWith('-')) bad('starts with "-", which is not allowed in options');
        return section === 'options' ? v : encodeURIComponent(v);
      case 'url-user':
        if (/[/?#@:%]/.test(v)) bad('contains a character not allowed in a user name (/ ? # @ : %)');
        return encodeURIComponent(v);
      case 'url-host':
        if (!/^[A-Za-z0-9._-]*$/.test(v)) bad('contains a character not allowed in a host name');
        return v;
      case 'url-port':
        if (!/^\d*$/.test(v)) bad('is not a port number');
        return v;
      case 'url-password':
      case 'url-path':
      case 'url-query':
        return encodeURIComponent(v);
    }
  }
}

function render(pieces: Piece[], values: Values, section: Section, field: string): string {
  let out = '';
  for (const p of pieces) out += p.t === 'lit' ? p.text : values.place(p, section, field);
  return out;
}

// ------------------------------------------------------------------------------------------------
// URL templates

interface UrlTemplate {
  hasPassword: boolean;
  render(values: Values): BackendTarget;
}

const SENTINEL = '\uE000';

/** Query parameters whose values decide where and how securely pgward connects: never templated. */
const FIXED_QUERY_KEYS =
  /^(?:ssl.*|host|hostaddr|port|service|servicefile|passfile|require_auth|channel_binding|gssencmode|krbsrvname|gsslib|gssdelegation|replication|requirepeer|connect_timeout|target_session_attrs|load_balance_hosts|min_protocol_version|max_protocol_version|scram_client_key|scram_server_key|keepalives.*|tcp_user_timeout)$/i;

function compileUrl(template: string, captures: Captures | null, fail: (p: string) => void): UrlTemplate | undefined {
  const shown = JSON.stringify(redactUrl(template).slice(0, 300));
  const pieces = tokenize(template, captures, (p) => fail(`URL ${shown}: ${p}`));
  if (!pieces) return undefined;
  const placeholders = pieces.filter((p) => p.t !== 'lit').length;

  if (placeholders === 0) {
    let target: BackendTarget;
    try {
      target = parseBackendUrl(pieces.map((p) => (p as { text: string }).text).join(''));
    } catch (err) {
      fail(urlProblem(err, shown));
      return undefined;
    }
    return { hasPassword: target.password !== undefined, render: () => structuredClone(target) };
  }

  if (template.includes(SENTINEL)) {
    fail(`URL ${shown}: contains the reserved character U+E000`);
    return undefined;
  }
  const skeleton = pieces.map((p) => (p.t === 'lit' ? p.text : SENTINEL)).join('');
  const sections = classify(skeleton);
  if (typeof sections === 'string') {
    fail(`URL ${shown}: ${sections}`);
    return undefined;
  }

  // Trial run with harmless values, so the URL's fixed parts are checked at load time.
  let k = 0;
  const sample = pieces.map((p) => (p.t === 'lit' ? p.text : sections[k++] === 'url-port' ? '5432' : 'sample')).join('');
  let sampleTarget: BackendTarget;
  try {
    sampleTarget = parseBackendUrl(sample);
  } catch (err) {
    fail(urlProblem(err, shown));
    return undefined;
  }

  return {
    hasPassword: sampleTarget.password !== undefined,
    render(values) {
      let out = '';
      let i = 0;
      for (const p of pieces) out += p.t === 'lit' ? p.text : values.place(p, sections[i++]!, 'url');
      try {
        return parseBackendUrl(out);
      } catch (err) {
        const detail = err instanceof BackendUrlError ? 'the URL with the substituted values is invalid' : 'the URL cannot be built';
        return values.fail('url', detail);
      }
    },
  };
}

function urlProblem(err: unknown, shown: string): string {
  if (err instanceof BackendUrlError) {
    const prefix = `invalid backend URL ${err.url}: `;
    const detail = err.message.startsWith(prefix) ? err.message.slice(prefix.length) : 'invalid';
    return `invalid URL ${shown}: ${detail}`;
  }
  return `invalid URL ${shown}`;
}

/**
 * The section of each placeholder (in order), found in the skeleton (placeholders replaced by
 * SENTINEL) with the same rules as parseBackendUrl. Substituted values never contribute a
 * structural character, so the structure seen here is the structure of every rendered URL.
 */
function classify(skeleton: string): Section[] | string {
  const scheme = /^postgres(?:ql)?:\/\//i.exec(skeleton);
  if (!scheme) return skeleton.startsWith(SENTINEL) || /^[^:]*\uE000/.test(skeleton) ? 'placeholders are not allowed in the scheme' : 'the scheme must be postgres:// or postgresql://';
  const base = scheme[0].length;
  const rest = skeleton.slice(base);
  const sectionAt = new Map<number, Section>();
  const mark = (from: number, to: number, section: Section) => {
    for (let i = from; i < to; i++) if (rest[i] === SENTINEL) sectionAt.set(i, section);
  };

  const firstSlash = rest.indexOf('/');
  const region = firstSlash >= 0 ? rest.slice(0, firstSlash) : rest;
  const at = region.lastIndexOf('@');
  if (at >= 0) {
    const colon = rest.slice(0, at).indexOf(':');
    if (colon >= 0) {
      mark(0, colon, 'url-user');
      mark(colon + 1, at, 'url-password');
    } else mark(0, at, 'url-user');
  }
  const hostStart = at + 1;
  let hostEnd = rest.length;
  for (let i = hostStart; i < rest.length; i++) {
    if (rest[i] === '/' || rest[i] === '?') {
      hostEnd = i;
      break;
    }
  }
  const hostport = rest.slice(hostStart, hostEnd);
  const portColon = hostport.startsWith('[') ? hostport.indexOf(':', Math.max(hostport.indexOf(']'), 0)) : hostport.indexOf(':');
  if (portColon >= 0) {
    mark(hostStart, hostStart + portColon, 'url-host');
    mark(hostStart + portColon + 1, hostEnd, 'url-port');
  } else mark(hostStart, hostEnd, 'url-host');

  let queryStart = -1;
  if (rest[hostEnd] === '/') {
    const q = rest.indexOf('?', hostEnd);
    mark(hostEnd + 1, q >= 0 ? q : rest.length, 'url-path');
    queryStart = q;
  } else if (rest[hostEnd] === '?') {
    queryStart = hostEnd;
  }
  if (queryStart >= 0) {
    let pos = queryStart + 1;
    for (const part of rest.slice(queryStart + 1).split('&')) {
      const eq = part.indexOf('=');
      const rawKey = eq >= 0 ? part.slice(0, eq) : part;
      if (rawKey.includes(SENTINEL)) return 'placeholders are not allowed in query parameter names';
      if (eq >= 0 && part.includes(SENTINEL, eq)) {
        const name = safeDecode(rawKey);
        if (FIXED_QUERY_KEYS.test(name)) return `placeholders are not allowed in the value of ${JSON.stringify(name)}`;
        const section: Section = name === 'options' ? 'url-options' : name === 'user' ? 'url-user' : 'url-query';
        mark(pos + eq + 1, pos + part.length, section);
      }
      pos += part.length + 1;
    }
  }

  const sections: Section[] = [];
  for (let i = 0; i < rest.length; i++) {
    if (rest[i] !== SENTINEL) continue;
    const s = sectionAt.get(i);
    if (!s) return 'a placeholder is in a part of the URL where values cannot be substituted';
    sections.push(s);
  }
  if (skeleton.slice(0, base).includes(SENTINEL)) return 'placeholders are not allowed in the scheme';
  return sections;
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

function showKey(key: string): string {
  return JSON.stringify(key.length > 100 ? `${key.slice(0, 100)}…` : key);
}
