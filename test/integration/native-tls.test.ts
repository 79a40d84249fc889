import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { copyFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { encodeSSLRequest } from '../../src/protocol/index.js';
import { TestCA, type CertPaths } from '../helpers/certs.js';
import { PgCluster } from '../helpers/pg-cluster.js';
import { startPgwardProcess } from '../helpers/pgward-process.js';
import { runPsql } from '../helpers/psql.js';
import { logEvents, startTestProxy, type TestProxy } from '../helpers/proxy.js';
import { RawClient } from '../helpers/raw-client.js';
import { metricValue } from '../helpers/scrape.js';
import { cancelOverTls, issueExpired, tlsBothHops, type TlsBothHops } from '../helpers/tls-peers.js';
import { until } from '../helpers/wait.js';

/**
 * TLS on both hops — client to pgward, pgward to a PostgreSQL that accepts only TLS — with real
 * clients, on both TLS layers (Node's, and the native one of --nativeTls): sessions and what they
 * log, big results, cancel, an expired backend certificate, and connections that never finish
 * their handshake (garbage, a stall): closed, counted, and nothing else disturbed.
 */
for (const layer of ['node', 'native'] as const) describe(`TLS on both hops, ${layer} TLS layer`, () => {
  const layerFlags = layer === 'native' ? ['--nativeTls'] : ['--no-nativeTls'];
  let hops: TlsBothHops;
  let ca: TestCA;
  let proxyCert: CertPaths;
  let cluster: PgCluster;
  let proxy: TestProxy;

  const backendUrl = () => hops.backendUrl();
  const start = (extra: string[] = [], backend = backendUrl()) =>
    startTestProxy(['--bindCert', proxyCert.cert, '--bindKey', proxyCert.key, '--auth', 'passthrough', '--backend', backend, ...layerFlags, ...extra]);
  const clientQuery = `sslmode=verify-full&sslrootcert=${'CA'}`;
  const clientUrl = (p: TestProxy) => p.url('postgres', undefined, 'postgres', clientQuery.replace('CA', ca.cert));
  const pgClient = (p: TestProxy) => {
    const c = new pg.Client({ connectionString: p.url('postgres', undefined, 'postgres', ''), ssl: { ca: readFileSync(ca.cert), servername: 'localhost' } });
    c.on('error', () => {});
    return c;
  };
  const refusedCount = async (p: TestProxy) => metricValue(await p.proxy.metrics.registry.metrics(), 'pgward_connections_total', { result: 'refused' });

  before(async () => {
    hops = await tlsBothHops();
    ({ ca, proxyCert, cluster } = hops);
    proxy = await start();
  });

  after(async () => {
    await proxy?.close();
    await hops?.close();
  });

  it('carries psql over TLS to pgward and TLS to the backend, and the log says how', async () => {
    const r = await runPsql([clientUrl(proxy), '-c', 'select version from pg_stat_ssl where pid = pg_backend_pid()']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout.trim(), /^TLSv1\.[23]$/, 'the backend session itself runs over TLS');
    await until(() => logEvents(proxy.logs, 'session ended').length > 0, 5000, 'the session to end');
    const started = logEvents(proxy.logs, 'session started').at(-1)!;
    assert.deepEqual([started.tls_layer, started.backend_tls_layer], [layer, layer]);
    // The native TLS layer's endpoints are carried by the native carrier; Node's TLS sockets by the JavaScript one.
    assert.equal(logEvents(proxy.logs, 'session ended').at(-1)!.relay, layer === 'native' ? 'native' : 'js');
    assert.equal(started.tls_version, 'TLSv1.3');
    assert.equal(started.backend_tls_version, r.stdout.trim());
    assert.match(String(started.backend_tls_cipher), /^TLS_/);
  });

  it('reuses a TLS backend connection for the next session, and notices the backend closing it while idle', async () => {
    const pid = async () => {
      const r = await runPsql([clientUrl(proxy), '-c', 'select pg_backend_pid()']);
      assert.equal(r.code, 0, r.stderr);
      return Number(r.stdout.trim());
    };
    const ended = logEvents(proxy.logs, 'session ended').length;
    const first = await pid();
    // Deadlines, not delays: a loaded machine (a full suite beside a benchmark) once took longer than 5 s here.
    await until(() => logEvents(proxy.logs, 'session ended').length > ended, 15_000, 'the session to end');
    assert.equal(await pid(), first, 'the same backend served the next session');
    assert.equal(logEvents(proxy.logs, 'session started').at(-1)!.backend_pool, 'reused');
    // Waits (up to 5 s) for the backend to exit, so its close is on the socket when the pool looks.
    await cluster.sql(`select pg_terminate_backend(${first}, 5000)`);
    await until(() => logEvents(proxy.logs, 'backend connection closed').some((e) => e.why === 'closed by the backend while idle'), 15_000, 'the pool to see the idle connection go');
    assert.notEqual(await pid(), first, 'a new connection serves the next session');
  });

  it('moves a 40 MB COPY out and a 10 MB COPY in, intact', async () => {
    const out = await runPsql([clientUrl(proxy), '-c', "copy (select repeat(md5(i::text), 25) from generate_series(1, 50000) i) to stdout"], {}, undefined, { timeoutMs: 60_000 });
    assert.equal(out.code, 0, out.stderr);
    const lines = out.stdout.split('\n').filter(Boolean);
    assert.equal(lines.length, 50000);
    assert.equal(lines[49999], createHash('md5').update('50000').digest('hex').repeat(25), 'the last row (md5 of "50000") arrived whole');
    const rows = Array.from({ length: 20000 }, (_, i) => `${i}\t${'y'.repeat(500)}`).join('\n') + '\n';
    const sql = 'create temp table t (i int, s text); copy t from stdin; select count(*), sum(length(s)) from t';
    const into = await runPsql([clientUrl(proxy), '-c', sql.split('; ')[0]!, '-c', sql.split('; ')[1]!, '-c', sql.split('; ')[2]!], {}, rows, { timeoutMs: 60_000 });
    assert.equal(into.code, 0, into.stderr);
    assert.equal(into.stdout.trim().split('\n').at(-1), '20000|10000000');
  });

  it('forwards a cancel that arrives over TLS, to a backend that accepts only TLS', async () => {
    const client = pgClient(proxy);
    await client.connect();
    try {
      const { processID, secretKey } = client as unknown as { processID: number; secretKey: number };
      const cancelled = assert.rejects(client.query('select pg_sleep(20)'), (e: { code?: string }) => e.code === '57014');
      await new Promise((r) => setTimeout(r, 300));
      await cancelOverTls(proxy.port, ca.cert, processID, secretKey);
      await cancelled;
      assert.deepEqual((await client.query('select 1 as n')).rows, [{ n: 1 }], 'the session goes on after the cancel');
    } finally {
      await client.end();
    }
  });

  it('closes a connection that sends garbage instead of a ClientHello, counts it, and disturbs no other session', async () => {
    const bystander = pgClient(proxy);
    await bystander.connect();
    try {
      const before = await refusedCount(proxy);
      // After SSLRequest and 'S'; and as direct TLS (a first byte of 0x16), with a broken record.
      await using afterS = await RawClient.connect(proxy.port);
      afterS.write(encodeSSLRequest());
      await until(() => afterS.bytes === 1, 3000, "pgward's 'S'");
      afterS.write(Buffer.from('GET / HTTP/1.1\r\nHost: db\r\n\r\n'));
      await using direct = await RawClient.connect(proxy.port);
      direct.write(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x08, 1, 2, 3, 4, 5, 6, 7, 8]));
      await afterS.closedWithin(3000, 'the connection after garbage');
      await direct.closedWithin(3000, 'the direct TLS connection with a broken ClientHello');
      assert.equal(afterS.messages.length + direct.messages.length, 0, 'no plaintext answer crosses a failed handshake');
      await until(async () => (await refusedCount(proxy)) === before + 2, 3000, 'both refusals to be counted');
      const reasons = logEvents(proxy.logs, 'connection refused').slice(-2).map((e) => String(e.reason));
      assert.ok(reasons.every((r) => r.startsWith('TLS handshake failed: ')), reasons.join('; '));
      assert.deepEqual((await bystander.query('select 2 as n')).rows, [{ n: 2 }]);
    } finally {
      await bystander.end();
    }
  });

  it('closes a handshake that stalls at --authTimeout, counts it, and serves others meanwhile', async () => {
    await using impatient = await start(['--authTimeout', '2s']);
    const before = await refusedCount(impatient);
    await using stalled = await RawClient.connect(impatient.port);
    stalled.write(encodeSSLRequest());
    await until(() => stalled.bytes === 1, 3000, "pgward's 'S'");
    // Half a ClientHello header, then nothing.
    stalled.write(Buffer.from([0x16, 0x03]));
    const meanwhile = await runPsql([clientUrl(impatient), '-c', 'select 3']);
    assert.equal(meanwhile.stdout.trim(), '3', meanwhile.stderr);
    await stalled.closedWithin(6000, 'the stalled handshake');
    await until(async () => (await refusedCount(impatient)) === before + 1, 3000, 'the stalled connection to be counted');
    const refusal = logEvents(impatient.logs, 'connection refused').at(-1)!;
    assert.equal(refusal.reason, 'canceling authentication due to timeout');
  });

  it('refuses a backend whose certificate has expired (08001), and says so', async () => {
    const expired = await issueExpired(ca, 'expired-server');
    await using stale = await PgCluster.start({ ssl: { ...expired, ca: ca.cert }, hba: ['hostssl all all 127.0.0.1/32 trust'] });
    await using p = await start([], `postgres://postgres@localhost:${stale.port}/postgres?sslmode=verify-full&sslrootcert=${ca.cert}`);
    const r = await runPsql([clientUrl(p), '-c', 'select 1']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /could not connect to the backend .*TLS handshake failed: .*certificate has expired/);
    const refusal = logEvents(p.logs, 'connection refused').at(-1)!;
    assert.equal(refusal.sqlstate, '08001');
  });
});

