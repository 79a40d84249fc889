import assert from 'node:assert/strict';
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import pg from 'pg';
import { encodeCancelRequest } from '../../src/protocol/index.js';
import { PgCluster } from '../helpers/pg-cluster.js';
import { startPgwardProcess } from '../helpers/pgward-process.js';
import { freePort } from '../helpers/ports.js';
import { scrapeMetric } from '../helpers/scrape.js';
import { until } from '../helpers/wait.js';

/** Sends a CancelRequest to `port` the way libpq does: a fresh connection, 16 bytes, no answer. */
function sendCancel(port: number, processId: number, secretKey: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => s.end(encodeCancelRequest(processId, secretKey)));
    s.on('error', () => resolve());
    s.on('close', () => resolve());
  });
}


describe('several instances as peers (two real pgward processes)', () => {
  it("a cancel that reaches the other instance is forwarded to the session's owner; forged keys are dropped", async () => {
    await using cluster = await PgCluster.start({ users: [{ name: 'app' }] });
    const dir = await mkdtemp(join(tmpdir(), 'pgward-peers-'));
    try {
      await writeFile(join(dir, 'secret'), 'a-shared-secret-of-at-least-32-bytes-0123456789\n', { mode: 0o600 });
      const [peer1, peer2] = [await freePort(), await freePort()];
      const config = (id: number) =>
        `peers:\n  id: ${id}\n  listen: 127.0.0.1:${id === 1 ? peer1 : peer2}\n  secretFile: ${join(dir, 'secret')}\n` +
        `  instances:\n    1: 127.0.0.1:${peer1}\n    2: 127.0.0.1:${peer2}\n`;
      await writeFile(join(dir, 'one.yaml'), config(1));
      await writeFile(join(dir, 'two.yaml'), config(2));
      const args = (file: string) => ['--insecure', '--auth', 'passthrough', '--backend', `${cluster.url('app')}?sslmode=disable`, '--config', join(dir, file), '--metricsAddr', '127.0.0.1:0'];
      await using one = await startPgwardProcess(args('one.yaml'));
      await using two = await startPgwardProcess(args('two.yaml'));
      const metricsOf = async (p: typeof one) => String((await p.waitFor('pgward listening')).metrics);
      assert.match(String((await one.waitFor('pgward listening')).peers), new RegExp(`^instance 1 on 127.0.0.1:${peer1}; peers 2; secret from file `));

      const client = new pg.Client({ connectionString: `postgres://app@127.0.0.1:${one.port}/postgres?sslmode=disable` });
      await client.connect();
      try {
        const { processID, secretKey } = client as unknown as { processID: number; secretKey: number };
        assert.equal(processID >>> 24, 1, 'the key says instance 1 owns the session');
        const key = Buffer.alloc(4);
        key.writeInt32BE(secretKey);

        // A forged key (right owner, wrong secret) sent to instance 2 changes nothing.
        const untouched = client.query('select pg_sleep(1.5) as slept');
        await until(async () => (await cluster.sql("select count(*)::int as n from pg_stat_activity where query like 'select pg_sleep(1.5)%' and state = 'active'")).rows[0].n === 1, 5000, 'the sleep to start');
        await sendCancel(two.port, processID, Buffer.from([key[0]! ^ 0xff, key[1]!, key[2]!, key[3]!]));
        assert.deepEqual((await untouched).rows, [{ slept: '' }], 'the forged cancel did nothing');
        await until(async () => (await scrapeMetric(await metricsOf(one), 'pgward_cancel_requests_total', { result: 'unknown' })) === 1, 5000, 'instance 1 to count the forged key');
        // Instance 2 counts it once the owner's answer is back.
        await until(async () => (await scrapeMetric(await metricsOf(two), 'pgward_cancel_requests_total', { result: 'unknown' })) === 1, 5000, 'instance 2 to count the forged key');

        // The real key through instance 2 cancels the statement running through instance 1.
        const long = client.query('select pg_sleep(30)');
        // Handled from the start: the cancel may land before the helper sees its connection close.
        const cancelled = assert.rejects(long, (e: Error & { code?: string }) => e.code === '57014');
        await until(async () => (await cluster.sql("select count(*)::int as n from pg_stat_activity where query = 'select pg_sleep(30)' and state = 'active'")).rows[0].n === 1, 5000, 'the long sleep to start');
        const started = Date.now();
        await sendCancel(two.port, processID, key);
        await cancelled;
        assert.ok(Date.now() - started < 10_000, 'cancelled well before the sleep would end');
        await until(async () => (await scrapeMetric(await metricsOf(two), 'pgward_cancel_requests_total', { result: 'peer' })) === 1, 5000, 'instance 2 to count the forwarded cancel');
        assert.equal(await scrapeMetric(await metricsOf(one), 'pgward_cancel_requests_total', { result: 'from_peer' }), 1);
        assert.deepEqual((await client.query('select 1 as still')).rows, [{ still: 1 }], 'the session goes on');

        // A frame not sealed with the shared secret is rejected and logged, and does nothing.
        await new Promise<void>((resolve) => {
          const s = net.connect(peer1, '127.0.0.1', () => s.end(Buffer.alloc(64, 7)));
          s.on('error', () => resolve());
          s.on('close', () => resolve());
        });
        const rejected = await one.waitFor('peer cancel frame rejected');
        assert.match(String(rejected.reason), /not a pgward peer frame/);
        const logs = JSON.stringify([...one.events, ...two.events]);
        assert.ok(!logs.includes('a-shared-secret'), 'the shared secret is never logged');
      } finally {
        await client.end();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('pgward check reports a peers section with its problems, never the secret', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pgward-peers-check-'));
    try {
      await writeFile(join(dir, 'c.yaml'), 'peers:\n  id: 1\n  listen: 127.0.0.1:7001\n  instances: { 1: 127.0.0.1:7001 }\n');
      const { spawnSync } = await import('node:child_process');
      const bin = new URL('../../../bin/pgward.js', import.meta.url).pathname;
      const r = spawnSync(process.execPath, [bin, 'check', '--insecure', '--auth', 'passthrough', '--backend', 'postgres://a@127.0.0.1:1/db', '--config', join(dir, 'c.yaml')], {
        encoding: 'utf8',
        env: { ...process.env, PGWARD_PEER_SECRET: 'short-secret-value' },
      });
      assert.equal(r.status, 2);
      assert.match(r.stderr, /peers: the shared secret \(environment PGWARD_PEER_SECRET\) must be at least 32 bytes/);
      assert.match(r.stderr, /peers.instances: list at least one other instance/);
      assert.ok(!r.stderr.includes('short-secret-value'));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('log file rotation', () => {
  it('--logDestination is reopened on SIGHUP: earlier lines stay in the moved file, later ones go to a new file', async () => {
    await using cluster = await PgCluster.start({ users: [{ name: 'app' }] });
    const dir = await mkdtemp(join(tmpdir(), 'pgward-logrot-'));
    try {
      const log = join(dir, 'pgward.log');
      // JSON logs go to the file, so the process helper cannot see 'pgward listening' on stdout:
      // wait for the file instead.
      const { spawn } = await import('node:child_process');
      const bin = new URL('../../../bin/pgward.js', import.meta.url).pathname;
      const port = await freePort();
      const child = spawn(process.execPath, [bin, 'start', '--insecure', '--auth', 'passthrough', '--backend', `${cluster.url('app')}?sslmode=disable`, '--bindAddr', `127.0.0.1:${port}`, '--logFormat', 'json', '--logDestination', log], { stdio: 'ignore' });
      const exited = new Promise<number | null>((r) => child.once('exit', r));
      try {
        const lines = async (f: string) => (await readFile(f, 'utf8').catch(() => '')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as { msg: string; user?: string });
        await until(async () => (await lines(log)).some((l) => l.msg === 'pgward listening'), 10_000, 'pgward to listen');
        const session = async (user: string) => {
          const c = new pg.Client({ connectionString: `postgres://app@127.0.0.1:${port}/postgres?sslmode=disable&application_name=${user}` });
          await c.connect();
          await c.end();
        };
        await session('before');
        await until(async () => (await lines(log)).some((l) => l.msg === 'session started'), 5000, 'the first session in the log');
        await rename(log, `${log}.1`);
        child.kill('SIGHUP');
        await until(async () => (await lines(log)).some((l) => l.msg === 'configuration reloaded'), 5000, 'a new log file after SIGHUP');
        await session('after');
        await until(async () => (await lines(log)).some((l) => l.msg === 'session started'), 5000, 'the second session in the new file');
        const old = await lines(`${log}.1`);
        assert.equal(old.filter((l) => l.msg === 'session started').length, 1, 'the moved file has the first session only');
        assert.ok(old.some((l) => l.msg === 'pgward listening'));
        assert.equal((await lines(log)).filter((l) => l.msg === 'session started').length, 1, 'the new file has the second session only');
      } finally {
        child.kill('SIGTERM');
        assert.equal(await exited, 0);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
