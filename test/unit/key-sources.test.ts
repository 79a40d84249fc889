import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { SignJWT, exportJWK, exportPKCS8, exportSPKI, generateKeyPair, importPKCS8, type CryptoKey, type JWK } from 'jose';
import { KeySourceUnavailableError, loadKeySet, type KeySet, type LoadKeySetOptions } from '../../src/auth/key-sources.js';
import { TokenError, verifyToken } from '../../src/auth/jwt-verify.js';

const execFileAsync = promisify(execFile);
const ALGS = ['EdDSA', 'ES256', 'ES384', 'RS256', 'PS256'];
const VERIFY = { algorithms: ALGS, clockToleranceSec: 30, requireExp: true };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let dir: string;
let ed: { publicKey: CryptoKey; privateKey: CryptoKey };
let es: { publicKey: CryptoKey; privateKey: CryptoKey };

async function token(privateKey: CryptoKey, alg: string, kid?: string): Promise<string> {
  return new SignJWT({})
    .setProtectedHeader({ alg, ...(kid ? { kid } : {}) })
    .setSubject('alice')
    .setIssuedAt()
    .setExpirationTime('1h')
    .sign(privateKey);
}

async function file(name: string, content: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, content);
  return path;
}

async function loadFails(opts: Partial<LoadKeySetOptions>, ...patterns: RegExp[]): Promise<Error> {
  let caught: unknown;
  try {
    const ks = await loadKeySet({ signingKeys: [], algorithms: ALGS, ...opts });
    ks.close?.();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof Error, 'expected loadKeySet to fail');
  for (const p of patterns) assert.match(caught.message, p);
  return caught;
}

