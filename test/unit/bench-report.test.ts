import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { evaluateGoal, formatGoal, goalsFor, type Goal } from '../../bench/goals.js';
import {
  helpListsFlag,
  parseFailedTransactions,
  parseMachineTicks,
  parseProcCpuTicks,
  parseTps,
  parseTransactions,
  parseVmRssKiB,
} from '../../bench/parse.js';
import { familyTable, formatRow, roundRatios } from '../../bench/report.js';
import { joinHalves, medians, mirrored, referenceFor, type Row } from '../../bench/rows.js';

// pgbench 15's report of a -C run and of a normal one (numbers from runs on this project's machine).
const CHURN_OUTPUT = `pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: <builtin: select only>
number of clients: 4
number of transactions actually processed: 514
number of failed transactions: 0 (0.000%)
latency average = 15.628 ms
average connection time = 7.527 ms
tps = 255.944740 (including reconnection times)
`;
const SELECT_OUTPUT = `number of transactions actually processed: 120000
number of failed transactions: 3 (0.003%)
initial connection time = 12.345 ms
tps = 19375.123456 (without initial connection time)
`;

describe('bench parsing', () => {
  it('reads pgbench\'s TPS, transactions and failures, with and without -C', () => {
    assert.equal(parseTps(CHURN_OUTPUT), 255.94474);
    assert.equal(parseTransactions(CHURN_OUTPUT), 514);
    assert.equal(parseFailedTransactions(CHURN_OUTPUT), 0);
    assert.equal(parseTps(SELECT_OUTPUT), 19375.123456);
    assert.equal(parseFailedTransactions(SELECT_OUTPUT), 3);
    // PostgreSQL ≤ 13 printed two lines; the one without connection set-up is wanted.
    assert.equal(parseTps('tps = 10.0 (including connections establishing)\ntps = 12.5 (excluding connections establishing)\n'), 12.5);
    assert.equal(parseTps('no report'), undefined);
    assert.equal(parseFailedTransactions('pgbench 13 says nothing about failures'), undefined);
  });

  it('reads utime + stime from /proc/PID/stat even when the command name holds spaces and parentheses', () => {
    const rest = 'S 1 2 3 4 5 6 7 8 9 10 1234 567 0 0 20 0 11 0 100 200';
    assert.equal(parseProcCpuTicks(`4242 (node) ${rest}`), 1801);
    assert.equal(parseProcCpuTicks(`4242 (a) (b c)) ${rest}`), 1801);
    assert.equal(parseProcCpuTicks('garbage'), undefined);
  });

  it('reads the machine\'s total and steal ticks, and VmRSS', () => {
    assert.deepEqual(parseMachineTicks('cpu  100 5 50 800 10 1 2 30 7 0\ncpu0 1 2 3 4 5 6 7 8\n'), { total: 998, steal: 30 });
    assert.equal(parseMachineTicks('intr 1 2 3\n'), undefined);
    assert.equal(parseVmRssKiB('Name:\tnode\nVmHWM:\t  90000 kB\nVmRSS:\t   81234 kB\nThreads:\t11\n'), 81234);
    assert.equal(parseVmRssKiB('Name:\tzombie\n'), undefined);
  });

  it('finds a flag in --help text only as a whole flag name', () => {
    const help = '  --poolMode MODE        session or off\n  --poolMaxSize          most connections\n  --insecure\n';
    assert.equal(helpListsFlag(help, 'poolMode'), true);
    assert.equal(helpListsFlag(help, 'poolMaxSize'), true);
    assert.equal(helpListsFlag(help, 'insecure'), true);
    assert.equal(helpListsFlag(help, 'pool'), false);
    assert.equal(helpListsFlag('  --poolModeX  other\n', 'poolMode'), false);
  });
});

const row = (r: Partial<Row> & Pick<Row, 'family' | 'target'>): Row => ({ script: 'select-only', clients: 8, round: 1, ...r });

