/**
 * Backend URL and field templates of the backends file (the rules are in routing.ts's header):
 * parsed into pieces at load time, then rendered per match with each substituted value checked
 * and encoded for the part of the URL or field it lands in.
 */
import { copyTarget } from '../backend/target-copy.js';
import { BackendUrlError, parseBackendUrl, redactUrl, type BackendTarget } from '../backend/url.js';
import { PgError, SqlState } from '../protocol/errors.js';

export interface RouteContext {
  /** The verified token's claims. */
  claims: Record<string, unknown>;
  startupUser: string;
  startupDatabase?: string;
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

/** The capture groups of a regex route's key: how many, and their names. */
export interface Captures {
  count: number;
  names: Set<string>;
}

export type Piece =
  | { t: 'lit'; text: string }
  | { t: 'group'; ref: number | string }
  | { t: 'claim'; name: string }
  | { t: 'startup'; name: 'user' | 'database' };

/** Where a substituted value lands, which decides how it is checked and encoded. */
export type Section = 'text' | 'options' | 'url-user' | 'url-password' | 'url-host' | 'url-port' | 'url-path' | 'url-query' | 'url-options';

const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

/**
 * Splits a template into literal text and placeholders. `captures` is null outside regex routes,
 * where `$` is literal.
 */
export function tokenize(template: string, captures: Captures | null, fail: (p: string) => void): Piece[] | undefined {
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
export class Values {
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

export function render(pieces: Piece[], values: Values, section: Section, field: string): string {
  let out = '';
  for (const p of pieces) out += p.t === 'lit' ? p.text : values.place(p, section, field);
  return out;
}

// ------------------------------------------------------------------------------------------------
// URL templates

export interface UrlTemplate {
  hasPassword: boolean;
  render(values: Values): BackendTarget;
}

const SENTINEL = '\uE000';

/** Query parameters whose values decide where and how securely pgward connects: never templated. */
const FIXED_QUERY_KEYS =
  /^(?:ssl.*|host|hostaddr|port|service|servicefile|passfile|require_auth|channel_binding|gssencmode|krbsrvname|gsslib|gssdelegation|replication|requirepeer|connect_timeout|target_session_attrs|load_balance_hosts|min_protocol_version|max_protocol_version|scram_client_key|scram_server_key|keepalives.*|tcp_user_timeout)$/i;

export function compileUrl(template: string, captures: Captures | null, fail: (p: string) => void): UrlTemplate | undefined {
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
    // A copy per login (the caller fills in the user, database, pool…), `params` with it.
    return { hasPassword: target.password !== undefined, render: () => copyTarget(target) };
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
  if (err instanceof BackendUrlError) return `invalid URL ${shown}: ${err.detail}`;
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
