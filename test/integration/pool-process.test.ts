import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { exportSPKI, generateKeyPair, SignJWT } from 'jose';
import pg from 'pg';
import { PgCluster, pgBinDir } from '../helpers/pg-cluster.js';
import { startPgwardProcess, type PgwardProcess } from '../helpers/pgward-process.js';
import { freePort } from '../helpers/ports.js';
import { metricValue } from '../helpers/scrape.js';
import { until } from '../helpers/wait.js';

// Backend connection reuse in a real `pgward start` process: token logins, reload, drain, warm,
// metrics and the console, pgbench's connection churn.

type Key = Awaited<ReturnType<typeof generateKeyPair>>;

describe('backend connection reuse in a real pgward process', () => {
  let cluster: PgCluster;
  let dir: string;
  let key: Key;
  let backends: string;
  let base: string[];

  const mint = (sub: string, ttl: string | number = '10m', claims: Record<string, unknown> = {}) =>
    new SignJWT({ sub, ...claims }).setProtectedHeader({ alg: 'EdDSA' }).setExpirationTime(ttl).sign(key.privateKey);
  const url = (proxy: PgwardProcess, user: string, token: string, db = 'postgres') =>
    `postgres://${user}:${encodeURIComponent(token)}@127.0.0.1:${proxy.port}/${db}?sslmode=disable`;
  const db = (user: string, extra = '') => `postgres://${user}@127.0.0.1:${cluster.port}/postgres?sslmode=disable${extra}`;
  const pidVia = async (connectionString: string, work?: (c: pg.Client) => Promise<void>) => {
    const c = new pg.Client({ connectionString });
    await c.connect();
    try {
      const pid = Number((await c.query('select pg_backend_pid() as p')).rows[0].p);
      await work?.(c);
      return pid;
    } finally {
      await c.end();
    }
  };
  const backendsOf = async (user: string) =>
    (await cluster.sql<{ pid: number }>('select pid from pg_stat_activity where usename = $1 order by pid', 'postgres', [user])).rows.map((r) => Number(r.pid));

  before(async () => {
    cluster = await PgCluster.start({ users: [{ name: 'alice', password: 'a' }, { name: 'bob', password: 'b' }, { name: 'carol', password: 'c' }] });
    dir = await mkdtemp(join(tmpdir(), 'pgward-pool-proc-'));
    key = await generateKeyPair('EdDSA', { extractable: true });
    await writeFile(join(dir, 'key.pem'), await exportSPKI(key.publicKey));
    backends = join(dir, 'backends.json');
    await writeFile(backends, JSON.stringify({ alice: db('alice'), bob: db('bob') }));
    base = ['--insecure', '--backends', backends, '--signingKeys', join(dir, 'key.pem'), '--refresh', '0'];
  });

  after(async () => {
    await cluster?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('reuses backends across token logins and closes a session at its token expiry on a reused backend', async () => {
    await using proxy = await startPgwardProcess([...base, '--clockTolerance', '0s', '--expiryWarning', '0']);
    const pooled = await pidVia(url(proxy, 'alice', await mint('alice')));
    const c = new pg.Client({ connectionString: url(proxy, 'alice', await mint('alice', Math.floor(Date.now() / 1000) + 2)) });
    const seen: { code?: string } = {};
    c.on('error', (e: Error & { code?: string }) => (seen.code ??= e.code));
    await c.connect();
    assert.equal(Number((await c.query('select pg_backend_pid() as p')).rows[0].p), pooled, 'the short-lived token got the pooled backend');
    await until(() => seen.code !== undefined, 6000, 'the session to be closed at its expiry');
    assert.equal(seen.code, '28P01');
    await c.end().catch(() => {});
    // Closed at an idle point: the backend is clean and serves the next session.
    assert.equal(await pidVia(url(proxy, 'alice', await mint('alice'))), pooled);
  });

  it('SIGHUP closes the idle connections of a target that changed, and keeps the others', async () => {
    await writeFile(backends, JSON.stringify({ alice: db('alice'), bob: db('bob') }));
    await using proxy = await startPgwardProcess(base);
    const alice = await pidVia(url(proxy, 'alice', await mint('alice')));
    const bob = await pidVia(url(proxy, 'bob', await mint('bob')));
    await writeFile(backends, JSON.stringify({ alice: db('alice', '&application_name=moved'), bob: db('bob') }));
    const mark = proxy.events.length;
    proxy.signal('SIGHUP');
    await proxy.waitFor('configuration reloaded', 10_000, mark);
    await until(async () => !(await backendsOf('alice')).includes(alice), 5000, "alice's idle connection to be closed");
    assert.deepEqual(await backendsOf('bob'), [bob], "bob's target did not change");
    assert.notEqual(await pidVia(url(proxy, 'alice', await mint('alice'))), alice);
    assert.equal(await pidVia(url(proxy, 'bob', await mint('bob'))), bob);
  });

  it('SIGTERM closes idle connections first and drains live sessions as before', async () => {
    await writeFile(backends, JSON.stringify({ alice: db('alice'), bob: db('bob') }));
    await using proxy = await startPgwardProcess([...base, '--gracePeriod', '10s']);
    const idle = await pidVia(url(proxy, 'bob', await mint('bob')));
    const live = new pg.Client({ connectionString: url(proxy, 'alice', await mint('alice')) });
    const seen: { code?: string } = {};
    live.on('error', (e: Error & { code?: string }) => (seen.code ??= e.code));
    await live.connect();
    const livePid = Number((await live.query('select pg_backend_pid() as p')).rows[0].p);
    await live.query('begin');
    assert.deepEqual(await backendsOf('bob'), [idle], "bob's session left its backend idle in the pool");
    proxy.signal('SIGTERM');
    await until(async () => (await backendsOf('bob')).length === 0, 5000, 'the idle pooled connection to close');
    assert.deepEqual(await backendsOf('alice'), [livePid], 'the live session is untouched');
    await live.query('commit');
    await until(() => seen.code !== undefined, 5000, 'the drained session to be closed');
    assert.equal(seen.code, '57P01');
    assert.equal(await proxy.exited, 0);
    await until(async () => (await backendsOf('alice')).length === 0, 5000, "the drained session's backend to close (not kept)");
  });

  it('opens --poolWarm connections at start for targets that are not templates', async () => {
    await writeFile(backends, JSON.stringify({ carol: db('carol'), '/^(x.*)$/': db('$1') }));
    assert.deepEqual(await backendsOf('carol'), []);
    await using proxy = await startPgwardProcess([...base, '--poolWarm', '2']);
    await proxy.waitFor('pool warmed', 10_000);
    assert.equal((await backendsOf('carol')).length, 2);
    const warmed = await backendsOf('carol');
    assert.ok(warmed.includes(await pidVia(url(proxy, 'carol', await mint('carol')))), 'a session gets a warmed connection');
  });

  it('counts reuse in the metrics and shows pools in the console', async () => {
    await writeFile(backends, JSON.stringify({ alice: db('alice'), bob: db('bob') }));
    const metricsPort = await freePort();
    await using proxy = await startPgwardProcess([...base, '--metricsAddr', `127.0.0.1:${metricsPort}`, '--config', await adminConfig(dir)]);
    for (let i = 0; i < 3; i++) await pidVia(url(proxy, 'alice', await mint('alice')));
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const target = `alice@127.0.0.1:${cluster.port}/postgres`;
    assert.equal(metricValue(text, 'pgward_pool_acquire_total', { target, result: 'new' }), 1);
    assert.equal(metricValue(text, 'pgward_pool_acquire_total', { target, result: 'reused' }), 2);
    await until(async () => {
      const t = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      return metricValue(t, 'pgward_pool_connections', { target, state: 'idle' }) === 1;
    }, 5000, 'one idle connection');
    assert.ok(!/secret|password=/.test(text));
    const admin = new pg.Client({ connectionString: url(proxy, 'bob', await mint('bob'), 'pgward') });
    await admin.connect();
    try {
      const rows = (await admin.query('SHOW POOLS')).rows;
      const row = rows.find((r) => r.target === target);
      assert.deepEqual(row && { ...row }, { target, active: '0', idle: '1', waiting: '0', max_size: '100' });
    } finally {
      await admin.end();
    }
  });

  it('carries pgbench connection churn (-C) with no failed transaction, reusing backends', async () => {
    await writeFile(backends, JSON.stringify({ alice: db('alice') }));
    await cluster.sql('GRANT ALL ON SCHEMA public TO alice');
    const bin = await pgBinDir();
    const init = spawnSync(join(bin, 'pgbench'), ['-i', '-q', '-s', '1', '-h', '127.0.0.1', '-p', String(cluster.port), '-U', 'alice', 'postgres'], { encoding: 'utf8' });
    assert.equal(init.status, 0, init.stderr);
    await using proxy = await startPgwardProcess(base);
    const token = await mint('alice');
    const run = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn(join(bin, 'pgbench'), ['-n', '-S', '-C', '-c', '4', '-j', '2', '-t', '50', '-h', '127.0.0.1', '-p', String(proxy.port), '-U', 'alice', 'postgres'], {
        env: { ...process.env, PGPASSWORD: token, PGSSLMODE: 'disable' },
      });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      child.on('close', (code) => resolve({ code, out }));
    });
    assert.equal(run.code, 0, run.out);
    assert.match(run.out, /number of transactions actually processed: 200\/200/);
    assert.match(run.out, /number of failed transactions: 0/);
    const started = proxy.events.filter((e) => e.msg === 'session started');
    const reused = started.filter((e) => e.backend_pool === 'reused').length;
    assert.ok(reused >= 150, `${reused} of ${started.length} sessions reused a backend`);
    assert.ok((await backendsOf('alice')).length <= 8, 'a handful of backends served 200 sessions');
  });
});

async function adminConfig(dir: string): Promise<string> {
  const path = join(dir, 'admin.yaml');
  await writeFile(path, 'admin:\n  subjects: [bob]\n');
  return path;
}

