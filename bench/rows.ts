/** One measurement (a row), the medians over rounds, and what each row is compared with. Pure. */
import { TARGET_TLS, type Family, type TargetName } from './config.js';

export interface Row {
  family: Family;
  target: TargetName;
  /** pgbench's script (`select-only`, `tpcb-like`), `connect` for churn, `idle` for memory. */
  script: string;
  /** pgbench clients, or the memory cell's idle sessions. */
  clients: number;
  /** 1-based; 0 in a row of medians. */
  round: number;
  /** Transactions per second; with churn (`-C`) that is new connections per second. */
  tps?: number;
  /** Proxy CPU (user + system) per transaction, microseconds; with churn, per new connection. */
  cpuUsPerTxn?: number;
  /** Transactions pgbench counted (new connections with churn): what joins two halves' rates. */
  transactions?: number;
  /**
   * Share of the machine's CPU time the hypervisor gave to other guests during the run (/proc/stat
   * "steal"), percent: on a shared VM the rounds that differ most are the ones the host took from.
   */
  stealPct?: number;
  /** Memory cell: proxy RSS growth per idle session, KiB, at the second reading (and the first). */
  kibPerSession?: number;
  kibPerSessionEarly?: number;
  /** Memory cell: the proxy's RSS before the sessions opened, KiB. */
  rssBeforeKiB?: number;
  error?: string;
}

/**
 * The row each row is compared with in its cell: PostgreSQL directly for the select family (as the
 * bench always did), the default pipeline for querylog, PgBouncer with the same TLS otherwise.
 */
export function referenceFor(family: Family, target: TargetName): TargetName {
  switch (family) {
    case 'select':
      return 'direct';
    case 'querylog':
      return 'pgward';
    case 'tls':
      return 'pgbouncer-tls';
    case 'churn':
    case 'memory':
      return TARGET_TLS[target] === 'none' ? 'pgbouncer' : 'pgbouncer-tls';
  }
}

/** The row of `target` measured in the same cell and round as `row`. */
export function sameCell(rows: readonly Row[], row: Row, target: TargetName): Row | undefined {
  return rows.find((r) => r.target === target && r.family === row.family && r.script === row.script &&
    r.clients === row.clients && r.round === row.round);
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * The targets of a cell in the order they are measured with BENCH_MIRROR: as given, then in
 * reverse, so that every target's two runs sit around the cell's middle.
 */
export function mirrored<T>(targets: readonly T[]): T[] {
  return [...targets, ...[...targets].reverse()];
}

/**
 * One row from a target's two runs in a mirrored cell: TPS over both runs' time together, CPU
 * over both runs' transactions, steal their mean. A failed half fails the row.
 */
export function joinHalves(first: Row, second: Row): Row {
  if (first.error !== undefined) return first;
  if (second.error !== undefined) return { ...second, round: first.round };
  const a = first.transactions ?? 0;
  const b = second.transactions ?? 0;
  const bothTimed = first.tps && second.tps && a > 0 && b > 0;
  const tps = bothTimed ? (a + b) / (a / first.tps! + b / second.tps!) : undefined;
  const cpuUsPerTxn = first.cpuUsPerTxn !== undefined && second.cpuUsPerTxn !== undefined && a + b > 0
    ? (first.cpuUsPerTxn * a + second.cpuUsPerTxn * b) / (a + b)
    : undefined;
  const stealPct = first.stealPct !== undefined && second.stealPct !== undefined ? (first.stealPct + second.stealPct) / 2 : undefined;
  return { ...first, tps, cpuUsPerTxn, stealPct, transactions: a + b };
}

/** One row per target and cell: the median of each measure over the rounds that ran, else the first failure. */
export function medians(rows: readonly Row[]): Row[] {
  const cells = new Map<string, Row[]>();
  for (const row of rows) {
    const key = `${row.family}\0${row.target}\0${row.script}\0${row.clients}`;
    cells.set(key, [...(cells.get(key) ?? []), row]);
  }
  return [...cells.values()].map((cell) => {
    const ok = cell.filter((r) => r.error === undefined);
    if (ok.length === 0) return { ...cell[0]!, round: 0 };
    const of = (pick: (r: Row) => number | undefined): number | undefined => {
      const values = ok.map(pick).filter((v): v is number => v !== undefined);
      return values.length > 0 ? median(values) : undefined;
    };
    return {
      ...ok[0]!,
      round: 0,
      tps: of((r) => r.tps),
      cpuUsPerTxn: of((r) => r.cpuUsPerTxn),
      stealPct: of((r) => r.stealPct),
      kibPerSession: of((r) => r.kibPerSession),
      kibPerSessionEarly: of((r) => r.kibPerSessionEarly),
      rssBeforeKiB: of((r) => r.rssBeforeKiB),
    };
  });
}
