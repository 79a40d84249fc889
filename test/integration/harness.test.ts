import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { describe, it } from 'node:test';
import pg from 'pg';
import { TestCA } from '../helpers/certs.js';
import { PgCluster } from '../helpers/pg-cluster.js';
import { freePort } from '../helpers/ports.js';
import { runPsql } from '../helpers/psql.js';

/** Resolves to the error code of a TCP connect attempt, or 'connected'. */
function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

async function withClient<T>(config: pg.ClientConfig, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionTimeoutMillis: 10_000, ...config });
  client.on('error', () => {});
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => {});
  }
}

/** The SQLSTATE (or message) a failed connection attempt ends with. */
async function connectError(config: pg.ClientConfig): Promise<string> {
  try {
    await withClient(config, async () => undefined);
  } catch (err) {
    return (err as { code?: string }).code ?? String(err);
  }
  return 'connected';
}

describe('test helpers', { concurrency: true }, () => {
  it('freePort returns a bindable loopback port', async () => {
    const port = await freePort();
    assert.ok(port > 0 && port < 65536);
    assert.equal(await tryConnect(port), 'ECONNREFUSED');
  });

  it('TLS cluster with a scram user accepts a verify-full connection', async () => {
    await using ca = await TestCA.create();
    const server = await ca.issue('server', { cn: 'localhost', sans: ['DNS:localhost', 'IP:127.0.0.1'] });
    const carol = await ca.issue('carol', { cn: 'carol', client: true });
    await using cluster = await PgCluster.start({
      ssl: { ...server, ca: ca.cert },
      hba: [
        'hostssl all carol 127.0.0.1/32 cert',
        'hostssl all all 127.0.0.1/32 scram-sha-256',
        'hostnossl all all 127.0.0.1/32 reject',
      ],
      users: [{ name: 'alice', password: 's3cret' }, { name: 'carol' }],
    });
    const base = { host: cluster.host, port: cluster.port, user: 'alice', password: 's3cret', database: 'postgres' };

    // rejectUnauthorized defaults to true and the host is checked against the IP SAN: verify-full.
    const row = await withClient({ ...base, ssl: { ca: ca.caPem } }, async (c) =>
      (await c.query<{ one: number; ssl: boolean }>(
        'SELECT 1 AS one, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')).rows[0]);
    assert.deepEqual(row, { one: 1, ssl: true });

    const stored = await cluster.sql<{ p: string }>("SELECT rolpassword AS p FROM pg_authid WHERE rolname = 'alice'");
    assert.match(stored.rows[0]!.p, /^SCRAM-SHA-256\$/);
    assert.equal(await connectError({ ...base, ssl: false }), '28000', 'hostnossl reject');
    assert.equal(await connectError({ ...base, ssl: { ca: ca.caPem }, password: 'wrong' }), '28P01');

    // Client certificate authentication: the certificate's CN is the role.
    const [cert, key] = await Promise.all([readFile(carol.cert, 'utf8'), readFile(carol.key, 'utf8')]);
    const who = await withClient({ ...base, user: 'carol', password: undefined, ssl: { ca: ca.caPem, cert, key } },
      async (c) => (await c.query<{ u: string }>('SELECT current_user AS u')).rows[0]!.u);
    assert.equal(who, 'carol');
  });

  it('md5 cluster, psql helper and pg_hba reload', async () => {
    await using cluster = await PgCluster.start({
      passwordEncryption: 'md5',
      hba: ['host all all 127.0.0.1/32 md5'],
      users: [{ name: 'bob', password: 'pw' }],
    });
    const stored = await cluster.sql<{ p: string }>("SELECT rolpassword AS p FROM pg_authid WHERE rolname = 'bob'");
    assert.match(stored.rows[0]!.p, /^md5[0-9a-f]{32}$/);

    const ok = await runPsql([cluster.url('bob', 'pw') + '?sslmode=disable', '-c', 'SELECT 1; SELECT current_user']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout, '1\nbob\n');

    const copied = await runPsql([cluster.url('bob', 'pw'), '-c', 'COPY (SELECT 1) TO STDOUT'], {}, '');
    assert.equal(copied.stdout, '1\n');
    const fromStdin = await runPsql([cluster.url('bob', 'pw'), '-f', '-'], {}, 'SELECT 40 + 2;\n');
    assert.equal(fromStdin.stdout, '42\n');

    const failed = await runPsql([cluster.url('bob', 'pw'), '-c', 'SELECT * FROM nope']);
    assert.notEqual(failed.code, 0);
    assert.match(failed.stderr, /nope/);

    const bad = await runPsql([cluster.url('bob', 'wrong'), '-c', 'SELECT 1']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /password authentication failed/);

    await cluster.reloadHba(['host all all 127.0.0.1/32 reject']);
    const rejected = await runPsql([cluster.url('bob', 'pw'), '-c', 'SELECT 1']);
    assert.match(rejected.stderr, /rejects connection/);
    await cluster.reloadHba(['host all all 127.0.0.1/32 trust']);
    assert.equal((await runPsql([cluster.url('bob'), '-c', 'SELECT 7'])).stdout, '7\n');
    await assert.rejects(cluster.reloadHba(['host all all 127.0.0.1/32 bogus-method']), /pg_hba\.conf rejected/);
  });

  it('terminateBackends ends sessions; dispose stops the server and removes its files', async () => {
    let port: number;
    let rootDir: string;
    {
      await using cluster = await PgCluster.start({ users: [{ name: 'carol' }] });
      ({ port, rootDir } = cluster);
      const client = new pg.Client({ connectionString: cluster.url('carol') });
      const ended = new Promise<void>((resolve) => client.on('error', () => resolve()));
      await client.connect();
      assert.equal(await cluster.terminateBackends('carol'), 1);
      await ended;
      await client.end().catch(() => {});
      assert.equal(await tryConnect(port), 'connected');
    }
    assert.equal(await tryConnect(port), 'ECONNREFUSED');
    assert.equal(existsSync(rootDir), false);
  });
});