describe('bench rows and tables', () => {
  it('compares churn and memory with PgBouncer of the same TLS, querylog with pgward, select with direct', () => {
    assert.equal(referenceFor('churn', 'pgward'), 'pgbouncer');
    assert.equal(referenceFor('churn', 'pgward-nopool-tls'), 'pgbouncer-tls');
    assert.equal(referenceFor('memory', 'pgward-tls'), 'pgbouncer-tls');
    assert.equal(referenceFor('tls', 'pgward-tls-client'), 'pgbouncer-tls');
    assert.equal(referenceFor('querylog', 'pgward-querylog'), 'pgward');
    assert.equal(referenceFor('select', 'pgward'), 'direct');
  });

  it('takes medians per target and cell, keeping a failure only when no round succeeded', () => {
    const rows = [
      row({ family: 'tls', target: 'pgward-tls', round: 1, tps: 100, cpuUsPerTxn: 50 }),
      row({ family: 'tls', target: 'pgward-tls', round: 2, tps: 300, cpuUsPerTxn: 30 }),
      row({ family: 'tls', target: 'pgward-tls', round: 3, error: 'boom' }),
      row({ family: 'tls', target: 'pgbouncer-tls', round: 1, error: 'down' }),
    ];
    const m = medians(rows);
    assert.equal(m.length, 2);
    const mine = m.find((r) => r.target === 'pgward-tls')!;
    assert.equal(mine.tps, 200);
    assert.equal(mine.cpuUsPerTxn, 40);
    assert.equal(mine.round, 0);
    assert.equal(m.find((r) => r.target === 'pgbouncer-tls')!.error, 'down');
  });

  it('measures a mirrored cell in order and then in reverse, every target around the middle', () => {
    assert.deepEqual(mirrored(['pgbouncer', 'pgward', 'pgward-tls']), ['pgbouncer', 'pgward', 'pgward-tls', 'pgward-tls', 'pgward', 'pgbouncer']);
    const order = mirrored(['a', 'b', 'c', 'd']);
    // The mean position of each target's two runs is the same for all: a linear drift cancels.
    const meanAt = (t: string) => (order.indexOf(t) + order.lastIndexOf(t)) / 2;
    assert.deepEqual(['a', 'b', 'c', 'd'].map(meanAt), [3.5, 3.5, 3.5, 3.5]);
  });

  it('joins two halves: TPS over both runs\' time, CPU over both runs\' transactions, a failed half fails the row', () => {
    // 8 000 transactions at 1 000 TPS (8 s) and 8 000 at 4 000 TPS (2 s): 16 000 in 10 s.
    const first = row({ family: 'select', target: 'pgward', round: 2, tps: 1000, transactions: 8000, cpuUsPerTxn: 30, stealPct: 2 });
    const second = row({ family: 'select', target: 'pgward', round: 2, tps: 4000, transactions: 8000, cpuUsPerTxn: 20, stealPct: 4 });
    const joined = joinHalves(first, second);
    assert.equal(joined.tps, 1600);
    assert.equal(joined.transactions, 16000);
    assert.equal(joined.cpuUsPerTxn, 25);
    assert.equal(joined.stealPct, 3);
    assert.equal(joined.round, 2);
    // CPU weighs by transactions: 1 000 at 40 µs and 3 000 at 20 µs.
    assert.equal(joinHalves({ ...first, transactions: 1000, cpuUsPerTxn: 40 }, { ...second, transactions: 3000 }).cpuUsPerTxn, 25);
    assert.equal(joinHalves(first, { ...second, error: 'pgbench exit 1' }).error, 'pgbench exit 1');
    assert.equal(joinHalves({ ...first, error: 'down' }, second).error, 'down');
  });

  it('pairs ratios round by round, only where both rows of the round exist', () => {
    const rows = [
      row({ family: 'churn', script: 'connect', clients: 4, target: 'pgbouncer-tls', round: 1, tps: 200 }),
      row({ family: 'churn', script: 'connect', clients: 4, target: 'pgward-tls', round: 1, tps: 100 }),
      row({ family: 'churn', script: 'connect', clients: 4, target: 'pgward-tls', round: 2, tps: 400 }),
      row({ family: 'churn', script: 'connect', clients: 4, target: 'pgbouncer', round: 1, tps: 1000 }),
      row({ family: 'churn', script: 'connect', clients: 4, target: 'pgward', round: 1, tps: 250 }),
    ];
    const ratios = roundRatios(rows, 'churn');
    assert.deepEqual(ratios.map((r) => [r.target, r.reference, r.ratios]), [
      ['pgward-tls', 'pgbouncer-tls', [0.5]],
      ['pgward', 'pgbouncer', [0.25]],
    ]);
  });

  it('prints a churn row in ms per connection with its ratio, and a failed row with its reason', () => {
    const bouncer = row({ family: 'churn', script: 'connect', clients: 4, target: 'pgbouncer', tps: 1000, cpuUsPerTxn: 130 });
    const mine = row({ family: 'churn', script: 'connect', clients: 4, target: 'pgward', tps: 250, cpuUsPerTxn: 2100 });
    const line = formatRow(mine, [bouncer, mine]);
    assert.match(line, /^pgward\s+4\s+250\s+0\.25\s+2\.100\s+-$/);
    assert.match(formatRow({ ...mine, error: 'pgbench exit 2: refused' }, []), /^pgward\s+4\s+failed: pgbench exit 2: refused$/);
    const table = familyTable('churn', [mine, bouncer]);
    assert.match(table[0]!, /^churn: /);
    // PgBouncer comes first: the family's target order, not the order measured.
    assert.match(table[3]!, /^pgbouncer /);
    assert.match(table[4]!, /^pgward /);
  });
});

