import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { exportSPKI, generateKeyPair, SignJWT } from 'jose';
import pg from 'pg';
import postgres from 'postgres';
import { PgCluster } from '../helpers/pg-cluster.js';
import { runPsql } from '../helpers/psql.js';
import { startTestProxy, type TestProxy } from '../helpers/proxy.js';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));
type Key = Awaited<ReturnType<typeof generateKeyPair>>;

describe('proxy-login plugin: SELECT proxy_login(<jwt>)', () => {
  let cluster: PgCluster;
  let dir: string;
  let key: Key;
  let proxy: TestProxy;
  const mint = (sub: string, exp: string | number = '5m') =>
    new SignJWT({ sub }).setProtectedHeader({ alg: 'EdDSA' }).setIssuedAt().setExpirationTime(exp).sign(key.privateKey);

  before(async () => {
    cluster = await PgCluster.start({ hba: ['host all all 127.0.0.1/32 scram-sha-256'], users: [{ name: 'alice', password: 'alice-pw' }] });
    dir = await mkdtemp(join(tmpdir(), 'pgward-plogin-'));
    key = await generateKeyPair('EdDSA', { extractable: true });
    await writeFile(join(dir, 'key.pem'), await exportSPKI(key.publicKey));
    await writeFile(join(dir, 'backends.json'), JSON.stringify({ alice: `${cluster.url('alice', 'alice-pw')}?sslmode=disable` }));
    await writeFile(
      join(dir, 'pgward.yaml'),
      `plugins: ["${join(REPO, 'plugins/proxy-login')}"]\nauth:\n  provider: proxy-login\n  maxAttempts: 3\npipeline:\n  - drain-gate\n  - query-log\n`,
    );
    proxy = await startTestProxy(['--insecure', '--config', join(dir, 'pgward.yaml'), '--backends', join(dir, 'backends.json'), '--signingKeys', join(dir, 'key.pem')]);
  });

  after(async () => {
    await proxy?.close();
    await cluster?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('logs in with psql (simple protocol) and relays the rest of the session', async () => {
    const token = await mint('alice');
    const r = await runPsql([proxy.url('anybody'), '-c', `SELECT proxy_login('${token}')`, '-c', 'select current_user']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), ['alice', 'alice']);
  });

  it('logs in with pg using the extended protocol and the token as a bind parameter', async () => {
    const client = new pg.Client({ connectionString: proxy.url('anybody') });
    await client.connect();
    try {
      const login = await client.query('SELECT proxy_login($1)', [await mint('alice')]);
      assert.deepEqual(login.rows, [{ proxy_login: 'alice' }]);
      const who = await client.query('select current_user as u, $1::int as n', [7]);
      assert.deepEqual(who.rows, [{ u: 'alice', n: 7 }]);
    } finally {
      await client.end();
    }
  });

  it('answers other statements before login with 28000 and a hint; retries are allowed', async () => {
    const client = new pg.Client({ connectionString: proxy.url('anybody') });
    await client.connect();
    try {
      await assert.rejects(client.query('select 1'), (e: { code?: string; hint?: string }) => e.code === '28000' && /proxy_login/.test(e.hint ?? ''));
      await assert.rejects(client.query('select $1::int', [1]), (e: { code?: string }) => e.code === '28000');
      const expired = await mint('alice', Math.floor(Date.now() / 1000) - 120);
      await assert.rejects(client.query(`SELECT proxy_login('${expired}')`), (e: { code?: string; message: string }) => e.code === '28P01' && /token expired/.test(e.message));
      await assert.rejects(client.query(`SELECT proxy_login('garbage')`), (e: { code?: string }) => e.code === '28P01');
      const ok = await client.query(`SELECT proxy_login('${await mint('alice')}')`);
      assert.deepEqual(ok.rows, [{ proxy_login: 'alice' }]);
      assert.equal((await client.query('select current_user as u')).rows[0].u, 'alice');
    } finally {
      await client.end();
    }
    const logs = proxy.logs.join('\n');
    assert.ok(!/eyJ[\w-]+\.eyJ/.test(logs), 'no token in the logs');
  });

  it('closes the connection after too many failed attempts', async () => {
    const client = new pg.Client({ connectionString: proxy.url('anybody') });
    client.on('error', () => {});
    await client.connect();
    await assert.rejects(client.query(`SELECT proxy_login('x')`));
    await assert.rejects(client.query(`SELECT proxy_login('y')`));
    await assert.rejects(client.query(`SELECT proxy_login('z')`), (e: { message: string }) => /too many failed login attempts/.test(e.message));
    await assert.rejects(client.query('select 1'));
  });

  it('cancels a query after login through the key issued before login', async () => {
    // postgres.js looks up types with its own query before the first statement; before login that is refused.
    const sql = postgres(proxy.url('anybody'), { max: 1, fetch_types: false });
    try {
      await sql.unsafe(`SELECT proxy_login('${await mint('alice')}')`);
      const q = sql`select pg_sleep(20)`;
      const cancelled = assert.rejects(q.execute(), (e: { code?: string }) => e.code === '57014');
      await new Promise((r) => setTimeout(r, 300));
      await q.cancel();
      await cancelled;
    } finally {
      await sql.end();
    }
  });
});
