/**
 * query-log's own CPU per statement, in process (issue 19): 32 sessions' chains composed as the
 * relay composes them (statements to each in turn: one session alone lets the JIT specialise what
 * pgward's sessions share, and reads ~10 % low), a real logger appending text lines to a file, and pgbench -S's traffic
 * (`SELECT abalance FROM pgbench_accounts WHERE aid = N;` with N random, then RowDescription,
 * DataRow, CommandComplete, ReadyForQuery) fed as the native carrier hands it over (observed, the
 * log lines of one hand-over written in one write: 320 statements, 16 ms at 20 000 TPS). No sockets, no
 * PostgreSQL: what it measures is query-log's work, the chain it runs in and the log write, and
 * it is steadier than `npm run bench` on a shared machine. Several builds (repository roots with
 * a built dist/) are measured in turn.
 *
 *   node dist/bench/query-log-cost.js
 *   QLOG_BUILDS=/tmp/pgward-base,. node dist/bench/query-log-cost.js
 *
 * Env: QLOG_BUILDS (comma-separated roots, default this one), QLOG_STATEMENTS (50 000 per
 * round), QLOG_ROUNDS (7; the median and the minimum are printed), QLOG_SESSIONS (32, each
 * statement to the next in turn), QLOG_HAND_OVER (320: statements whose lines go in one write;
 * 40 before stop 33, when the carrier handed over every 2 ms), QLOG_ALLOC=1 (instead of CPU: the bytes allocated per statement,
 * objects the GC already collected included, sampled every 512 bytes by V8's heap profiler over
 * the measured rounds, and the ten functions that allocate the most; not a timing, so it does not
 * depend on the machine's load). Modes per build: `query-log`
 * (its defaults, logging to the file), `no-log` (an `emit` that drops the events: tracking, lexing
 * and redaction only) and `no-op` (a middleware declaring the same messages whose operators do
 * nothing: the chain alone).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AllocationSampler } from './allocation-sampling.js';
import { summarizeHeapProfile } from './heapprofile-summary.js';

const MODES = ['query-log', 'no-log', 'no-op'] as const;
type Mode = (typeof MODES)[number];

const STATEMENTS_PER_HAND_OVER = Number(process.env.QLOG_HAND_OVER ?? 320);
const TOP_ALLOCATORS = 10;

/** What a child reports: CPU µs per statement per round, or the allocation profile's summary. */
interface Allocation {
  bytes: number;
  text: string;
}

const thisRoot = fileURLToPath(new URL('../../', import.meta.url));

