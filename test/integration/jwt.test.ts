import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type JWTPayload } from 'jose';
import pg from 'pg';
import postgres from 'postgres';
import { PgCluster } from '../helpers/pg-cluster.js';
import { runPsql } from '../helpers/psql.js';
import { startTestProxy, type TestProxy } from '../helpers/proxy.js';

type Key = Awaited<ReturnType<typeof generateKeyPair>>;

async function mint(key: Key, alg: string, claims: JWTPayload, opts: { kid?: string; exp?: string | number; nbf?: string | number } = {}) {
  const jwt = new SignJWT(claims).setProtectedHeader({ alg, ...(opts.kid ? { kid: opts.kid } : {}) }).setIssuedAt();
  if (opts.exp !== undefined) jwt.setExpirationTime(opts.exp);
  else jwt.setExpirationTime('5m');
  if (opts.nbf !== undefined) jwt.setNotBefore(opts.nbf);
  return jwt.sign(key.privateKey);
}

/** Connects as `user` with `token` as the password; returns [current_user, application_name] or the error. */
async function login(proxy: TestProxy, user: string, token: string): Promise<{ user?: string; app?: string; code?: string; message?: string }> {
  const c = new pg.Client({ connectionString: proxy.url(user, token) });
  try {
    await c.connect();
    const r = await c.query("select current_user as u, current_setting('application_name') as a");
    return { user: r.rows[0].u, app: r.rows[0].a };
  } catch (err) {
    const e = err as { code?: string; message: string };
    return { code: e.code, message: e.message };
  } finally {
    await c.end().catch(() => {});
  }
}

