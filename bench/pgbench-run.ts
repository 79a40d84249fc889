/** The pgbench cells: which runs each family makes, and one run against one target. */
import { join } from 'node:path';
import { pgBinDir, whichExecutable } from '../test/helpers/pg-cluster.js';
import { runSeconds, type BenchConfig, type Family } from './config.js';
import { parseFailedTransactions, parseTps, parseTransactions } from './parse.js';
import { clockTicksPerSecond, cpuTicks, machineTicks, stealPercent } from './proc.js';
import { isExecutable, lastLines, runProcess } from './processes.js';
import type { Row } from './rows.js';
import type { Target } from './target-base.js';

export interface PgbenchCell {
  family: Family;
  script: string;
  /** pgbench flags choosing the script (and `-C` for churn). */
  flags: string[];
  clients: number;
}

/** The cells of a pgbench family in this run, in the order they are measured. */
export function pgbenchCells(config: BenchConfig, family: Exclude<Family, 'memory'>): PgbenchCell[] {
  switch (family) {
    case 'select':
      return config.scripts.flatMap((s) => config.clients.select.map((clients) => ({ family, script: s.name, flags: [...s.flags], clients })));
    case 'tls':
    case 'querylog':
      return config.clients[family].map((clients) => ({ family, script: 'select-only', flags: ['-S'], clients }));
    case 'churn':
      // -C: a new connection for every transaction; -n: no vacuum first (not PgBouncer's job).
      return [{ family, script: 'connect', flags: ['-n', '-S', '-C'], clients: config.churnClients }];
  }
}

export async function pgbenchPath(): Promise<string> {
  const onPath = await whichExecutable('pgbench');
  if (onPath) return onPath;
  const inBinDir = join(await pgBinDir(), 'pgbench');
  if (await isExecutable(inBinDir)) return inBinDir;
  throw new Error('pgbench not found (Debian: it ships with the postgresql-<v> package)');
}

/** Connection flags shared by every pgbench call; database `postgres`, user `postgres`. */
export function connArgs(port: number): string[] {
  return ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', 'postgres'];
}

export async function initTables(pgbench: string, port: number, scale: number): Promise<void> {
  const init = await runProcess(pgbench, ['-i', '-q', '-s', String(scale), ...connArgs(port)], 600_000);
  if (init.code !== 0) throw new Error(`pgbench -i failed (${init.code}): ${lastLines(init.stderr, 5)}`);
}

/**
 * One pgbench run against one target, with the proxy's CPU time (from /proc, before and after)
 * per transaction and the machine's steal time while it ran.
 */
export async function runPgbench(pgbench: string, target: Target, cell: PgbenchCell, round: number, config: BenchConfig): Promise<Row> {
  const row: Row = { family: cell.family, target: target.name, script: cell.script, clients: cell.clients, round };
  const seconds = runSeconds(config);
  // A fixed rate compares CPU per transaction; it means nothing for connection churn.
  const rate = cell.family !== 'churn' ? config.rate : undefined;
  const args = [...cell.flags, '-T', String(seconds), '-c', String(cell.clients), '-j', String(Math.min(2, cell.clients)),
    '-M', 'simple', ...(rate ? ['-R', String(rate)] : []), ...connArgs(target.port)];
  const cpuBefore = target.pid !== undefined ? await cpuTicks(target.pid) : undefined;
  const machineBefore = await machineTicks();
  // pgbench vacuums first and needs a while to connect 32 clients: generous slack over -T.
  const result = await runProcess(pgbench, args, (seconds + 120) * 1000, target.clientEnv);
  const machineAfter = await machineTicks();
  const cpuAfter = target.pid !== undefined ? await cpuTicks(target.pid) : undefined;
  if (result.code !== 0) return { ...row, error: `pgbench exit ${result.code}: ${lastLines(result.stderr, 1)}` };
  const tps = parseTps(result.stdout);
  if (tps === undefined) return { ...row, error: 'no "tps =" line in pgbench output' };
  const failed = parseFailedTransactions(result.stdout);
  if (failed) return { ...row, error: `${failed} failed transactions: ${lastLines(result.stderr, 1)}` };
  const txns = parseTransactions(result.stdout);
  const cpuUsPerTxn = cpuBefore !== undefined && cpuAfter !== undefined && txns
    ? ((cpuAfter - cpuBefore) / (await clockTicksPerSecond())) * 1e6 / txns
    : undefined;
  return { ...row, tps, cpuUsPerTxn, transactions: txns, stealPct: stealPercent(machineBefore, machineAfter) };
}

/**
 * Unmeasured connections through a target before its first churn cell: a fresh Node process
 * spends a tenth or more of its CPU compiling the login path for its first ~1 500 connections.
 */
export async function warmUp(pgbench: string, target: Target, cell: PgbenchCell, connections: number): Promise<void> {
  if (connections <= 0) return;
  const perClient = Math.max(1, Math.ceil(connections / cell.clients));
  const args = [...cell.flags, '-t', String(perClient), '-c', String(cell.clients), '-j', String(Math.min(2, cell.clients)), '-M', 'simple', ...connArgs(target.port)];
  await runProcess(pgbench, args, 300_000, target.clientEnv);
}
