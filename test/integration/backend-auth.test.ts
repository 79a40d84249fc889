import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { TestCA } from '../helpers/certs.js';
import { PgCluster } from '../helpers/pg-cluster.js';
import { casesFor, PG_VERSIONS } from '../helpers/pg-versions.js';
import { logEvents, startTestProxy } from '../helpers/proxy.js';

/**
 * Each backend authentication method and sslmode, through a passthrough proxy whose backend URL
 * carries the credentials; the client itself presents none.
 */
// PostgreSQL 15 runs every case; 14, 16, 17 and 18 the ones marked `each` (trust, md5, SCRAM and
// SCRAM-PLUS over TLS, a client certificate, verify-full).
for (const version of PG_VERSIONS) describe(`backend login: auth methods and sslmodes, PostgreSQL ${version}`, () => {
  const { each, it15 } = casesFor(version);
  let ca: TestCA;
  let otherCa: TestCA;
  let cluster: PgCluster;
  let clientCert: { cert: string; key: string };

  before(async () => {
    ca = await TestCA.create();
    otherCa = await TestCA.create(undefined, 'unrelated CA');
    // DNS:localhost only: connecting to 127.0.0.1 with verify-full must fail on the host name.
    const server = await ca.issue('server', { cn: 'localhost', sans: ['DNS:localhost'] });
    clientCert = await ca.issue('certuser', { cn: 'certuser', client: true });
    cluster = await PgCluster.start({
      version,
      ssl: { ...server, ca: ca.cert },
      hba: [
        'hostssl all certuser 127.0.0.1/32 cert',
        'host all clear_user 127.0.0.1/32 password',
        'host all md5_user 127.0.0.1/32 md5',
        'host all scram_user 127.0.0.1/32 scram-sha-256',
        'hostssl all ssl_only 127.0.0.1/32 trust',
        'hostnossl all ssl_only 127.0.0.1/32 reject',
        'hostssl all plain_only 127.0.0.1/32 reject',
        'hostnossl all plain_only 127.0.0.1/32 trust',
        'host all all 127.0.0.1/32 trust',
      ],
      users: [
        { name: 'clear_user', password: 'clear pw' },
        { name: 'scram_user', password: 'scräm pw' },
        { name: 'certuser' },
        { name: 'ssl_only' },
        { name: 'plain_only' },
      ],
    });
    await cluster.sql("SET password_encryption = 'md5'; CREATE ROLE md5_user LOGIN PASSWORD 'md5 pw'");
  });

  after(async () => {
    await cluster?.stop();
    await ca?.[Symbol.asyncDispose]();
    await otherCa?.[Symbol.asyncDispose]();
  });

  /** Connects through a fresh proxy for `backendUrl`; returns who and how the backend session runs. */
  async function through(backendUrl: string, clientUser = 'anyone', flags: string[] = []) {
    await using proxy = await startTestProxy(['--insecure', '--auth', 'passthrough', '--ignoreUsername', '--backend', backendUrl, ...flags]);
    const client = new pg.Client({ connectionString: proxy.url(clientUser) });
    try {
      await client.connect();
      const { rows } = await client.query(
        'select current_user as user, coalesce((select ssl from pg_stat_ssl where pid = pg_backend_pid()), false) as ssl',
      );
      const started = logEvents(proxy.logs, 'session started')[0]!;
      return {
        user: rows[0].user as string,
        ssl: rows[0].ssl as boolean,
        method: started.backend_auth,
        layer: started.backend_tls_layer,
        logs: proxy.logs.join('\n'),
      };
    } finally {
      await client.end().catch(() => {});
    }
  }

  async function refused(backendUrl: string, flags: string[] = []): Promise<{ code?: string; message: string; logs: string }> {
    await using proxy = await startTestProxy(['--insecure', '--auth', 'passthrough', '--ignoreUsername', '--backend', backendUrl, ...flags]);
    const client = new pg.Client({ connectionString: proxy.url('anyone') });
    try {
      await client.connect();
    } catch (err) {
      const e = err as { code?: string; message: string };
      return { code: e.code, message: e.message, logs: proxy.logs.join('\n') };
    } finally {
      await client.end().catch(() => {});
    }
    assert.fail('the connection should have been refused');
  }

  const u = (user: string, password: string | undefined, query: string) => `${cluster.url(user, password)}?${query}`;
  /** Whether the backend session runs over TLS, and on which layer. */
  const pick = (r: { ssl: boolean; layer: unknown }) => [r.ssl, r.layer];

  each('trust', async () => {
    const r = await through(u('postgres', undefined, 'sslmode=disable'));
    assert.deepEqual([r.user, r.ssl, r.method], ['postgres', false, 'trust']);
  });

  it15('cleartext password', async () => {
    const r = await through(u('clear_user', 'clear pw', 'sslmode=disable'));
    assert.deepEqual([r.user, r.method], ['clear_user', 'cleartext']);
    assert.ok(!r.logs.includes('clear pw'), 'the password is never logged');
  });

  each('md5, and md5 pass-the-hash', async () => {
    const r = await through(u('md5_user', 'md5 pw', 'sslmode=disable'));
    assert.deepEqual([r.user, r.method], ['md5_user', 'md5']);
    const hash = 'md5' + createHash('md5').update('md5 pw' + 'md5_user').digest('hex');
    const h = await through(u('md5_user', hash, 'sslmode=disable'));
    assert.deepEqual([h.user, h.method], ['md5_user', 'md5']);
  });

  it15("relays the backend's refusal of a wrong password with its own SQLSTATE", async () => {
    const r = await refused(u('scram_user', 'wrong', 'sslmode=disable'));
    assert.equal(r.code, '28P01');
    assert.match(r.message, /password authentication failed for user "scram_user"/);
    assert.ok(!r.logs.includes('wrong'));
  });

  // The cases with TLS to the backend run on both TLS layers: the native one (the default) and Node's (--no-nativeTls).
  for (const layer of ['node', 'native'] as const) {
    const flags = layer === 'native' ? ['--nativeTls'] : ['--no-nativeTls'];
    const via = (url: string) => through(url, 'anyone', flags);
    const refusedVia = (url: string) => refused(url, flags);

    each(`SCRAM-SHA-256 without TLS, SCRAM-SHA-256-PLUS with TLS (${layer} TLS)`, async () => {
      const plain = await via(u('scram_user', 'scräm pw', 'sslmode=disable'));
      assert.deepEqual([plain.user, plain.ssl, plain.method, plain.layer], ['scram_user', false, 'SCRAM-SHA-256', undefined]);
      const bound = await via(u('scram_user', 'scräm pw', 'sslmode=require'));
      assert.deepEqual([bound.user, bound.ssl, bound.method, bound.layer], ['scram_user', true, 'SCRAM-SHA-256-PLUS', layer]);
    });

    each(`TLS client certificate (${layer} TLS)`, async () => {
      const r = await via(u('certuser', undefined, `sslmode=verify-ca&sslrootcert=${ca.cert}&sslcert=${clientCert.cert}&sslkey=${clientCert.key}`));
      assert.deepEqual([r.user, r.ssl, r.layer], ['certuser', true, layer]);
    });

    it15(`sslmode prefer and require use TLS; disable does not (${layer} TLS)`, async () => {
      assert.deepEqual(pick(await via(u('ssl_only', undefined, 'sslmode=prefer'))), [true, layer]);
      assert.deepEqual(pick(await via(u('ssl_only', undefined, 'sslmode=require'))), [true, layer]);
      const r = await refusedVia(u('ssl_only', undefined, 'sslmode=disable'));
      assert.equal(r.code, '28000', 'the backend rejected the plaintext login itself');
    });

    it15(`sslmode allow and prefer fall back as libpq does when the server refuses the first try (${layer} TLS)`, async () => {
      assert.equal((await via(u('postgres', undefined, 'sslmode=allow'))).ssl, false, 'allow tries without TLS first');
      assert.deepEqual(pick(await via(u('ssl_only', undefined, 'sslmode=allow'))), [true, layer], 'allow retries with TLS after a refusal');
      assert.equal((await via(u('plain_only', undefined, 'sslmode=prefer'))).ssl, false, 'prefer retries without TLS after a refusal');
      const r = await refusedVia(u('plain_only', undefined, 'sslmode=require'));
      assert.equal(r.code, '28000', 'require never falls back');
    });

    it15(`verify-ca accepts the right CA and refuses another (08001) (${layer} TLS)`, async () => {
      assert.deepEqual(pick(await via(u('ssl_only', undefined, `sslmode=verify-ca&sslrootcert=${ca.cert}`))), [true, layer]);
      const r = await refusedVia(u('ssl_only', undefined, `sslmode=verify-ca&sslrootcert=${otherCa.cert}`));
      assert.equal(r.code, '08001');
      assert.match(r.message, /TLS handshake failed/);
    });

    each(`verify-full checks the host name (08001 on a mismatch) (${layer} TLS)`, async () => {
      const byName = `postgres://ssl_only@localhost:${cluster.port}/postgres?sslmode=verify-full&sslrootcert=${ca.cert}`;
      assert.deepEqual(pick(await via(byName)), [true, layer]);
      const r = await refusedVia(u('ssl_only', undefined, `sslmode=verify-full&sslrootcert=${ca.cert}`));
      assert.equal(r.code, '08001');
      assert.match(r.message, /127\.0\.0\.1/);
      // The native layer words it as libpq does (the CN counts as a name: there is no iPAddress).
      if (layer === 'native') assert.match(r.message, /server certificate for "localhost" \(and 1 other name\) does not match host name "127\.0\.0\.1"/);
    });
  }

  it15('an unreachable backend is 08001 and the proxy keeps serving', async () => {
    const r = await refused(`postgres://postgres@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=2`);
    assert.equal(r.code, '08001');
    assert.match(r.message, /could not connect to the backend/);
  });
});

describe('backend login: TLS demanded of a server without it', () => {
  it('sslmode=require against a plaintext-only server is 08001', async () => {
    await using cluster = await PgCluster.start({});
    await using proxy = await startTestProxy([
      '--insecure', '--auth', 'passthrough', '--backend', `${cluster.url('postgres')}?sslmode=require`,
    ]);
    const client = new pg.Client({ connectionString: proxy.url('postgres') });
    await assert.rejects(client.connect(), (e: { code?: string; message: string }) => e.code === '08001' && /does not accept TLS/.test(e.message));
  });
});