describe('jwt provider: verification and routing', () => {
  let cluster: PgCluster;
  let dir: string;
  let ed: Key;
  let es: Key;
  let stranger: Key;
  let proxy: TestProxy;
  let backendsPath: string;

  before(async () => {
    cluster = await PgCluster.start({
      hba: ['host all all 127.0.0.1/32 scram-sha-256'],
      users: [{ name: 'alice', password: 'alice-pw' }, { name: 'bob', password: 'bob-pw' }, { name: 'app', password: 'app-pw' }],
    });
    dir = await mkdtemp(join(tmpdir(), 'pgward-jwt-'));
    ed = await generateKeyPair('EdDSA', { extractable: true });
    es = await generateKeyPair('ES256', { extractable: true });
    stranger = await generateKeyPair('EdDSA', { extractable: true });
    await writeFile(join(dir, 'ed.pem'), await exportSPKI(ed.publicKey));
    await writeFile(join(dir, 'es.pem'), await exportSPKI(es.publicKey));
    const db = (u: string, p: string) => `postgres://${u}:${p}@127.0.0.1:${cluster.port}/postgres?sslmode=disable`;
    backendsPath = join(dir, 'backends.json');
    await writeFile(
      backendsPath,
      JSON.stringify({
        alice: db('alice', 'alice-pw'),
        bob: db('bob', 'bob-pw'),
        '/^team-(?<team>[a-z]+)$/': { url: db('app', 'app-pw'), application_name: 'pgward-{claim.sub}' },
        '/^schema-user$/': { url: db('app', 'app-pw'), options: '-c search_path={claim.schema}' },
      }),
    );
    proxy = await startTestProxy([
      '--insecure', '--backends', backendsPath, '--signingKeys', `${join(dir, 'ed.pem')},${join(dir, 'es.pem')}`,
      '--audience', 'pgward-test', '--clockTolerance', '5s',
    ]);
  });

  after(async () => {
    await proxy?.close();
    await cluster?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('logs in with a valid token (EdDSA and ES256) through pg, postgres.js and psql', async () => {
    assert.deepEqual(await login(proxy, 'alice', await mint(ed, 'EdDSA', { sub: 'alice', aud: 'pgward-test' })), { user: 'alice', app: '' });
    assert.equal((await login(proxy, 'bob', await mint(es, 'ES256', { sub: 'bob', aud: 'pgward-test' }))).user, 'bob');
    const token = await mint(ed, 'EdDSA', { sub: 'alice', aud: 'pgward-test' });
    const sql = postgres(proxy.url('alice'), { password: token, max: 1 });
    assert.equal((await sql`select current_user as u`)[0]!.u, 'alice');
    await sql.end();
    const r = await runPsql([proxy.url('alice'), '-c', 'select current_user'], { PGPASSWORD: token });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'alice');
  });

  it('refuses bad tokens with 28P01 and a reason, never echoing the token', async () => {
    const cases: [string, string, RegExp][] = [
      ['expired', await mint(ed, 'EdDSA', { sub: 'alice', aud: 'pgward-test' }, { exp: Math.floor(Date.now() / 1000) - 60 }), /token expired/],
      ['not yet valid', await mint(ed, 'EdDSA', { sub: 'alice', aud: 'pgward-test' }, { nbf: Math.floor(Date.now() / 1000) + 600 }), /token not yet valid/],
      ['unknown signer', await mint(stranger, 'EdDSA', { sub: 'alice', aud: 'pgward-test' }), /signature invalid/],
      ['audience', await mint(ed, 'EdDSA', { sub: 'alice', aud: 'someone-else' }), /audience mismatch/],
      ['malformed', 'not.a.jwt', /malformed token/],
      ['alg none', `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from('{"sub":"alice"}').toString('base64url')}.`, /algorithm not allowed|malformed token/],
    ];
    for (const [name, token, reason] of cases) {
      const r = await login(proxy, 'alice', token);
      assert.equal(r.code, '28P01', name);
      assert.match(r.message ?? '', reason, name);
      const secretParts = [token, ...token.split('.').filter((p) => p.length >= 12)];
      assert.ok(secretParts.every((p) => !(r.message ?? '').includes(p)), `${name}: token not echoed`);
    }
    const logs = proxy.logs.join('\n');
    for (const [, token] of cases) assert.ok(!logs.includes(token), 'no token in the logs');
  });

  it('refuses a token with no backend, or for another user, with 28000', async () => {
    const carol = await login(proxy, 'carol', await mint(ed, 'EdDSA', { sub: 'carol', aud: 'pgward-test' }));
    assert.equal(carol.code, '28000');
    assert.match(carol.message ?? '', /no backend is configured/);
    const mismatch = await login(proxy, 'bob', await mint(ed, 'EdDSA', { sub: 'alice', aud: 'pgward-test' }));
    assert.equal(mismatch.code, '28000');
    assert.match(mismatch.message ?? '', /does not match the token/);
  });

  it('routes by regex with templates from claims', async () => {
    const r = await login(proxy, 'app', await mint(ed, 'EdDSA', { sub: 'team-red', aud: 'pgward-test' }));
    assert.deepEqual(r, { user: 'app', app: 'pgward-team-red' });
    const no = await login(proxy, 'app', await mint(ed, 'EdDSA', { sub: 'team-red/x?sslmode=disable', aud: 'pgward-test' }));
    assert.equal(no.code, '28000', 'an injected claim matches no route');
  });

  it('refuses claims that would inject startup options', async () => {
    const ok = await login(proxy, 'app', await mint(ed, 'EdDSA', { sub: 'schema-user', schema: 'public', aud: 'pgward-test' }));
    assert.equal(ok.user, 'app');
    for (const schema of ['public -c statement_timeout=1', 'a\\ b', 'x\n', 'y'.repeat(300)]) {
      const r = await login(proxy, 'app', await mint(ed, 'EdDSA', { sub: 'schema-user', schema, aud: 'pgward-test' }));
      assert.equal(r.code, '28000', JSON.stringify(schema));
    }
  });
});

describe('jwt provider: remote JWKS and OIDC discovery', () => {
  it('fetches keys by kid, refetches on an unknown kid, and follows OIDC discovery', async () => {
    await using cluster = await PgCluster.start({ hba: ['host all all 127.0.0.1/32 scram-sha-256'], users: [{ name: 'alice', password: 'pw' }] });
    const dir = await mkdtemp(join(tmpdir(), 'pgward-jwks-'));
    const k1 = await generateKeyPair('ES256', { extractable: true });
    const k2 = await generateKeyPair('ES256', { extractable: true });
    let served = [{ ...(await exportJWK(k1.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' }];
    let fetches = 0;
    const server = http.createServer((req, res) => {
      if (req.url === '/jwks.json') {
        fetches++;
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ keys: served }));
      } else if (req.url === '/.well-known/openid-configuration') {
        const { port } = server.address() as AddressInfo;
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ issuer: 'http://127.0.0.1', jwks_uri: `http://127.0.0.1:${port}/jwks.json` }));
      } else {
        res.statusCode = 404;
        res.end();
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    try {
      const backends = join(dir, 'backends.json');
      await writeFile(backends, JSON.stringify({ alice: `${cluster.url('alice', 'pw')}?sslmode=disable` }));
      await using proxy = await startTestProxy([
        '--insecure', '--backends', backends, '--signingKeys', `http://127.0.0.1:${port}/jwks.json`, '--jwksCooldown', '200ms',
      ]);
      assert.equal((await login(proxy, 'alice', await mint(k1, 'ES256', { sub: 'alice' }, { kid: 'k1' }))).user, 'alice');
      const before = fetches;
      served = [...served, { ...(await exportJWK(k2.publicKey)), kid: 'k2', alg: 'ES256', use: 'sig' }];
      await new Promise((r) => setTimeout(r, 300));
      assert.equal((await login(proxy, 'alice', await mint(k2, 'ES256', { sub: 'alice' }, { kid: 'k2' }))).user, 'alice');
      assert.ok(fetches > before, 'an unknown kid made the proxy refetch');
      const unknown = await login(proxy, 'alice', await mint(k2, 'ES256', { sub: 'alice' }, { kid: 'k3' }));
      assert.equal(unknown.code, '28P01');
      assert.match(unknown.message ?? '', /unknown key id/);

      await using oidc = await startTestProxy([
        '--insecure', '--backends', backends, '--oidcDiscovery', `http://127.0.0.1:${port}/.well-known/openid-configuration`,
      ]);
      // The discovery document's issuer is required as iss (no --issuer given).
      assert.equal((await login(oidc, 'alice', await mint(k1, 'ES256', { sub: 'alice', iss: 'http://127.0.0.1' }, { kid: 'k1' }))).user, 'alice');
      assert.equal((await login(oidc, 'alice', await mint(k1, 'ES256', { sub: 'alice' }, { kid: 'k1' }))).code, '28P01');
    } finally {
      server.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

/**
 * Runs `test` with a pg client (not yet connected) for a pgward with `--expiryWarning warning`
 * in front of a real cluster, its password a token expiring `expiresIn` seconds from now (the
 * expiry, in seconds since the epoch, is passed along), and the notices it receives.
 */
async function withExpiringToken(
  warning: string,
  expiresIn: number,
  test: (client: pg.Client, notices: string[], exp: number, another: () => pg.Client) => Promise<void>,
): Promise<void> {
  await using cluster = await PgCluster.start({ hba: ['host all all 127.0.0.1/32 scram-sha-256'], users: [{ name: 'alice', password: 'pw' }] });
  const dir = await mkdtemp(join(tmpdir(), 'pgward-exp-'));
  try {
    const key = await generateKeyPair('EdDSA', { extractable: true });
    await writeFile(join(dir, 'k.pem'), await exportSPKI(key.publicKey));
    await writeFile(join(dir, 'b.json'), JSON.stringify({ alice: `${cluster.url('alice', 'pw')}?sslmode=disable` }));
    await using proxy = await startTestProxy([
      '--insecure', '--backends', join(dir, 'b.json'), '--signingKeys', join(dir, 'k.pem'),
      '--clockTolerance', '0s', '--expiryWarning', warning,
    ]);
    const exp = Math.floor(Date.now() / 1000) + expiresIn;
    const url = proxy.url('alice', await mint(key, 'EdDSA', { sub: 'alice' }, { exp }));
    const client = new pg.Client({ connectionString: url });
    const notices: string[] = [];
    client.on('notice', (n) => notices.push(n.message ?? ''));
    await test(client, notices, exp, () => new pg.Client({ connectionString: url }));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe('jwt provider: token lifetime', () => {
  it('warns before expiry and closes the session at its first idle point after it', async () => {
    await withExpiringToken('2s', 3, async (client, notices, exp) => {
      const closed = new Promise<{ code?: string; message: string }>((resolve) => client.on('error', resolve));
      await client.connect();
      await client.query('begin');
      await new Promise((r) => setTimeout(r, Math.max(0, exp * 1000 - Date.now()) + 800));
      // Expired, but inside a transaction: it may finish.
      assert.deepEqual((await client.query('select 1 as still')).rows, [{ still: 1 }]);
      await client.query('commit');
      const err = await closed;
      assert.equal(err.code, '28P01');
      assert.match(err.message, /token expired/);
      assert.ok(notices.some((n) => /token expires in/.test(n)), `warned first: ${JSON.stringify(notices)}`);
      await client.end().catch(() => {});
    });
  });

  it('closes every session of one token at its expiry, whichever of them ended before', async () => {
    await withExpiringToken('0s', 3, async (first, _notices, exp, another) => {
      const sessions = [first, another(), another()];
      const closed = sessions.map((c) => new Promise<{ code?: string }>((resolve) => c.on('error', (err: Error & { code?: string }) => resolve(err))));
      for (const c of sessions) await c.connect();
      // The first to log in leaves early: the others still wait for the same moment.
      await sessions[0]!.end();
      await new Promise((r) => setTimeout(r, Math.max(0, exp * 1000 - Date.now()) + 800));
      for (const [i, c] of sessions.slice(1).entries()) {
        const err = await Promise.race([closed[i + 1]!, new Promise<{ code?: string }>((r) => setTimeout(() => r({ code: 'still open' }), 5000))]);
        assert.equal(err.code, '28P01', `session ${i + 1}`);
        await c.end().catch(() => {});
      }
    });
  });

  it('warns at login when the token already expires within the warning window', async () => {
    await withExpiringToken('1h', 600, async (client, notices) => {
      await client.connect();
      try {
        assert.deepEqual((await client.query('select 1 as ok')).rows, [{ ok: 1 }]);
        assert.ok(notices.some((n) => /token expires in \d+ s/.test(n)), `warned: ${JSON.stringify(notices)}`);
      } finally {
        await client.end();
      }
    });
  });
});
