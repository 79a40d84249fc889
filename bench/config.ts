/**
 * What `npm run bench` measures: the cell families, the targets, and the BENCH_* variables that
 * choose among them (docs/benchmarks.md lists them all). Pure: reads only the environment it is given.
 */

/** Groups of cells, in the order a run measures them. */
export const FAMILIES = ['select', 'tls', 'querylog', 'churn', 'memory'] as const;
export type Family = (typeof FAMILIES)[number];

export const TARGETS = [
  'direct',
  'direct-tls',
  'node-pipe',
  'pgward',
  'pgward-js',
  'pgward-traced',
  'pgward-querylog',
  'pgward-observer',
  'pgward-nopool',
  'pgward-tls',
  'pgward-tls-client',
  'pgward-tls-node',
  'pgward-nopool-tls',
  'pgbouncer',
  'pgbouncer-tls',
] as const;
export type TargetName = (typeof TARGETS)[number];

/** Where a target uses TLS: nowhere, between client and proxy only, or on both hops. */
export type TlsHops = 'none' | 'client' | 'both';

export const TARGET_TLS: Record<TargetName, TlsHops> = {
  direct: 'none',
  'direct-tls': 'client',
  'node-pipe': 'none',
  pgward: 'none',
  'pgward-js': 'none',
  'pgward-traced': 'none',
  'pgward-querylog': 'none',
  'pgward-observer': 'none',
  'pgward-nopool': 'none',
  'pgward-tls': 'both',
  'pgward-tls-client': 'client',
  'pgward-tls-node': 'both',
  'pgward-nopool-tls': 'both',
  pgbouncer: 'none',
  'pgbouncer-tls': 'both',
};

/**
 * The targets each family measures (before BENCH_TARGETS filters them), in the order they take
 * turns and are listed: each family's reference first, so a row prints its ratio as it is measured.
 */
export const FAMILY_TARGETS: Record<Family, readonly TargetName[]> = {
  select: ['direct', 'node-pipe', 'pgward', 'pgward-js', 'pgward-traced', 'pgbouncer'],
  tls: ['pgbouncer-tls', 'direct-tls', 'pgward-tls', 'pgward-tls-node', 'pgward-tls-client'],
  querylog: ['pgward', 'pgward-observer', 'pgward-querylog'],
  churn: ['pgbouncer', 'direct', 'pgward', 'pgward-nopool', 'pgbouncer-tls', 'direct-tls', 'pgward-tls', 'pgward-nopool-tls'],
  memory: ['pgbouncer', 'pgward', 'pgward-js', 'pgbouncer-tls', 'pgward-tls', 'pgward-tls-node'],
};

/** `-S` is pgbench's built-in select-only script; no flag means the TPC-B-like default. */
export const SCRIPTS = [
  { name: 'select-only', flags: ['-S'] },
  { name: 'tpcb-like', flags: [] as string[] },
] as const;
export type Script = (typeof SCRIPTS)[number];

export interface BenchConfig {
  families: Family[];
  seconds: number;
  /** Client counts of the select family; tls and querylog have their own (both BENCH_CLIENTS when set). */
  clients: Record<'select' | 'tls' | 'querylog', number[]>;
  /** pgbench -c of the churn cell (`-C`: every transaction on a new connection). */
  churnClients: number;
  /** Unmeasured connections through each target before the first churn cell (BENCH_CHURN_WARMUP). */
  churnWarmup: number;
  targets: TargetName[];
  scripts: Script[];
  scale: number;
  pgwardNodeArgs: string[];
  pgwardArgs: string[];
  /** pgbench `-R`: a fixed total rate, so CPU per transaction is compared without saturation. */
  rate?: number;
  /** Times every cell is measured; the tables show each cell's median. */
  rounds: number;
  /**
   * Each pgbench cell measures its targets in order and then in reverse, each run half of
   * `seconds`, a row joining a target's two halves: a machine that speeds up or slows down across
   * the cell weighs on every target alike (BENCH_MIRROR=0: each target once, for all of `seconds`).
   */
  mirror: boolean;
  /** A cell in which any row saw more steal than this (percent) is measured again. */
  maxSteal?: number;
  /** Idle sessions the memory cell opens to each proxy. */
  idleSessions: number;
  /** Seconds the memory cell waits before each of its two RSS readings. */
  settleSeconds: number;
  /** Whether each proxy runs in a session of its own (`setsid`) or in the bench's. */
  proxySession: 'own' | 'shared';
  /**
   * How PgBouncer logs its clients in (BENCH_PGBOUNCER_AUTH): `trust` (the default, no password
   * asked), or a password round trip as every pgward login makes: `plain` (the password in clear,
   * as pgward's token), `md5` or `scram-sha-256`.
   */
  pgbouncerAuth: PgbouncerAuth;
}

export const PGBOUNCER_AUTH = ['trust', 'plain', 'md5', 'scram-sha-256'] as const;
export type PgbouncerAuth = (typeof PGBOUNCER_AUTH)[number];

type Env = Record<string, string | undefined>;