describe('bench goals', () => {
  const churn = (target: Row['target'], round: number, tps: number, cpuUsPerTxn?: number): Row =>
    row({ family: 'churn', script: 'connect', clients: 4, target, round, tps, cpuUsPerTxn });

  it('judges a ratio goal by the median of its rounds and says how many rounds met it', () => {
    const rows = [
      churn('pgbouncer-tls', 1, 600), churn('pgward-tls', 1, 660, 1000),
      churn('pgbouncer-tls', 2, 600), churn('pgward-tls', 2, 540, 1500),
      churn('pgbouncer-tls', 3, 500), churn('pgward-tls', 3, 520, 1100),
    ];
    const goals = goalsFor(rows);
    const conn = goals.find((g) => g.family === 'churn' && g.target === 'pgward-tls' && g.unit === '×')!;
    const result = evaluateGoal(rows, conn);
    assert.deepEqual(result.values.map((v) => v.toFixed(2)), ['1.10', '0.90', '1.04']);
    assert.equal(result.met, true);
    assert.match(formatGoal(result), /#18 .*≥ 1\.00× +1\.10 0\.90 1\.04 {2}median 1\.04 \(2 of 3 rounds\) {2}met$/);
    const cpu = goals.find((g) => g.family === 'churn' && g.target === 'pgward-tls' && g.unit === 'ms')!;
    const cpuResult = evaluateGoal(rows, cpu);
    assert.equal(cpuResult.median, 1.1);
    assert.equal(cpuResult.met, true);
    assert.match(formatGoal(cpuResult), /≤ 1\.2 ms/);
  });

  it('says "not measured" when the reference never ran, and NOT MET when the median misses', () => {
    const plainOnly = [churn('pgward-tls', 1, 300, 5000)];
    const conn = goalsFor(plainOnly).find((g) => g.family === 'churn' && g.unit === '×')!;
    assert.match(formatGoal(evaluateGoal(plainOnly, conn)), /not measured$/);
    const cpu = goalsFor(plainOnly).find((g) => g.target === 'pgward-tls' && g.unit === 'ms')!;
    assert.match(formatGoal(evaluateGoal(plainOnly, cpu)), /5\.000 {2}NOT MET$/);
  });

  it('makes per-client goals only for the client counts measured, select-only at 8 and 32 against PgBouncer', () => {
    const rows = [
      row({ family: 'select', target: 'pgbouncer', clients: 1, tps: 100 }),
      row({ family: 'select', target: 'pgward', clients: 1, tps: 100 }),
      row({ family: 'select', target: 'pgbouncer', clients: 32, tps: 100 }),
      row({ family: 'select', target: 'pgward', clients: 32, tps: 96 }),
      row({ family: 'select', target: 'pgbouncer', clients: 32, script: 'tpcb-like', tps: 10 }),
      row({ family: 'select', target: 'pgward', clients: 32, script: 'tpcb-like', tps: 1 }),
      row({ family: 'querylog', target: 'pgward', clients: 8, tps: 1000, cpuUsPerTxn: 20 }),
      row({ family: 'querylog', target: 'pgward-querylog', clients: 8, tps: 950, cpuUsPerTxn: 28 }),
    ];
    const goals = goalsFor(rows);
    const select = goals.filter((g) => g.family === 'select');
    assert.deepEqual(select.map((g) => g.clients), [32]);
    const selectResult = evaluateGoal(rows, select[0]!);
    // The TPC-B-like rows of the same clients are not part of it.
    assert.deepEqual(selectResult.values, [0.96]);
    assert.equal(selectResult.met, true);
    const querylog = goals.filter((g: Goal) => g.family === 'querylog');
    assert.deepEqual(querylog.map((g) => [g.clients, g.kind, g.limit]), [[8, 'min', 0.9], [8, 'max', 1.3]]);
    assert.deepEqual(querylog.map((g) => evaluateGoal(rows, g).met), [true, false]);
  });
});
