/**
 * `npm run bench`: pgbench and idle sessions through pgward, PgBouncer (session mode) and the
 * baselines, on a throw-away cluster, every target taking its turn in each cell so that the rows
 * compared in a ratio are measured minutes apart at most. The cell families (BENCH_CELLS):
 *   select    pgbench -S and TPC-B-like, plain TCP: direct, node-pipe (a bare Node proxy, the floor
 *             for any proxy on Node's sockets), pgward (native relay when built), pgward-js
 *             (--no-nativeRelay), pgward-traced (every session traced, exported to a sink here),
 *             pgbouncer
 *   tls       pgbench -S over TLS: direct-tls, pgbouncer-tls and pgward-tls (both hops),
 *             pgward-tls-client (client hop only)
 *   querylog  pgbench -S: pgward with pipeline [query-log, drain-gate], and with a no-op observer of
 *             the same messages (pgward-observer), against the default pipeline
 *   churn     pgbench -n -S -C (a new connection per transaction), plain and TLS, with pgward-nopool
 *             (--poolMode off) when this pgward has pooling
 *   memory    proxy RSS per idle session, 1 000 sessions to a fresh proxy, plain and TLS
 * Quick try: BENCH_SECONDS=3 BENCH_CELLS=select BENCH_CLIENTS=8 BENCH_TARGETS=direct,pgward npm run bench
 * docs/benchmarks.md describes every cell and every BENCH_* variable (read in bench/config.ts).
 */
import { availableParallelism } from 'node:os';
import { nativeRelayAvailability } from '../src/pipeline/native-relay.js';
import { familyTargets, longLivedTargets, readConfig, runSeconds, type BenchConfig, type Family, type TargetName } from './config.js';
import { evaluateGoal, formatGoal, goalsFor } from './goals.js';
import { measureIdleMemory } from './memory.js';
import { initTables, pgbenchCells, pgbenchPath, runPgbench, warmUp, type PgbenchCell } from './pgbench-run.js';
import { familyHeader, familyTable, formatRoundRatios, formatRow, roundRatios } from './report.js';
import { joinHalves, mirrored, type Row } from './rows.js';
import { setUp, type BenchContext } from './setup.js';
import { SkipTarget, startTarget, type Target } from './targets.js';

/** Measurements of one cell before its last is kept however noisy. */
const MAX_ATTEMPTS = 3;

/** Targets that are not running: skipped (a tool or flag this machine lacks) or failed to start. */
type Unavailable = Map<TargetName, { skipped: boolean; reason: string }>;

async function main(): Promise<void> {
  const started = Date.now();
  const config = readConfig();
  const pgbench = await pgbenchPath();
  await using ctx = await setUp(config);
  await printPreamble(ctx);
  if (config.families.some((f) => f !== 'memory')) {
    console.log(`initialising pgbench tables (-s ${config.scale}) …`);
    await initTables(pgbench, ctx.cluster.port, config.scale);
  }
  const rows: Row[] = [];
  const unavailable: Unavailable = new Map();
  const targets = await startLongLived(ctx, unavailable);
  try {
    for (let round = 1; round <= config.rounds; round++) {
      for (const family of config.families) {
        console.log();
        const [title, ...columns] = familyHeader(family);
        console.log(title + (config.rounds > 1 ? `  (round ${round})` : ''));
        for (const line of columns) console.log(line);
        if (family === 'churn' && round === 1) await warmChurn(pgbench, targets, config);
        if (family === 'memory') rows.push(...(await memoryRound(ctx, round, unavailable)));
        else for (const cell of pgbenchCells(config, family)) rows.push(...(await measureCell(cell, { pgbench, round, targets, unavailable, config })));
      }
    }
  } finally {
    for (const [name, target] of targets) {
      try {
        await target[Symbol.asyncDispose]();
      } catch (err) {
        console.log(`${name}: ${(err as Error).message}`);
        process.exitCode = 1;
      }
    }
  }
  printSummary(rows, config, unavailable);
  console.log(`\nthe run took ${((Date.now() - started) / 60_000).toFixed(1)} min`);
}