async function jwkOf(pub: CryptoKey, kid: string): Promise<JWK> {
  return { ...(await exportJWK(pub)), kid, use: 'sig' };
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pgward-keys-'));
  ed = await generateKeyPair('EdDSA', { extractable: true });
  es = await generateKeyPair('ES256', { extractable: true });
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('loadKeySet: PEM', () => {
  it('loads an SPKI public key file and verifies tokens with it, whatever their kid', async () => {
    const path = await file('ed.pem', await exportSPKI(ed.publicKey));
    const keys = await loadKeySet({ signingKeys: [path], algorithms: ALGS });
    assert.equal((await verifyToken(await token(ed.privateKey, 'EdDSA'), keys, VERIFY)).claims.sub, 'alice');
    assert.equal((await verifyToken(await token(ed.privateKey, 'EdDSA', 'any-kid'), keys, VERIFY)).claims.sub, 'alice');
    const lines = keys.describe().join('\n');
    assert.match(lines, /ed\.pem/);
    assert.match(lines, /Ed25519/);
  });

  it('accepts several PEM blocks in one file, and PEM given inline (even on one line)', async () => {
    const both = `${await exportSPKI(ed.publicKey)}\n${await exportSPKI(es.publicKey)}`;
    const path = await file('both.pem', both);
    const keys = await loadKeySet({ signingKeys: [path], algorithms: ALGS });
    await verifyToken(await token(ed.privateKey, 'EdDSA'), keys, VERIFY);
    await verifyToken(await token(es.privateKey, 'ES256'), keys, VERIFY);
    assert.equal(keys.describe().filter((l) => l.includes('both.pem')).length, 2);

    const oneLine = (await exportSPKI(es.publicKey)).replace(/\n/g, ' ');
    const inline = await loadKeySet({ signingKeys: [oneLine], algorithms: ALGS });
    await verifyToken(await token(es.privateKey, 'ES256'), inline, VERIFY);
  });

  it('loads X.509 certificates made with openssl (EC and RSA, two in one file)', async () => {
    const make = async (name: string, keyArgs: string[]) => {
      const key = join(dir, `${name}.key`);
      const cert = join(dir, `${name}.crt`);
      await execFileAsync('openssl', ['req', '-x509', ...keyArgs, '-nodes', '-keyout', key, '-out', cert, '-subj', `/CN=${name}`, '-days', '2']);
      return { key: await readFile(key, 'utf8'), cert: await readFile(cert, 'utf8') };
    };
    const ecCert = await make('signer-ec', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1']);
    const rsaCert = await make('signer-rsa', ['-newkey', 'rsa:2048']);
    const path = await file('certs.pem', ecCert.cert + rsaCert.cert);
    const keys = await loadKeySet({ signingKeys: [path], algorithms: ALGS });

    const ecToken = await token(await importPKCS8(ecCert.key, 'ES256'), 'ES256');
    const rsToken = await token(await importPKCS8(rsaCert.key, 'RS256'), 'RS256');
    const psToken = await token(await importPKCS8(rsaCert.key, 'PS256'), 'PS256');
    for (const t of [ecToken, rsToken, psToken]) assert.equal((await verifyToken(t, keys, VERIFY)).claims.sub, 'alice');
    const lines = keys.describe().join('\n');
    assert.match(lines, /certificate/);
    assert.match(lines, /CN=signer-ec/);
    assert.match(lines, /RSA 2048-bit \(RS256, PS256\)/);

    // A token from another key still fails.
    const stranger = await generateKeyPair('ES256');
    await assert.rejects(verifyToken(await token(stranger.privateKey, 'ES256'), keys, VERIFY), (e: unknown) => e instanceof TokenError && e.reason === 'signature invalid');
  });

  it('refuses a private key, naming the file and never showing the key', async () => {
    const pkcs8 = await exportPKCS8(ed.privateKey);
    const path = await file('private.pem', pkcs8);
    const err = await loadFails({ signingKeys: [path] }, /private\.pem/, /private key/);
    const body = pkcs8.split('\n')[1]!;
    assert.ok(!err.message.includes(body), 'key material in the error');
    await loadFails({ signingKeys: [pkcs8.replace(/\n/g, ' ')] }, /inline PEM #1/, /private key/);
  });

  it('refuses keys that fit no allowed algorithm, small RSA keys, and unreadable files', async () => {
    await loadFails({ signingKeys: [await file('es.pem', await exportSPKI(es.publicKey))], algorithms: ['EdDSA'] }, /es\.pem/, /fits none of the allowed algorithms/, /ES256/);
    const small = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    await loadFails({ signingKeys: [await file('small.pem', small)] }, /small\.pem/, /1024 bits is too small/);
    await loadFails({ signingKeys: [join(dir, 'missing.pem')] }, /missing\.pem/, /ENOENT/);
    await loadFails({ signingKeys: [await file('junk.pem', 'hello')] }, /junk\.pem/, /neither PEM/);
    await loadFails({ signingKeys: [await file('broken.pem', '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n')] }, /broken\.pem/, /cannot parse/);
  });

  it('refuses a configuration without keys and unknown algorithm names', async () => {
    await loadFails({ signingKeys: [] }, /no signing keys configured/);
    await loadFails({ signingKeys: [' ', ''] }, /no signing keys configured/);
    const path = await file('ed2.pem', await exportSPKI(ed.publicKey));
    await loadFails({ signingKeys: [path], algorithms: ['ES265'] }, /unsupported algorithm "ES265"/);
    await loadFails({ signingKeys: [path], algorithms: ['none', 'HS256'] }, /no usable algorithm/);
    const keys = await loadKeySet({ signingKeys: [path], algorithms: ['EdDSA', 'none', 'HS256'] });
    assert.match(keys.describe()[0]!, /ignored, never accepted: none, HS256/);
  });
});

describe('loadKeySet: JWKS files', () => {
  it('loads a JWKS file and selects keys by kid', async () => {
    const path = await file('keys.json', JSON.stringify({ keys: [await jwkOf(ed.publicKey, 'ed-1'), await jwkOf(es.publicKey, 'es-1')] }));
    const keys = await loadKeySet({ signingKeys: [path], algorithms: ALGS });
    await verifyToken(await token(ed.privateKey, 'EdDSA', 'ed-1'), keys, VERIFY);
    await verifyToken(await token(es.privateKey, 'ES256', 'es-1'), keys, VERIFY);
    await verifyToken(await token(es.privateKey, 'ES256'), keys, VERIFY); // no kid: the only ES256 key
    await assert.rejects(verifyToken(await token(ed.privateKey, 'EdDSA', 'ed-2'), keys, VERIFY), (e: unknown) => e instanceof TokenError && e.reason === 'unknown key id');
    assert.match(keys.describe().join('\n'), /keys\.json: 2 keys, kid ed-1, es-1/);
  });

  it('refuses private or symmetric keys, bad JSON and documents without keys', async () => {
    const priv = { ...(await exportJWK(ed.privateKey)), kid: 'p' };
    const err = await loadFails({ signingKeys: [await file('priv.json', JSON.stringify({ keys: [priv] }))] }, /priv\.json/, /private or symmetric/);
    assert.ok(!err.message.includes(priv.d!), 'private key material in the error');
    await loadFails({ signingKeys: [await file('oct.json', JSON.stringify({ keys: [{ kty: 'oct', k: 'c2VjcmV0' }] }))] }, /oct\.json/, /private or symmetric/);
    await loadFails({ signingKeys: [await file('bad.json', '{"keys": [')] }, /bad\.json/, /not valid JSON/);
    await loadFails({ signingKeys: [await file('nokeys.json', '{"kty": "OKP"}')] }, /nokeys\.json/, /not a JWKS document/);
    await loadFails({ signingKeys: [await file('empty.json', '{"keys": []}')] }, /empty\.json/, /no usable signing key/);
    const enc = { ...(await exportJWK(es.publicKey)), use: 'enc' };
    await loadFails({ signingKeys: [await file('enc.json', JSON.stringify({ keys: [enc] }))] }, /enc\.json/, /no usable signing key/, /not a signing key/);
    await loadFails({ signingKeys: [await file('garbage.json', JSON.stringify({ keys: [{ kty: 'EC', crv: 'P-256', x: 'AA', y: 'AA' }] }))] }, /garbage\.json/, /key #1 is not a usable key/);
  });
});

// ------------------------------------------------------------------------------------------------

interface TestServer {
  base: string;
  hits: Map<string, number>;
  jwks: { keys: JWK[] };
  /** Per-path override; return true when handled. */
  handlers: Map<string, (req: IncomingMessage, res: ServerResponse) => void>;
  close(): Promise<void>;
}

async function startServer(): Promise<TestServer> {
  const state = {
    hits: new Map<string, number>(),
    jwks: { keys: [] as JWK[] },
    handlers: new Map<string, (req: IncomingMessage, res: ServerResponse) => void>(),
  };
  const server: Server = createServer((req, res) => {
    const path = req.url ?? '/';
    state.hits.set(path, (state.hits.get(path) ?? 0) + 1);
    const handler = state.handlers.get(path);
    if (handler) return handler(req, res);
    if (path === '/jwks.json') {
      res.setHeader('content-type', 'application/json');
      return res.end(JSON.stringify(state.jwks));
    }
    res.statusCode = 404;
    res.end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    base: `http://127.0.0.1:${port}`,
    ...state,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** A loopback port nobody listens on. */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('loadKeySet: remote JWKS and OIDC discovery', () => {
  let srv: TestServer;
  const opened: KeySet[] = [];
  const open = async (opts: Partial<LoadKeySetOptions>) => {
    const ks = await loadKeySet({ signingKeys: [], algorithms: ALGS, refreshMs: 0, ...opts });
    opened.push(ks);
    return ks;
  };

  before(async () => {
    srv = await startServer();
  });
  after(async () => {
    for (const ks of opened) ks.close?.();
    await srv.close();
  });

  // A cooldown long enough that a loaded machine's slowest steps stay inside it.
  it('fetches a JWKS URL; an unknown kid refetches, but not more often than the cooldown', async () => {
    srv.jwks.keys = [await jwkOf(ed.publicKey, 'k1')];
    srv.hits.clear();
    const keys = await open({ signingKeys: [`${srv.base}/jwks.json`], cooldownMs: 2000 });
    const count = () => srv.hits.get('/jwks.json') ?? 0;
    assert.equal(count(), 1);
    await verifyToken(await token(ed.privateKey, 'EdDSA', 'k1'), keys, VERIFY);
    assert.equal(count(), 1, 'a known kid is served from the cache');

    // Rotation: the server now publishes k2 as well.
    srv.jwks.keys = [await jwkOf(ed.publicKey, 'k1'), await jwkOf(es.publicKey, 'k2')];
    const k2Token = await token(es.privateKey, 'ES256', 'k2');
    // Within the cooldown of the initial fetch: no request, the kid stays unknown.
    await assert.rejects(verifyToken(k2Token, keys, VERIFY), (e: unknown) => e instanceof TokenError && e.reason === 'unknown key id');
    assert.equal(count(), 1);

    await sleep(2100);
    await verifyToken(k2Token, keys, VERIFY);
    assert.equal(count(), 2, 'the unknown kid triggered one refetch');

    // A burst of made-up kids right after: at most one request per cooldown.
    const bogus = await Promise.allSettled(Array.from({ length: 20 }, async (_, i) => verifyToken(await token(ed.privateKey, 'EdDSA', `bogus-${i}`), keys, VERIFY)));
    assert.ok(bogus.every((r) => r.status === 'rejected' && (r.reason as TokenError).reason === 'unknown key id'));
    assert.equal(count(), 2);
    await sleep(2100);
    const later = await Promise.allSettled(Array.from({ length: 10 }, async (_, i) => verifyToken(await token(ed.privateKey, 'EdDSA', `later-${i}`), keys, VERIFY)));
    assert.ok(later.every((r) => r.status === 'rejected'));
    assert.equal(count(), 3, 'concurrent unknown kids share one refetch');

    const lines = keys.describe().join('\n');
    assert.match(lines, /JWKS http:\/\/127\.0\.0\.1:\d+\/jwks\.json: 2 keys, kid k1, k2/);
  });

  it('uses the jwks_uri of an OIDC discovery document', async () => {
    srv.jwks.keys = [await jwkOf(ed.publicKey, 'oidc-1')];
    srv.handlers.set('/.well-known/openid-configuration', (_req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ issuer: srv.base, jwks_uri: `${srv.base}/jwks.json`, id_token_signing_alg_values_supported: ['EdDSA'] }));
    });
    const keys = await open({ oidcDiscovery: `${srv.base}/.well-known/openid-configuration` });
    await verifyToken(await token(ed.privateKey, 'EdDSA', 'oidc-1'), keys, VERIFY);
    const lines = keys.describe().join('\n');
    assert.match(lines, /OIDC discovery http:\/\/127\.0\.0\.1:\d+\/\.well-known\/openid-configuration: jwks_uri http:\/\/127\.0\.0\.1:\d+\/jwks\.json/);

    srv.handlers.set('/no-jwks-uri', (_req, res) => res.end(JSON.stringify({ issuer: srv.base })));
    await loadFails({ oidcDiscovery: `${srv.base}/no-jwks-uri` }, /OIDC discovery http:\/\/127\.0\.0\.1:\d+\/no-jwks-uri/, /no "jwks_uri"/);
    srv.handlers.set('/remote-jwks-uri', (_req, res) => res.end(JSON.stringify({ jwks_uri: 'http://idp.example.com/jwks' })));
    await loadFails({ oidcDiscovery: `${srv.base}/remote-jwks-uri` }, /remote-jwks-uri/, /only for loopback/);
  });

  it('combines remote, file and PEM sources', async () => {
    srv.jwks.keys = [await jwkOf(es.publicKey, 'remote-es')];
    const pem = await file('combo.pem', await exportSPKI(ed.publicKey));
    const keys = await open({ signingKeys: [pem, `${srv.base}/jwks.json`] });
    await verifyToken(await token(es.privateKey, 'ES256', 'remote-es'), keys, VERIFY);
    await verifyToken(await token(ed.privateKey, 'EdDSA'), keys, VERIFY);
  });

  it('refuses an oversize body, with or without Content-Length', async () => {
    const big = JSON.stringify({ keys: [await jwkOf(ed.publicKey, 'x'.repeat(5000))] });
    srv.handlers.set('/big', (_req, res) => res.end(big));
    srv.handlers.set('/big-chunked', (_req, res) => {
      res.write(big.slice(0, 2000));
      setTimeout(() => res.end(big.slice(2000)), 10);
    });
    await loadFails({ signingKeys: [`${srv.base}/big`], maxBodyBytes: 1024 }, /JWKS http:\/\/127\.0\.0\.1:\d+\/big:/, /exceeds the 1024-byte limit/);
    await loadFails({ signingKeys: [`${srv.base}/big-chunked`], maxBodyBytes: 1024 }, /big-chunked/, /exceeds the 1024-byte limit/);
    // The same document is fine under a larger limit.
    await open({ signingKeys: [`${srv.base}/big`], maxBodyBytes: 64 * 1024 });
  });

  it('times out a server that does not answer, or answers too slowly', async () => {
    srv.handlers.set('/hang', () => {});
    srv.handlers.set('/slow-body', (_req, res) => {
      res.setHeader('content-type', 'application/json');
      res.write('{"keys": [');
    });
    const start = Date.now();
    await loadFails({ signingKeys: [`${srv.base}/hang`], fetchTimeoutMs: 200 }, /\/hang/, /timed out after 200 ms/);
    await loadFails({ signingKeys: [`${srv.base}/slow-body`], fetchTimeoutMs: 200 }, /\/slow-body/, /timed out after 200 ms/);
    assert.ok(Date.now() - start < 3000);
  });

  it('refuses redirects, error statuses, non-JSON, and plain http to other hosts', async () => {
    srv.handlers.set('/redirect', (_req, res) => {
      res.writeHead(302, { location: '/jwks.json' });
      res.end();
    });
    srv.handlers.set('/html', (_req, res) => res.end('<html>'));
    await loadFails({ signingKeys: [`${srv.base}/redirect`] }, /redirects are not followed/);
    await loadFails({ signingKeys: [`${srv.base}/missing`] }, /\/missing/, /HTTP status 404/);
    await loadFails({ signingKeys: [`${srv.base}/html`] }, /\/html/, /not valid JSON/);
    await loadFails({ signingKeys: ['http://idp.example.com/jwks.json'] }, /idp\.example\.com/, /only for loopback/);
    await loadFails({ signingKeys: ['ftp://idp.example.com/jwks.json'] }, /unsupported scheme/);
    // Credentials and query strings in a URL are not shown.
    const err = await loadFails({ signingKeys: [`http://user:hunter2@127.0.0.1:1/jwks.json?token=abc123`] }, /127\.0\.0\.1:1\/jwks\.json\?…/, /credentials in the URL/);
    assert.ok(!/hunter2|abc123/.test(err.message));
    const port = await closedPort();
    const err2 = await loadFails({ signingKeys: [`http://127.0.0.1:${port}/jwks.json?token=abc123`], fetchTimeoutMs: 2000 }, /jwks\.json\?…/, /cannot fetch: ECONNREFUSED/);
    assert.ok(!/abc123/.test(err2.message));
  });

  it('refreshes in the background, keeps the old keys when a refresh fails, and stops on close', async () => {
    srv.jwks.keys = [await jwkOf(ed.publicKey, 'bg-1')];
    srv.handlers.delete('/jwks-flaky');
    let failing = false;
    srv.handlers.set('/jwks-flaky', (_req, res) => {
      if (failing) {
        res.statusCode = 500;
        return res.end();
      }
      res.end(JSON.stringify(srv.jwks));
    });
    srv.hits.set('/jwks-flaky', 0);
    const keys = await loadKeySet({ signingKeys: [`${srv.base}/jwks-flaky`], algorithms: ALGS, refreshMs: 100, cooldownMs: 50 });
    try {
      await sleep(350);
      assert.ok((srv.hits.get('/jwks-flaky') ?? 0) >= 2, `background refreshes happened (${srv.hits.get('/jwks-flaky')})`);
      failing = true;
      await sleep(250);
      // The server fails now; the cached key still works.
      await verifyToken(await token(ed.privateKey, 'EdDSA', 'bg-1'), keys, VERIFY);
      assert.match(keys.describe().join('\n'), /last fetch failed: HTTP status 500/);
      // An unknown kid cannot be looked up: the source is unavailable, not the key unknown.
      await sleep(60);
      await assert.rejects(
        verifyToken(await token(ed.privateKey, 'EdDSA', 'bg-2'), keys, VERIFY),
        (e: unknown) => e instanceof TokenError && e.reason === 'key source unavailable',
      );
      await assert.rejects(async () => keys.resolve({ alg: 'EdDSA', kid: 'bg-3' }, { payload: '', signature: '', protected: '' }), KeySourceUnavailableError);
    } finally {
      keys.close?.();
    }
    const hitsAtClose = srv.hits.get('/jwks-flaky') ?? 0;
    await sleep(300);
    assert.ok((srv.hits.get('/jwks-flaky') ?? 0) <= hitsAtClose + 1, 'no refresh after close');
  });
});