/** Runs in a child process per build and mode, so that builds and modes do not share a heap or JIT state. */
async function measure(build: string, mode: Mode, statements: number, rounds: number, logFile: string): Promise<number[] | Allocation> {
  const load = (path: string) => import(resolve(build, 'dist/src', path));
  const sessions = Number(process.env.QLOG_SESSIONS ?? 32);
  const { queryLog } = await load('middleware/query-log.js');
  const { composeChain } = await load('pipeline/chain.js');
  const { Session } = await load('pipeline/session.js');
  const { createLogger } = await load('telemetry/log.js');
  const { holdLines, writeHeldLines } = await load('telemetry/log-output.js');
  const { tap } = await import('rxjs');
  const P = await load('protocol/index.js');
  const root = createLogger({ format: 'text', destination: logFile });
  const real = queryLog(mode === 'no-log' ? { emit: () => {} } : {});
  const middleware = mode === 'no-op' ? { name: 'no-op', messages: real.messages, session: () => ({ frontend: tap(() => {}), backend: tap(() => {}) }) } : real;
  // Statements go to the sessions in turn, as pgbench's clients' do: what runs for each is shared code, as in pgward.
  const chains = Array.from({ length: sessions }, (_, n) => {
    const id = `c0ffee${String(n).padStart(6, '0')}`;
    const log = root.child({ client: `127.0.0.1:${50000 + n}` }).child({ session: id });
    const session = new Session({ id, client: { address: '127.0.0.1', port: 50000 + n, tls: false }, clientParams: new Map(), log });
    session.user = 'postgres';
    session.database = 'postgres';
    return composeChain([middleware], session, { toBackend: () => {}, toClient: () => {}, error: (err: unknown) => { throw err; } });
  });
  const answerParts: Buffer[] = [
    P.be.rowDescription([{ name: 'abalance', tableOid: 0, columnAttr: 0, typeOid: 23, typeSize: 4, typeModifier: -1, format: 0 }]).raw,
    P.be.dataRow([Buffer.from('0')]).raw,
    P.be.commandComplete('SELECT 1').raw,
    P.be.readyForQuery('I').raw,
  ];
  const answer = Buffer.concat(answerParts);
  const queries: Buffer[] = [];
  for (let i = 0; i < 1000; i++) queries.push(P.fe.query(`SELECT abalance FROM pgbench_accounts WHERE aid = ${1 + Math.floor(Math.random() * 1_000_000)};`).raw);
  // As the native carrier hands them over: observed (already forwarded), the lines of a
  // hand-over (16 ms, some 320 statements at 20 000 TPS) held and written in one write.
  const one = (i: number) => {
    if (i % STATEMENTS_PER_HAND_OVER === 0) holdLines();
    const chain = chains[i % sessions]!;
    const q = queries[i % queries.length]!;
    chain.observeClient(P.frontendMessage(q[0]!, q, 0, q.length));
    let offset = 0;
    for (const part of answerParts) {
      // A type only counted (wants flag 3, COUNTED in src/pipeline/wants.ts) is counted, no message made.
      if (chain.wants.backend[part[0]!] === 3) chain.countBackend(part[0]!);
      else chain.observeBackend(P.backendMessage(part[0]!, answer, offset, part.length));
      offset += part.length;
    }
    if (i % STATEMENTS_PER_HAND_OVER === STATEMENTS_PER_HAND_OVER - 1) writeHeldLines();
  };
  for (let i = 0; i < 20_000; i++) one(i); // warm-up: the JIT settles
  if (process.env.QLOG_ALLOC === '1') return allocation(() => {
    for (let r = 0; r < rounds; r++) for (let i = 0; i < statements; i++) one(i);
  }, statements * rounds);
  const perStatement: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const before = process.cpuUsage();
    for (let i = 0; i < statements; i++) one(i);
    const used = process.cpuUsage(before);
    perStatement.push((used.user + used.system) / statements);
  }
  return perStatement;
}

/** `run`'s allocation, per statement, by V8's sampling heap profiler (collected objects included). */
async function allocation(run: () => void, statements: number): Promise<Allocation> {
  const sampler = new AllocationSampler();
  await sampler.start(512);
  run();
  const profile = await sampler.stop();
  sampler.disconnect();
  return summarizeHeapProfile(profile, statements, TOP_ALLOCATORS, 'statement');
}

function printAllocation(mode: Mode, root: string, a: Allocation): void {
  console.log(`  ${mode.padEnd(10)} ${root}`);
  console.log(a.text.replace(/^(?=.)/gm, '      '));
}

async function main(): Promise<void> {
  const [, , child, root, mode, logFile] = process.argv;
  const statements = Number(process.env.QLOG_STATEMENTS ?? 50_000);
  const rounds = Number(process.env.QLOG_ROUNDS ?? 7);
  if (child === 'child') {
    const values = await measure(root!, mode as Mode, statements, rounds, logFile!);
    process.stdout.write(JSON.stringify(values));
    return;
  }
  const builds = (process.env.QLOG_BUILDS ?? '.').split(',').map((b) => resolve(b === '.' ? thisRoot : b));
  const dir = mkdtempSync(join(tmpdir(), 'pgward-qlog-cost-'));
  try {
    const alloc = process.env.QLOG_ALLOC === '1';
    if (alloc) console.log(`query-log's bytes allocated per statement, in process (${rounds} rounds of ${statements} statements; top ${TOP_ALLOCATORS} functions by self size)`);
    else console.log(`query-log's CPU per statement, in process (${rounds} rounds of ${statements} statements; median, min)`);
    for (const mode of MODES) {
      for (const root of builds) {
        const logFile = join(dir, 'query.log');
        const out = execFileSync(process.execPath, [fileURLToPath(import.meta.url), 'child', root, mode, logFile], { encoding: 'utf8' });
        rmSync(logFile, { force: true });
        const result = JSON.parse(out) as number[] | Allocation;
        if (!Array.isArray(result)) {
          printAllocation(mode, root, result);
          continue;
        }
        const values = result.sort((a, b) => a - b);
        const median = values[Math.floor(values.length / 2)]!;
        console.log(`  ${mode.padEnd(10)} ${median.toFixed(2).padStart(6)} µs  (min ${values[0]!.toFixed(2)})  ${root}`);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
