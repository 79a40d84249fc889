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
 * The URL that results is parsed again with parseBackendUrl. The templates themselves are in
 * route-template.ts.
 */
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { redactUrl, type BackendTarget } from '../backend/url.js';
import { parsePoolOverride, type PoolOverride } from '../backend/pool-settings.js';
import { parseDuration } from '../util/duration.js';
import { parseYamlOrJson } from '../util/yaml-syntax.js';
import { splitCommandLine } from '../util/command-line.js';
import { CachedCommandValue } from './command-runner.js';
import {
  RouteSubstitutionError,
  Values,
  compileUrl,
  render,
  tokenize,
  type Captures,
  type Piece,
  type RouteContext,
  type Section,
  type UrlTemplate,
} from './route-template.js';

export { MAX_SUBSTITUTED_LENGTH, RouteSubstitutionError, type RouteContext } from './route-template.js';

export interface RouteMatch {
  /** The backends-file key that matched (an exact value, `/regex/flags` or `*`). */
  key: string;
  /** A fresh object per match, with the route's user/database/options/application_name applied. */
  target: BackendTarget;
  /** The route's password command; one instance per route key, so its TTL cache is shared. */
  passwordCommand?: CachedCommandValue;
}

/** A route whose backend does not depend on the token or the startup packet (no substitutions). */
export interface FixedRoute {
  key: string;
  /** Builds the route's target (with its password command, if any, still to run). */
  build(): RouteMatch;
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
  /** The routes that are not templates, for opening pooled connections ahead of time (`pool.warm`). */
  fixed(): FixedRoute[];
  /** The routes with pool settings of their own (`pool:` in the entry). */
  poolOverrides(): { key: string; pool: PoolOverride }[];
  /** Identifies every route as written (digests): a pooled target whose route is not here changed or went away. */
  readonly routeIds: ReadonlySet<string>;
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

export const DEFAULT_PASSWORD_TTL_MS = 10 * 60_000;
export const PASSWORD_COMMAND_TIMEOUT_MS = 30_000;
export const PASSWORD_COMMAND_MAX_OUTPUT = 64 * 1024;

const OBJECT_KEYS = ['url', 'user', 'database', 'options', 'application_name', 'passwordCommand', 'passwordTtl', 'pool'];
const TEMPLATE_FIELDS = ['user', 'database', 'options', 'application_name'] as const;
type TemplateField = (typeof TEMPLATE_FIELDS)[number];

/** Reads a YAML or JSON backends file (`.json` must be JSON; duplicate keys are refused in both). */
export function loadBackendsFile(path: string): BackendRoutes {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new RoutingConfigError(path, [`${path}: cannot read the file (${e.code ?? e.message})`]);
  }
  // yaml's own messages quote the offending line, which may hold a password: positions only.
  const { value, problems } = parseYamlOrJson(path, text);
  if (problems.length > 0) throw new RoutingConfigError(path, problems);
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
    fixed(): FixedRoute[] {
      const ctx: RouteContext = { claims: {}, startupUser: '', startupDatabase: '' };
      return [...exact.values(), ...(fallback ? [fallback] : [])]
        .filter((r) => r.fixed)
        .map((r) => ({ key: r.key, build: () => r.build(null, ctx) }));
    },
    poolOverrides() {
      return [...exact.values(), ...regexes, ...(fallback ? [fallback] : [])].flatMap((r) => (r.pool ? [{ key: r.key, pool: r.pool }] : []));
    },
    routeIds: new Set([...exact.values(), ...regexes, ...(fallback ? [fallback] : [])].map((r) => r.id)),
  };
}

// ------------------------------------------------------------------------------------------------
// Routes

interface Route {
  key: string;
  regex?: RegExp;
  /** A digest of the route as written (key and value). */
  id: string;
  /** Nothing in it is substituted: the same target for every token. */
  fixed: boolean;
  pool?: PoolOverride;
  description: string;
  build(m: RegExpExecArray | null, ctx: RouteContext): RouteMatch;
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
  let pool: PoolOverride | undefined;
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
    if (obj.pool !== undefined) {
      const found: string[] = [];
      pool = parsePoolOverride(obj.pool, 'pool', found);
      for (const p of found) fail(p);
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
  const literal = (t: string | undefined) => t === undefined || (tokenize(t, captures, () => {}) ?? []).every((p) => p.t === 'lit');
  const fixed = !regex && literal(urlTemplate as string) && TEMPLATE_FIELDS.every((f) => literal(fields[f]));
  const id = createHash('sha256').update(JSON.stringify([key, value])).digest('base64url').slice(0, 22);

  return {
    key,
    regex,
    id,
    fixed,
    pool,
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
      target.routeId = id;
      if (pool) target.pool = pool;
      const match: RouteMatch = { key, target };
      if (passwordCommand) {
        match.passwordCommand = passwordCommand;
        target.passwordFromCommand = true;
      }
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

function showKey(key: string): string {
  return JSON.stringify(key.length > 100 ? `${key.slice(0, 100)}…` : key);
}