async function printPreamble(ctx: BenchContext): Promise<void> {
  const { config } = ctx;
  const version = (await ctx.cluster.sql<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0]!.v;
  const timing = `${runSeconds(config)} s per pgbench run${config.mirror ? ', each target twice per cell (in order, then in reverse)' : ''}`;
  console.log(`PostgreSQL ${version}, scale ${config.scale}, ${timing}, ` +
    `${config.rounds} round${config.rounds === 1 ? '' : 's'}, ${availableParallelism()} CPUs; cells: ${config.families.join(', ')}`);
  const native = nativeRelayAvailability();
  console.log(native.available ? 'native relay: built (the pgward rows use it where they can)' : `native relay: NOT available (${native.reason}): every pgward row relays in JavaScript`);
  console.log(`pgward backend pooling: ${ctx.pgwardFlags.poolMode ? 'this pgward has --poolMode (pgward rows pool, pgward-nopool rows do not)' : 'not in this pgward (no --poolMode flag): every session opens its own backend connection'}`);
  console.log(`PgBouncer's client logins: auth_type = ${config.pgbouncerAuth}${config.pgbouncerAuth === 'trust' ? ' (no password asked; pgward always asks for the token)' : ' (a password round trip, as pgward\'s token)'}`);
  console.log(ctx.tls ? 'TLS: one ECDSA P-256 certificate for PostgreSQL, PgBouncer and pgward' : `TLS: ${ctx.tlsProblem}: TLS targets skipped`);
}

/** Starts every target the pgbench families need; one that cannot start is left out and noted. */
async function startLongLived(ctx: BenchContext, unavailable: Unavailable): Promise<Map<TargetName, Target>> {
  const started = new Map<TargetName, Target>();
  for (const name of longLivedTargets(ctx.config)) {
    try {
      started.set(name, await startTarget(name, ctx));
    } catch (err) {
      noteUnavailable(unavailable, name, err);
    }
  }
  return started;
}

function noteUnavailable(unavailable: Unavailable, name: TargetName, err: unknown): void {
  const skipped = err instanceof SkipTarget;
  const reason = (err as Error).message.split('\n')[0] ?? String(err);
  unavailable.set(name, { skipped, reason });
  console.log(`${name}: ${skipped ? 'skipped' : 'failed'}: ${reason}`);
}

/** What the cells of a round are measured with. */
interface RoundContext {
  pgbench: string;
  round: number;
  targets: Map<TargetName, Target>;
  unavailable: Unavailable;
  config: BenchConfig;
}

/**
 * One cell, every target in turn; measured again (up to MAX_ATTEMPTS) while any row saw more
 * steal than BENCH_MAX_STEAL. A target that failed to start gets a failed row; a skipped one none.
 */
async function measureCell(cell: PgbenchCell, run: RoundContext): Promise<Row[]> {
  const { config } = run;
  for (let attempt = 1; ; attempt++) {
    const measured = await measureTargets(cell, run);
    const noisy = measured.some((r) => r.stealPct !== undefined && config.maxSteal !== undefined && r.stealPct > config.maxSteal);
    if (noisy && attempt < MAX_ATTEMPTS) {
      console.log(`  steal above ${config.maxSteal} % in this cell: measuring it again (attempt ${attempt + 1} of ${MAX_ATTEMPTS})`);
      continue;
    }
    if (noisy) console.log(`  steal still above ${config.maxSteal} % after ${MAX_ATTEMPTS} attempts: keeping the last`);
    return measured;
  }
}

/**
 * Each target of the cell once; with BENCH_MIRROR in order and then in reverse, half the time
 * each run, every row then joining a target's two runs (printed as they come, then joined).
 */
