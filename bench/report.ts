/** The bench's tables: each row as it is measured, each family's medians, the per-round ratios. Pure formatting. */
import { FAMILY_TARGETS, type Family, type TargetName } from './config.js';
import { median, medians, referenceFor, sameCell, type Row } from './rows.js';

interface Column {
  header: string;
  width: number;
  cell(row: Row, reference: Row | undefined): string;
}

const fixed = (value: number | undefined, digits: number): string => (value === undefined ? '-' : value.toFixed(digits));
const ratio = (a: number | undefined, b: number | undefined): number | undefined => (a !== undefined && b ? a / b : undefined);

const TARGET: Column = { header: 'target', width: 18, cell: (r) => r.target };
const CLIENTS: Column = { header: 'clients', width: 8, cell: (r) => String(r.clients) };
const TPS: Column = { header: 'TPS', width: 10, cell: (r) => fixed(r.tps, 0) };
const CPU_US: Column = { header: 'proxy CPU µs/txn', width: 17, cell: (r) => fixed(r.cpuUsPerTxn, 1) };
const STEAL: Column = { header: 'steal %', width: 7, cell: (r) => fixed(r.stealPct, 0) };
const tpsAgainst = (header: string): Column => ({ header, width: 12, cell: (r, ref) => fixed(ratio(r.tps, ref?.tps), 2) });

const COLUMNS: Record<Family, Column[]> = {
  select: [TARGET, { header: 'script', width: 12, cell: (r) => r.script }, CLIENTS, TPS, tpsAgainst('vs direct'), CPU_US, STEAL],
  tls: [TARGET, CLIENTS, TPS, tpsAgainst('÷ PgBouncer'), CPU_US, STEAL],
  querylog: [TARGET, CLIENTS, TPS, tpsAgainst('TPS ÷ pgward'), CPU_US,
    { header: 'CPU ÷ pgward', width: 12, cell: (r, ref) => fixed(ratio(r.cpuUsPerTxn, ref?.cpuUsPerTxn), 2) }, STEAL],
  churn: [TARGET, CLIENTS, { header: 'conn/s', width: 10, cell: (r) => fixed(r.tps, 0) }, tpsAgainst('÷ PgBouncer'),
    { header: 'proxy CPU ms/conn', width: 17, cell: (r) => fixed(r.cpuUsPerTxn === undefined ? undefined : r.cpuUsPerTxn / 1000, 3) }, STEAL],
  memory: [TARGET, { header: 'sessions', width: 8, cell: (r) => String(r.clients) },
    { header: 'KiB/session', width: 12, cell: (r) => fixed(r.kibPerSession, 1) },
    { header: 'first reading', width: 13, cell: (r) => fixed(r.kibPerSessionEarly, 1) },
    { header: '÷ PgBouncer', width: 12, cell: (r, ref) => fixed(ratio(r.kibPerSession, ref?.kibPerSession), 2) },
    { header: 'RSS before MiB', width: 14, cell: (r) => fixed(r.rssBeforeKiB === undefined ? undefined : r.rssBeforeKiB / 1024, 1) }],
};

/** What each family's rows are, printed above its table. */
export const FAMILY_TITLES: Record<Family, string> = {
  select: 'select: pgbench select-only (-S) and TPC-B-like, plain TCP; "vs direct" is TPS ÷ PostgreSQL directly',
  tls: 'tls: pgbench -S over TLS (pgward-tls: both hops; pgward-tls-node: both hops on Node\'s TLS sockets, --no-nativeTls; pgward-tls-client: client hop only); ratio to PgBouncer with TLS on both hops',
  querylog: 'querylog: pgbench -S, pgward with pipeline [query-log, drain-gate] and with a no-op observer of the same messages (pgward-observer) against its default pipeline',
  churn: 'churn: pgbench -n -S -C (a new connection per transaction); conn/s is its TPS; ratio to PgBouncer with the same TLS',
  memory: 'memory: proxy RSS growth per idle session (fresh proxy, sessions past one SELECT 1); ratio to PgBouncer with the same TLS',
};

