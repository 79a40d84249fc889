import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { exportSPKI, generateKeyPair, SignJWT, type JWTPayload } from 'jose';
import pg from 'pg';
import { scramKeys } from '../../src/backend/scram.js';
import { buildProxyConfig } from '../../src/config/proxy-config.js';
import { TestCA } from '../helpers/certs.js';
import { PgCluster } from '../helpers/pg-cluster.js';
import { logEvents, startTestProxy, type TestProxy } from '../helpers/proxy.js';

type Key = Awaited<ReturnType<typeof generateKeyPair>>;

function mint(key: Key, claims: JWTPayload, exp: number | string = '10m'): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA' }).setIssuedAt().setExpirationTime(exp).sign(key.privateKey);
}

/** Logs in and asks the backend who it is; the error's code and message when the login fails. */
async function login(proxy: TestProxy, user: string, token: string, db = 'postgres'): Promise<{ pid?: number; auth?: string; code?: string; message?: string }> {
  const c = new pg.Client({ connectionString: proxy.url(user, token, db) });
  c.on('error', () => {});
  try {
    await c.connect();
    if (db === 'pgward') return {};
    const r = await c.query('select pg_backend_pid() as pid');
    return { pid: r.rows[0].pid };
  } catch (err) {
    const e = err as { code?: string; message: string };
    return { code: e.code, message: e.message };
  } finally {
    await c.end().catch(() => {});
  }
}

describe('cheap logins: what is kept between logins, and what is still checked at each', () => {
  let ca: TestCA;
  let cluster: PgCluster;
  let dir: string;
  let key: Key;
  let args: string[];
  let proxy: TestProxy;

  before(async () => {
    ca = await TestCA.create();
    cluster = await PgCluster.start({
      ssl: await ca.issue('server'),
      hba: ['host all all 127.0.0.1/32 scram-sha-256'],
      users: [{ name: 'alice', password: 'alice scram pw' }, { name: 'bob', password: 'bob scram pw' }],
    });
    dir = await mkdtemp(join(tmpdir(), 'pgward-login-cost-'));
    key = await generateKeyPair('EdDSA', { extractable: true });
    await writeFile(join(dir, 'key.pem'), await exportSPKI(key.publicKey));
    await writeFile(
      join(dir, 'backends.json'),
      JSON.stringify({
        alice: `postgres://alice:${encodeURIComponent('alice scram pw')}@127.0.0.1:${cluster.port}/postgres?sslmode=disable`,
        bob: `postgres://bob:${encodeURIComponent('bob scram pw')}@127.0.0.1:${cluster.port}/postgres?sslmode=require`,
      }),
    );
    await writeFile(join(dir, 'pgward.yaml'), 'admin:\n  subjects: [root]\n');
    args = [
      '--insecure', '--config', join(dir, 'pgward.yaml'), '--backends', join(dir, 'backends.json'),
      '--signingKeys', join(dir, 'key.pem'), '--revocations', join(dir, 'revocations.yaml'), '--clockTolerance', '0s',
      // Each login must open a backend connection of its own here: these cases are about what a
      // new backend login reuses (the pool would hand the second login the first one's backend).
      '--poolMode', 'off',
    ];
    proxy = await startTestProxy(args);
  });

  after(async () => {
    await proxy?.close();
    await cluster?.stop();
    await ca?.[Symbol.asyncDispose]();
    await rm(dir, { recursive: true, force: true });
  });

  for (const [user, method] of [['alice', 'SCRAM-SHA-256'], ['bob', 'SCRAM-SHA-256-PLUS']] as const) {
    it(`a second login to a ${method} backend reuses the derived keys, and the backend accepts it`, async () => {
      const before = { hits: scramKeys.hits, misses: scramKeys.misses };
      const first = await login(proxy, user, await mint(key, { sub: user }));
      const second = await login(proxy, user, await mint(key, { sub: user, n: 2 }));
      assert.ok(first.pid && second.pid && first.pid !== second.pid, `two backend sessions: ${JSON.stringify([first, second])}`);
      assert.deepEqual([scramKeys.misses - before.misses, scramKeys.hits - before.hits], [1, 1]);
      const started = logEvents(proxy.logs, 'session started').filter((e) => e.user === user);
      assert.deepEqual(started.slice(-2).map((e) => e.backend_auth), [method, method]);
    });
  }

  it('a backend whose password changed refuses the kept keys (new salt), and the next login with the new password works', async () => {
    await cluster.sql("ALTER ROLE alice PASSWORD 'alice new pw'");
    const refused = await login(proxy, 'alice', await mint(key, { sub: 'alice' }));
    assert.equal(refused.code, '28P01', JSON.stringify(refused));
    await cluster.sql("ALTER ROLE alice PASSWORD 'alice scram pw'");
    assert.ok((await login(proxy, 'alice', await mint(key, { sub: 'alice' }))).pid);
  });

  it('a token used for many logins is refused as soon as it is revoked (console REVOKE, no reload)', async () => {
    const token = await mint(key, { sub: 'alice', jti: 'ci-job-7' });
    for (let i = 0; i < 3; i++) assert.ok((await login(proxy, 'alice', token)).pid);
    const admin = new pg.Client({ connectionString: proxy.url('root', await mint(key, { sub: 'root' }), 'pgward') });
    await admin.connect();
    try {
      await admin.query(`REVOKE TOKEN 'ci-job-7'`);
      const refused = await login(proxy, 'alice', token);
      assert.equal(refused.code, '28P01');
      assert.match(refused.message ?? '', /token revoked/);
      await admin.query(`UNREVOKE TOKEN 'ci-job-7'`);
      assert.ok((await login(proxy, 'alice', token)).pid);
    } finally {
      await admin.end();
    }
  });

  it('a token used for many logins is refused once it expires', async () => {
    const exp = Math.floor(Date.now() / 1000) + 2;
    const token = await mint(key, { sub: 'alice' }, exp);
    assert.ok((await login(proxy, 'alice', token)).pid);
    assert.ok((await login(proxy, 'alice', token)).pid);
    await new Promise((r) => setTimeout(r, exp * 1000 - Date.now() + 50));
    const refused = await login(proxy, 'alice', token);
    assert.equal(refused.code, '28P01');
    assert.match(refused.message ?? '', /token expired/);
  });

  it('a reload that removes the signing key refuses a token used before it', async () => {
    const token = await mint(key, { sub: 'alice' });
    for (let i = 0; i < 2; i++) assert.ok((await login(proxy, 'alice', token)).pid);
    const other = await generateKeyPair('EdDSA', { extractable: true });
    await writeFile(join(dir, 'key.pem'), await exportSPKI(other.publicKey));
    await proxy.proxy.reload(buildProxyConfig(['--bindAddr', '127.0.0.1:0', ...args], {}));
    const refused = await login(proxy, 'alice', token);
    assert.equal(refused.code, '28P01');
    assert.match(refused.message ?? '', /signature invalid/);
    assert.ok((await login(proxy, 'alice', await mint(other, { sub: 'alice' }))).pid, 'the new key works');
    await writeFile(join(dir, 'key.pem'), await exportSPKI(key.publicKey));
    await proxy.proxy.reload(buildProxyConfig(['--bindAddr', '127.0.0.1:0', ...args], {}));
  });
});