describe("pgward's certificate swapped on SIGHUP (a real pgward process, --nativeTls)", () => {
  it('serves new sessions with the new certificate while an open session keeps its connection', async () => {
    await using oldCa = await TestCA.create();
    await using newCa = await TestCA.create(undefined, 'the new CA');
    await using cluster = await PgCluster.start({});
    const [was, next] = await Promise.all([oldCa.issue('proxy', { cn: 'localhost' }), newCa.issue('proxy', { cn: 'localhost' })]);
    // pgward is given the old pair's files; the new pair is copied over them.
    await using proxy = await startPgwardProcess([
      '--nativeTls', '--bindCert', was.cert, '--bindKey', was.key, '--refresh', '0',
      '--auth', 'passthrough', '--backend', `${cluster.url('postgres')}?sslmode=disable`,
    ]);
    assert.equal((await proxy.waitFor('pgward listening')).native_tls, 'on');
    const url = (caPath: string) => `postgres://postgres@127.0.0.1:${proxy.port}/postgres?sslmode=verify-full&sslrootcert=${caPath}&host=localhost&hostaddr=127.0.0.1`;
    const open = new pg.Client({ connectionString: `postgres://postgres@127.0.0.1:${proxy.port}/postgres`, ssl: { ca: oldCa.caPem, servername: 'localhost' } });
    await open.connect();
    try {
      assert.equal((await runPsql([url(oldCa.cert), '-c', 'select 1'])).stdout.trim(), '1');

      await copyFile(next.cert, was.cert);
      await copyFile(next.key, was.key);
      const mark = proxy.events.length;
      proxy.signal('SIGHUP');
      await proxy.waitFor('configuration reloaded', 10_000, mark);

      const oldTrust = await runPsql([url(oldCa.cert), '-c', 'select 1']);
      assert.notEqual(oldTrust.code, 0, 'the old CA no longer vouches for what pgward presents');
      assert.match(oldTrust.stderr, /certificate verify failed/);
      assert.equal((await runPsql([url(newCa.cert), '-c', 'select 2'])).stdout.trim(), '2', oldTrust.stderr);
      assert.deepEqual((await open.query('select 3 as n')).rows, [{ n: 3 }], 'the session opened before the reload goes on');
      const layers = proxy.events.filter((e) => e.msg === 'session started').map((e) => e.tls_layer);
      assert.ok(layers.length >= 3 && layers.every((l) => l === 'native'), JSON.stringify(layers));
    } finally {
      await open.end();
    }
    proxy.signal('SIGTERM');
    assert.equal(await proxy.exited, 0);
  });
});