export function readConfig(env: Env = process.env): BenchConfig {
  const families = list(env.BENCH_CELLS, FAMILIES, 'BENCH_CELLS');
  const targets = list(env.BENCH_TARGETS, TARGETS, 'BENCH_TARGETS');
  const scriptNames = list(env.BENCH_SCRIPTS, SCRIPTS.map((s) => s.name), 'BENCH_SCRIPTS');
  const given = env.BENCH_CLIENTS === undefined ? undefined : intList(env.BENCH_CLIENTS, 'BENCH_CLIENTS');
  const proxySession = env.BENCH_PROXY_SESSION ?? 'own';
  if (proxySession !== 'own' && proxySession !== 'shared') {
    throw new Error(`BENCH_PROXY_SESSION: expected own or shared, got ${JSON.stringify(proxySession)}`);
  }
  const pgbouncerAuth = env.BENCH_PGBOUNCER_AUTH ?? 'trust';
  if (!(PGBOUNCER_AUTH as readonly string[]).includes(pgbouncerAuth)) {
    throw new Error(`BENCH_PGBOUNCER_AUTH: expected one of ${PGBOUNCER_AUTH.join(', ')}, got ${JSON.stringify(pgbouncerAuth)}`);
  }
  return {
    families: FAMILIES.filter((f) => families.includes(f)),
    seconds: positiveInt(env.BENCH_SECONDS ?? '15', 'BENCH_SECONDS'),
    clients: { select: given ?? [1, 8, 32], tls: given ?? [8, 32], querylog: given ?? [8, 32] },
    churnClients: positiveInt(env.BENCH_CHURN_CLIENTS ?? '4', 'BENCH_CHURN_CLIENTS'),
    churnWarmup: Number(env.BENCH_CHURN_WARMUP ?? '1500') || 0,
    targets: TARGETS.filter((t) => targets.includes(t)),
    scripts: SCRIPTS.filter((s) => scriptNames.includes(s.name)),
    scale: positiveInt(env.BENCH_SCALE ?? '10', 'BENCH_SCALE'),
    pgwardNodeArgs: words(env.BENCH_PGWARD_NODE_ARGS),
    pgwardArgs: words(env.BENCH_PGWARD_ARGS),
    rate: env.BENCH_RATE ? positiveInt(env.BENCH_RATE, 'BENCH_RATE') : undefined,
    rounds: positiveInt(env.BENCH_ROUNDS ?? '1', 'BENCH_ROUNDS'),
    mirror: flag(env.BENCH_MIRROR ?? '1', 'BENCH_MIRROR'),
    maxSteal: env.BENCH_MAX_STEAL ? positiveInt(env.BENCH_MAX_STEAL, 'BENCH_MAX_STEAL') : undefined,
    idleSessions: positiveInt(env.BENCH_IDLE_SESSIONS ?? '1000', 'BENCH_IDLE_SESSIONS'),
    settleSeconds: positiveInt(env.BENCH_SETTLE_SECONDS ?? '5', 'BENCH_SETTLE_SECONDS'),
    proxySession,
    pgbouncerAuth: pgbouncerAuth as PgbouncerAuth,
  };
}

/** pgbench `-T` of one run: half of BENCH_SECONDS (rounded up) when each target runs twice a cell. */
export function runSeconds(config: Pick<BenchConfig, 'seconds' | 'mirror'>): number {
  return config.mirror ? Math.ceil(config.seconds / 2) : config.seconds;
}

/** The targets a family measures in this run: its own list, less those BENCH_TARGETS leaves out. */
export function familyTargets(config: Pick<BenchConfig, 'targets'>, family: Family): TargetName[] {
  return FAMILY_TARGETS[family].filter((t) => config.targets.includes(t));
}

/** Targets that stay up for the whole run: those of the pgbench families (memory starts its own). */
export function longLivedTargets(config: Pick<BenchConfig, 'targets' | 'families'>): TargetName[] {
  const wanted = new Set(config.families.filter((f) => f !== 'memory').flatMap((f) => familyTargets(config, f)));
  return TARGETS.filter((t) => wanted.has(t));
}

/**
 * PostgreSQL's max_connections: every pgbench client, what the proxies keep open between cells
 * (PgBouncer's server connections, pgward's idle pool), and the memory cell's sessions, each of
 * which holds a backend.
 */
export function maxConnectionsFor(config: BenchConfig): number {
  const pgbenchClients = Math.max(config.churnClients, ...Object.values(config.clients).flat());
  const base = Math.max(300, 4 * pgbenchClients + 200);
  return config.families.includes('memory') ? base + config.idleSessions + 50 : base;
}

function list<T extends string>(text: string | undefined, known: readonly T[], name: string): T[] {
  if (text === undefined) return [...known];
  const items = text.split(',').map((s) => s.trim()).filter(Boolean);
  for (const item of items) {
    if (!(known as readonly string[]).includes(item)) throw new Error(`${name}: unknown ${item} (known: ${known.join(', ')})`);
  }
  if (items.length === 0) throw new Error(`${name}: empty`);
  return items as T[];
}

function intList(text: string, name: string): number[] {
  return text.split(',').map((c) => positiveInt(c.trim(), name));
}

function words(text: string | undefined): string[] {
  return (text ?? '').split(' ').filter(Boolean);
}

function flag(text: string, name: string): boolean {
  if (text !== '0' && text !== '1') throw new Error(`${name}: expected 0 or 1, got ${JSON.stringify(text)}`);
  return text === '1';
}

export function positiveInt(text: string, name: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name}: expected a positive integer, got ${JSON.stringify(text)}`);
  return n;
}
