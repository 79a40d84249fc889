import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { PgCluster } from '../helpers/pg-cluster.js';
import { freePort } from '../helpers/ports.js';
import { until } from '../helpers/wait.js';

// query-log only observes (MessageInterest.observeOnly): a statement's answer leaves without
// waiting for it, and its line follows within LINE_WITHIN_MS (on the native carrier the observed
// messages of every session reach JavaScript together every few milliseconds and their lines
// leave in one write; see README, "Middleware API"). What holds with many busy sessions at once:
// each answer is its own statement's, every statement gets exactly one line, and each line is in
// the log at most LINE_WITHIN_MS after its answer arrived.

const BIN = fileURLToPath(new URL('../../../bin/pgward.js', import.meta.url));
const SESSIONS = 24;
const STATEMENTS = 25;
const LINE_WITHIN_MS = 1000;

let cluster: PgCluster;
let dir: string;

before(async () => {
  cluster = await PgCluster.start({ maxConnections: SESSIONS + 20 });
  dir = await mkdtemp(join(tmpdir(), 'pgward-qlog-order-'));
  await writeFile(join(dir, 'c.yaml'), 'pipeline: [query-log, drain-gate]\n');
});

after(async () => {
  await cluster?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** `pgward start` with its log in a file (read by the test, never a pipe), listening on a port of its own. */
async function startWithLogFile(log: string, flags: string[]): Promise<{ port: number } & AsyncDisposable> {
  const port = await freePort();
  const backend = `${cluster.url('postgres', undefined, 'postgres')}?sslmode=disable`;
  const child = spawn(process.execPath, [BIN, 'start', '--insecure', '--auth', 'passthrough', '--backend', backend, '--bindAddr', `127.0.0.1:${port}`,
    '--config', join(dir, 'c.yaml'), '--logDestination', log, ...flags], { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise((r) => child.once('exit', r));
  const accepts = () => new Promise<boolean>((r) => net.connect(port, '127.0.0.1').once('connect', function (this: net.Socket) {
    this.destroy();
    r(true);
  }).once('error', () => r(false)));
  await until(accepts, 15_000, 'pgward to listen');
  return { port, [Symbol.asyncDispose]: async () => (child.kill('SIGKILL'), void (await exited)) };
}

for (const relay of ['native', 'js'] as const) {
  describe(`query-log's lines with many sessions, ${relay} carrier`, () => {
    it(`${SESSIONS} sessions at once: each answer is its own statement's, in order, and its line follows within ${LINE_WITHIN_MS} ms`, async () => {
      const log = join(dir, `${relay}.log`);
      await using proxy = await startWithLogFile(log, relay === 'js' ? ['--no-nativeRelay'] : []);
      const url = `postgres://postgres@127.0.0.1:${proxy.port}/postgres?sslmode=disable`;
      const clients = Array.from({ length: SESSIONS }, () => new pg.Client({ connectionString: url }));
      // One at a time: logins at once from one address are bounded (--maxPendingLoginsPerAddress).
      for (const c of clients) await c.connect();
      // When each statement's answer arrived, and when its line was first seen in the log.
      const answered = new Map<string, number>();
      const seen = new Map<string, number>();
      const look = () => {
        const now = performance.now();
        for (const [, name] of readFileSync(log, 'utf8').matchAll(/select \? as (q_\d+_\d+)"/g)) if (!seen.has(name!)) seen.set(name!, now);
        return seen.size;
      };
      const looking = setInterval(look, 10);
      try {
        await Promise.all(clients.map(async (client, s) => {
          for (let i = 0; i < STATEMENTS; i++) {
            // The column's name tells whose statement it was; redaction keeps names, not literals.
            const name = `q_${s}_${i}`;
            const r = await client.query(`select ${i} as ${name}`);
            answered.set(name, performance.now());
            assert.deepEqual(r.rows, [{ [name]: i }], 'the answer to this session\'s own statement');
          }
        }));
        await until(() => look() === SESSIONS * STATEMENTS, LINE_WITHIN_MS, `every statement's line (missing: ${[...answered.keys()].filter((n) => !seen.has(n)).join(' ')})`);
      } finally {
        clearInterval(looking);
        await Promise.all(clients.map((c) => c.end()));
      }
      const late = [...answered].filter(([name, at]) => seen.get(name)! - at > LINE_WITHIN_MS).map(([name]) => name);
      assert.deepEqual(late, [], `every line is in the log within ${LINE_WITHIN_MS} ms of its answer`);
      const lines = readFileSync(log, 'utf8').split('\n').filter((l) => l.includes(' query '));
      assert.equal(lines.length, SESSIONS * STATEMENTS, 'one line per statement, none twice');
    });
  });
}
