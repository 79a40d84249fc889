/**
 * The targets the open issues set (18: connection churn, 19: query-log and idle memory, 20: TLS),
 * checked against one run: each round's value, their median, and whether the median meets it.
 * Pure.
 */
import type { Family, TargetName } from './config.js';
import { median, referenceFor, sameCell, type Row } from './rows.js';

export interface Goal {
  issue: number;
  family: Family;
  target: TargetName;
  /** The cell the goal is about (every cell of the family when left out). */
  clients?: number;
  label: string;
  /** What the row is compared with, when not its family's usual reference (see rows.ts). */
  reference?: TargetName;
  /** The value of one round from the target's row and its reference's row in the same cell and round. */
  value(row: Row, reference: Row | undefined): number | undefined;
  /** `min`: the value must be at least `limit`; `max`: at most. */
  kind: 'min' | 'max';
  limit: number;
  unit: string;
  /** Digits shown. */
  digits: number;
}

export interface GoalResult {
  goal: Goal;
  values: number[];
  median?: number;
  met?: boolean;
}

const tpsRatio = (row: Row, ref: Row | undefined): number | undefined => (ref?.tps ? row.tps! / ref.tps : undefined);
const cpuRatio = (row: Row, ref: Row | undefined): number | undefined =>
  row.cpuUsPerTxn !== undefined && ref?.cpuUsPerTxn ? row.cpuUsPerTxn / ref.cpuUsPerTxn : undefined;
const cpuMs = (row: Row): number | undefined => (row.cpuUsPerTxn === undefined ? undefined : row.cpuUsPerTxn / 1000);
const kib = (row: Row): number | undefined => row.kibPerSession;

/** The goals for the cells a run measured: per client count where the issue names several. */
export function goalsFor(rows: readonly Row[]): Goal[] {
  const clientsOf = (family: Family, wanted?: readonly number[]): number[] =>
    [...new Set(rows.filter((r) => r.family === family && r.script !== 'tpcb-like').map((r) => r.clients))]
      .filter((c) => !wanted || wanted.includes(c))
      .sort((a, b) => a - b);
  const ratio = { kind: 'min' as const, unit: '×', digits: 2 };
  return [
    ...clientsOf('select', [8, 32]).map((clients): Goal => ({
      issue: 19, family: 'select', target: 'pgward', reference: 'pgbouncer', clients, ...ratio, limit: 0.95, value: tpsRatio,
      label: `select-only at ${clients}, plain: pgward ÷ PgBouncer TPS`,
    })),
    ...clientsOf('tls').map((clients): Goal => ({
      issue: 20, family: 'tls', target: 'pgward-tls', clients, ...ratio, limit: 1.0, value: tpsRatio,
      label: `select-only at ${clients}, TLS both hops: pgward ÷ PgBouncer TPS`,
    })),
    ...clientsOf('querylog').flatMap((clients): Goal[] => [
      { issue: 19, family: 'querylog', target: 'pgward-querylog', clients, ...ratio, limit: 0.9, value: tpsRatio,
        label: `select-only at ${clients}: [query-log, drain-gate] ÷ default pipeline TPS` },
      { issue: 19, family: 'querylog', target: 'pgward-querylog', clients, ...ratio, kind: 'max', limit: 1.3, value: cpuRatio,
        label: `select-only at ${clients}: [query-log, drain-gate] ÷ default pipeline CPU/txn` },
    ]),
    { issue: 18, family: 'churn', target: 'pgward-tls', ...ratio, limit: 1.0, value: tpsRatio,
      label: 'churn (-C), TLS both hops: pgward ÷ PgBouncer new connections/s' },
    { issue: 18, family: 'churn', target: 'pgward-tls', kind: 'max', limit: 1.2, unit: 'ms', digits: 3, value: cpuMs,
      label: 'churn (-C): pgward CPU per new TLS connection' },
    { issue: 18, family: 'churn', target: 'pgward', kind: 'max', limit: 0.3, unit: 'ms', digits: 3, value: cpuMs,
      label: 'churn (-C): pgward CPU per new plain connection' },
    { issue: 19, family: 'memory', target: 'pgward', kind: 'max', limit: 32, unit: 'KiB', digits: 1, value: kib,
      label: 'memory: pgward RSS per idle session, plain TCP' },
    { issue: 20, family: 'memory', target: 'pgward-tls', kind: 'max', limit: 32, unit: 'KiB', digits: 1, value: kib,
      label: 'memory: pgward RSS per idle session, TLS both hops' },
  ];
}

export function evaluateGoal(rows: readonly Row[], goal: Goal): GoalResult {
  const ok = rows.filter((r) => r.error === undefined);
  const reference = goal.reference ?? referenceFor(goal.family, goal.target);
  const values: number[] = [];
  for (const row of ok) {
    if (row.family !== goal.family || row.target !== goal.target || row.script === 'tpcb-like') continue;
    if (goal.clients !== undefined && row.clients !== goal.clients) continue;
    const theirs = sameCell(ok, row, reference);
    const value = goal.value(row, theirs);
    if (value !== undefined && Number.isFinite(value)) values.push(value);
  }
  if (values.length === 0) return { goal, values };
  const mid = median(values);
  return { goal, values, median: mid, met: goal.kind === 'min' ? mid >= goal.limit : mid <= goal.limit };
}

export function formatGoal(result: GoalResult): string {
  const { goal } = result;
  const limit = `${goal.kind === 'min' ? '≥' : '≤'} ${goal.unit === '×' ? `${goal.limit.toFixed(2)}×` : `${goal.limit} ${goal.unit}`}`;
  const head = `  #${goal.issue} ${goal.label} ${limit}`.padEnd(86);
  if (result.median === undefined) return `${head} not measured`;
  const rounds = result.values.map((v) => v.toFixed(goal.digits)).join(' ');
  const meeting = result.values.filter((v) => (goal.kind === 'min' ? v >= goal.limit : v <= goal.limit)).length;
  return `${head} ${rounds}` +
    (result.values.length > 1 ? `  median ${result.median.toFixed(goal.digits)} (${meeting} of ${result.values.length} rounds)` : '') +
    `  ${result.met ? 'met' : 'NOT MET'}`;
}