async function measureTargets(cell: PgbenchCell, { pgbench, round, targets, unavailable, config }: RoundContext): Promise<Row[]> {
  const names = familyTargets(config, cell.family).filter((name) => targets.has(name) || !unavailable.get(name)?.skipped);
  const order = config.mirror ? mirrored(names) : names;
  const runs: Row[] = [];
  for (const [i, name] of order.entries()) {
    const target = targets.get(name);
    const row: Row = target
      ? await runPgbench(pgbench, target, cell, round, config)
      : { family: cell.family, target: name, script: cell.script, clients: cell.clients, round, error: unavailable.get(name)?.reason ?? 'not started' };
    runs.push(row);
    const pass = i < names.length ? runs.slice(0, names.length) : runs.slice(names.length);
    console.log(formatRow(row, pass) + (config.mirror ? (i < names.length ? '  (first half)' : '  (second half)') : ''));
  }
  if (!config.mirror) return runs;
  const joined = names.map((_, i) => joinHalves(runs[i]!, runs[order.length - 1 - i]!));
  console.log('  both halves:');
  for (const row of joined) console.log(formatRow(row, joined));
  return joined;
}

/** Warms every churn target's login path once, before the first churn cell is measured. */
async function warmChurn(pgbench: string, targets: Map<TargetName, Target>, config: BenchConfig): Promise<void> {
  const [cell] = pgbenchCells(config, 'churn');
  if (!cell || config.churnWarmup <= 0) return;
  console.log(`  warming up: ${config.churnWarmup} unmeasured connections through each churn target`);
  for (const name of familyTargets(config, 'churn')) {
    const target = targets.get(name);
    if (target) await warmUp(pgbench, target, cell, config.churnWarmup).catch(() => undefined);
  }
}

/** The memory cell for every target of the family, each on a fresh instance. */
async function memoryRound(ctx: BenchContext, round: number, unavailable: Unavailable): Promise<Row[]> {
  const measured: Row[] = [];
  for (const name of familyTargets(ctx.config, 'memory')) {
    if (unavailable.get(name)?.skipped) continue;
    try {
      const row = await measureIdleMemory(name, ctx, round);
      measured.push(row);
      console.log(formatRow(row, measured));
    } catch (err) {
      if (err instanceof SkipTarget) {
        noteUnavailable(unavailable, name, err);
        continue;
      }
      const row: Row = { family: 'memory', target: name, script: 'idle', clients: ctx.config.idleSessions, round, error: (err as Error).message.split('\n')[0] };
      measured.push(row);
      console.log(formatRow(row, measured));
    }
  }
  return measured;
}

function printSummary(rows: readonly Row[], config: BenchConfig, unavailable: Unavailable): void {
  console.log();
  console.log(config.rounds > 1 ? `Medians of ${config.rounds} rounds per cell:` : 'Summary:');
  for (const family of config.families) {
    const table = familyTable(family, rows);
    if (table.length === 0) continue;
    console.log();
    for (const line of table) console.log(line);
  }
  const perRound = [
    ...roundRatios(rows, 'select', 'pgbouncer').filter((e) => e.target === 'pgward' || e.target === 'pgward-js'),
    ...(['tls', 'querylog', 'churn', 'memory'] as Family[]).flatMap((f) => roundRatios(rows, f)),
  ];
  if (perRound.length > 0) {
    console.log();
    console.log('Against the reference in the same cell, round by round:');
    for (const line of formatRoundRatios(perRound)) console.log(line);
  }
  console.log();
  console.log('Targets from the issues (met or not by the median over rounds):');
  for (const goal of goalsFor(rows).filter((g) => config.families.includes(g.family))) console.log(formatGoal(evaluateGoal(rows, goal)));
  const skipped = [...unavailable].filter(([, u]) => u.skipped);
  if (skipped.length > 0) {
    console.log();
    for (const [name, { reason }] of skipped) console.log(`not measured: ${name} (${reason})`);
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.stack ?? err.message : String(err));
  process.exitCode = 1;
});
