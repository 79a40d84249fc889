import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { exportJWK, generateKeyPair, SignJWT, type JWTPayload } from 'jose';
import pg from 'pg';
import { TestCA } from '../helpers/certs.js';
import { PgCluster } from '../helpers/pg-cluster.js';
import { startPgwardProcess } from '../helpers/pgward-process.js';

// Password (jwt provider) logins with --oidcDiscovery and no --issuer: tokens must carry the
// discovery document's issuer as `iss`. The identity provider is a real https server on loopback
// with a certificate from a test CA, which the pgward process trusts through NODE_EXTRA_CA_CERTS.

const BIN = fileURLToPath(new URL('../../../bin/pgward.js', import.meta.url));
type Key = Awaited<ReturnType<typeof generateKeyPair>>;

describe('jwt provider: the issuer defaults to the --oidcDiscovery document\'s', () => {
  let cluster: PgCluster;
  let ca: TestCA;
  let idp: https.Server;
  let issuer: string;
  let key: Key;
  let base: string[];
  let env: NodeJS.ProcessEnv;

  before(async () => {
    cluster = await PgCluster.start({ users: [{ name: 'alice', password: 'a' }] });
    ca = await TestCA.create();
    const cert = await ca.issue('idp');
    key = await generateKeyPair('ES256', { extractable: true });
    const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(key.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' }] });
    idp = https.createServer({ cert: await readFile(cert.cert), key: await readFile(cert.key) }, (req, res) => {
      res.setHeader('content-type', 'application/json');
      if (req.url === '/.well-known/openid-configuration') res.end(JSON.stringify({ issuer, jwks_uri: `${issuer}/jwks.json` }));
      else if (req.url === '/jwks.json') res.end(jwks);
      else {
        res.statusCode = 404;
        res.end('{}');
      }
    });
    await new Promise<void>((r) => idp.listen(0, '127.0.0.1', r));
    issuer = `https://127.0.0.1:${(idp.address() as AddressInfo).port}`;
    await writeFile(join(ca.dir, 'backends.json'), JSON.stringify({ alice: `postgres://alice@127.0.0.1:${cluster.port}/postgres?sslmode=disable` }));
    base = ['--insecure', '--backends', join(ca.dir, 'backends.json'), '--oidcDiscovery', `${issuer}/.well-known/openid-configuration`];
    env = { NODE_EXTRA_CA_CERTS: ca.cert };
  });

  after(async () => {
    idp?.close();
    await cluster?.stop();
    await ca?.[Symbol.asyncDispose]();
  });

  const mint = (claims: JWTPayload) =>
    new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setIssuedAt().setExpirationTime('5m').sign(key.privateKey);

  async function login(port: number, claims: JWTPayload): Promise<{ user?: string; code?: string; message?: string; detail?: string }> {
    const c = new pg.Client({ connectionString: `postgres://alice:${await mint(claims)}@127.0.0.1:${port}/postgres?sslmode=disable` });
    try {
      await c.connect();
      return { user: (await c.query('select current_user as u')).rows[0].u };
    } catch (err) {
      const e = err as { code?: string; message: string; detail?: string };
      return { code: e.code, message: e.message, detail: e.detail };
    } finally {
      await c.end().catch(() => {});
    }
  }

  it('accepts the document\'s issuer as iss and refuses another or none with 28P01 and a clear detail', async () => {
    await using proxy = await startPgwardProcess(base, env);
    assert.deepEqual(await login(proxy.port, { sub: 'alice', iss: issuer }), { user: 'alice' });
    const other = await login(proxy.port, { sub: 'alice', iss: 'https://elsewhere.example.com' });
    assert.equal(other.code, '28P01');
    assert.equal(other.message, 'issuer mismatch');
    assert.match(other.detail ?? '', /an issuer this service does not accept \(iss\)/);
    const none = await login(proxy.port, { sub: 'alice' });
    assert.equal(none.code, '28P01');
    assert.equal(none.message, 'issuer mismatch');
    assert.match(none.detail ?? '', /names no issuer \(iss\); this service requires one/);
    assert.ok(proxy.events.some((e) => e.msg === 'authentication failed' && e.reason === 'issuer mismatch'));
  });

  it('--issuer, when given, is the one required (the document\'s is then refused)', async () => {
    await using proxy = await startPgwardProcess([...base, '--issuer', 'https://issuer.example.com'], env);
    assert.deepEqual(await login(proxy.port, { sub: 'alice', iss: 'https://issuer.example.com' }), { user: 'alice' });
    assert.equal((await login(proxy.port, { sub: 'alice', iss: issuer })).code, '28P01');
  });

  it('pgward check names the issuer in force and where it comes from', async () => {
    // Asynchronously: the https server above runs in this process.
    const check = (extra: string[]) =>
      new Promise<string>((resolve, reject) =>
        execFile(process.execPath, [BIN, 'check', ...base, ...extra], { env: { ...process.env, ...env }, timeout: 30_000 }, (err, stdout, stderr) =>
          err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
        ),
      );
    assert.match(await check([]), new RegExp(`^issuer: ${issuer.replace(/\./g, '\\.')} \\(from the --oidcDiscovery document\\)$`, 'm'));
    assert.match(await check(['--issuer', 'https://issuer.example.com']), /^issuer: https:\/\/issuer\.example\.com$/m);
  });
});
