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
import type { PoolOverride } from '../backend/pool-settings.js';
import { parseYamlOrJson } from '../util/yaml-syntax.js';
import { compileRoute, showKey, type Route, type RouteMatch } from './route-entry.js';
import type { RouteContext } from './route-template.js';

export { MAX_SUBSTITUTED_LENGTH, RouteSubstitutionError, type RouteContext } from './route-template.js';
export type { RouteMatch } from './route-entry.js';

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