/** One row as a table line; `cellRows` are the rows measured so far in its cell and round (for its reference). */
export function formatRow(row: Row, cellRows: readonly Row[]): string {
  const columns = COLUMNS[row.family];
  if (row.error !== undefined) {
    const lead = row.family === 'select' ? [row.target, row.script, String(row.clients)] : [row.target, String(row.clients)];
    return join([...lead, `failed: ${row.error}`], columns);
  }
  const reference = row.target === referenceFor(row.family, row.target) ? undefined : sameCell(cellRows, row, referenceFor(row.family, row.target));
  return join(columns.map((c) => c.cell(row, reference)), columns);
}

function join(cells: readonly string[], columns: readonly Column[]): string {
  return cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(columns[i]!.width))).join(' ');
}

/** A family's title and column headers. */
export function familyHeader(family: Family): string[] {
  const columns = COLUMNS[family];
  return [
    FAMILY_TITLES[family],
    columns.map((c, i) => (i === columns.length - 1 ? c.header : c.header.padEnd(c.width))).join(' '),
    columns.map((c) => '-'.repeat(c.width)).join(' '),
  ];
}

/** A family's table of medians (or of its only round), ordered by cell, then target. */
export function familyTable(family: Family, rows: readonly Row[]): string[] {
  const own = medians(rows.filter((r) => r.family === family));
  if (own.length === 0) return [];
  const order = FAMILY_TARGETS[family];
  const sorted = [...own].sort((a, b) =>
    a.script.localeCompare(b.script) || a.clients - b.clients || order.indexOf(a.target) - order.indexOf(b.target));
  return [...familyHeader(family), ...sorted.map((r) => formatRow(r, own))];
}

export interface RoundRatios {
  family: Family;
  target: TargetName;
  reference: TargetName;
  script: string;
  clients: number;
  /** What is divided: TPS (connections/s for churn), CPU per transaction, KiB per idle session. */
  measure: 'tps' | 'cpu' | 'memory';
  ratios: number[];
}

const MEASURES = {
  tps: (r: Row) => r.tps,
  cpu: (r: Row) => r.cpuUsPerTxn,
  memory: (r: Row) => r.kibPerSession,
} as const;

/**
 * Each target ÷ its reference in the same cell, round by round (only rounds where both measured
 * it); `against` replaces the family's reference (the select family's PgBouncer summary).
 */
export function roundRatios(rows: readonly Row[], family: Family, against?: TargetName): RoundRatios[] {
  const measures: RoundRatios['measure'][] = family === 'memory' ? ['memory'] : family === 'querylog' ? ['tps', 'cpu'] : ['tps'];
  const out = new Map<string, RoundRatios>();
  const ok = rows.filter((r) => r.family === family && r.error === undefined);
  for (const row of ok) {
    const reference = against ?? referenceFor(family, row.target);
    if (reference === row.target) continue;
    const theirs = sameCell(ok, row, reference);
    if (!theirs) continue;
    for (const measure of measures) {
      const value = ratio(MEASURES[measure](row), MEASURES[measure](theirs));
      if (value === undefined) continue;
      const key = `${row.target}\0${row.script}\0${row.clients}\0${measure}`;
      const entry = out.get(key) ?? { family, target: row.target, reference, script: row.script, clients: row.clients, measure, ratios: [] };
      entry.ratios.push(value);
      out.set(key, entry);
    }
  }
  return [...out.values()];
}

const MEASURE_NAMES = { tps: 'TPS', cpu: 'CPU/txn', memory: 'KiB/session' } as const;

export function formatRoundRatios(entries: readonly RoundRatios[]): string[] {
  return entries.map((e) => {
    const what = e.family === 'churn' && e.measure === 'tps' ? 'conn/s' : MEASURE_NAMES[e.measure];
    const label = `${e.target} ÷ ${e.reference} ${what}, ${e.script} at ${e.clients}`;
    return `  ${label.padEnd(58)} ${e.ratios.map((r) => r.toFixed(2)).join(' ')}` +
      (e.ratios.length > 1 ? `  median ${median(e.ratios).toFixed(2)}` : '');
  });
}
