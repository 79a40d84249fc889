import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { calculateJwkThumbprint, createLocalJWKSet, decodeProtectedHeader, importSPKI, jwtVerify, type JWK } from 'jose';
import { runKeygen } from '../../src/cli/keygen.js';
import { runToken } from '../../src/cli/token.js';

import { ALGS, assertOneLine, call, KTY, readJwks, verifyBoth, freshFolders } from '../helpers/keygen-cases.js';

describe('pgward keygen / token', () => {
  const fresh = freshFolders();

  describe('in process (runKeygen / runToken)', () => {
    for (const alg of ALGS) {
      it(`keygen --alg ${alg}: files, modes, jwks; token verifies against public.pem and jwks.json`, async () => {
        const dir = join(fresh(), 'nested', 'keys');
        const kg = await call(runKeygen, ['--alg', alg, '--out', dir]);
        assert.equal(kg.code, 0, kg.stderr);
        assert.equal(kg.stderr, '');

        const priv = await readFile(join(dir, 'private.pem'), 'utf8');
        assert.match(priv, /^-----BEGIN PRIVATE KEY-----\n/);
        assert.equal((await stat(join(dir, 'private.pem'))).mode & 0o777, 0o600);
        assert.match(await readFile(join(dir, 'public.pem'), 'utf8'), /^-----BEGIN PUBLIC KEY-----\n/);
        assert.equal((await stat(join(dir, 'public.pem'))).mode & 0o077 & 0o022, 0, 'public.pem not group/world-writable');

        const jwks = await readJwks(dir);
        assert.equal(jwks.keys.length, 1);
        const jwk = jwks.keys[0]!;
        assert.equal(jwk.alg, alg);
        assert.equal(jwk.use, 'sig');
        assert.equal(jwk.kty, KTY[alg].kty);
        if (KTY[alg].crv) assert.equal(jwk.crv, KTY[alg].crv);
        assert.equal(jwk.d, undefined, 'no private part in jwks.json');
        assert.equal(jwk.kid, await calculateJwkThumbprint(jwk as JWK, 'sha256'), 'kid is the RFC 7638 thumbprint');

        // the kid and the three paths are printed; never the private key
        assert.ok(kg.stdout.includes(jwk.kid!));
        for (const f of ['private.pem', 'public.pem', 'jwks.json']) assert.ok(kg.stdout.includes(join(dir, f)), f);
        assert.ok(!kg.stdout.includes('PRIVATE KEY'));

        const tk = await call(runToken, ['--key', join(dir, 'private.pem'), '--sub', 'alice@example.com']);
        assert.equal(tk.code, 0, tk.stderr);
        assert.equal(tk.stderr, '');
        assert.match(tk.stdout, /^[\w-]+\.[\w-]+\.[\w-]+\n$/);
        const token = tk.stdout.trim();
        const { payload, protectedHeader } = await verifyBoth(token, dir, alg);
        assert.equal(protectedHeader.alg, alg, 'alg follows the key (and jwks.json for PS256)');
        assert.equal(protectedHeader.kid, jwk.kid, 'kid taken from jwks.json next to the key');
        assert.equal(payload.sub, 'alice@example.com');
        assert.equal(payload.exp! - payload.iat!, 3600, 'default ttl 1h');
      });
    }

    it('keygen defaults to EdDSA in the current directory layout', async () => {
      const dir = fresh();
      const kg = await call(runKeygen, ['--out', dir]);
      assert.equal(kg.code, 0, kg.stderr);
      assert.equal((await readJwks(dir)).keys[0]!.alg, 'EdDSA');
    });

    it('keygen refuses to overwrite without --force and replaces with it', async () => {
      const dir = fresh();
      assert.equal((await call(runKeygen, ['--out', dir])).code, 0);
      const before = await readFile(join(dir, 'private.pem'), 'utf8');
      const again = await call(runKeygen, ['--out', dir, '--alg', 'ES256']);
      assert.equal(again.code, 2);
      assertOneLine(again.stderr);
      assert.match(again.stderr, /overwrite/);
      assert.match(again.stderr, /--force/);
      assert.equal(again.stdout, '');
      assert.equal(await readFile(join(dir, 'private.pem'), 'utf8'), before, 'untouched');
      assert.equal((await readJwks(dir)).keys[0]!.alg, 'EdDSA');

      // even one existing file is enough to refuse
      const dir2 = fresh();
      await mkdir(dir2);
      await writeFile(join(dir2, 'jwks.json'), '{"keys":[]}');
      const partial = await call(runKeygen, ['--out', dir2]);
      assert.equal(partial.code, 2);
      assert.match(partial.stderr, /jwks\.json/);

      const forced = await call(runKeygen, ['--out', dir, '--alg', 'ES256', '--force']);
      assert.equal(forced.code, 0, forced.stderr);
      assert.notEqual(await readFile(join(dir, 'private.pem'), 'utf8'), before);
      assert.equal((await stat(join(dir, 'private.pem'))).mode & 0o777, 0o600);
      assert.equal((await readJwks(dir)).keys[0]!.alg, 'ES256');
    });

    it('token: claims, kid, iss/aud, nbf, ttl and typed --claim values', async () => {
      const dir = fresh();
      assert.equal((await call(runKeygen, ['--out', dir, '--alg', 'ES256'])).code, 0);
      const t0 = Math.floor(Date.now() / 1000);
      const tk = await call(runToken, [
        '--key', join(dir, 'private.pem'),
        '--sub', 'bob',
        '--ttl', '15m',
        '--iss', 'https://issuer.example',
        '--aud', 'pgward',
        '--nbf', '0s',
        '--claim', 'n=42',
        '--claim', 'f=1.5',
        '--claim', 'admin=true',
        '--claim', 'nothing=null',
        '--claim', 'roles=["read","write"]',
        '--claim', 'obj={"a":1}',
        '--claim', 'name=Bob Smith',
        '--claim', 'quoted="123"',
        '--claim', 'eq=a=b',
        '--claim', 'empty=',
        '--claim=tenant=acme',
      ]);
      const t1 = Math.floor(Date.now() / 1000);
      assert.equal(tk.code, 0, tk.stderr);
      const token = tk.stdout.trim();
      const jwks = await readJwks(dir);
      const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet(jwks), {
        issuer: 'https://issuer.example',
        audience: 'pgward',
        algorithms: ['ES256'],
      });
      assert.equal(protectedHeader.kid, jwks.keys[0]!.kid);
      assert.equal(protectedHeader.typ, 'JWT');
      assert.equal(payload.sub, 'bob');
      assert.ok(payload.iat! >= t0 && payload.iat! <= t1);
      assert.equal(payload.exp, payload.iat! + 900);
      assert.equal(payload.nbf, payload.iat);
      assert.equal(payload.n, 42);
      assert.equal(payload.f, 1.5);
      assert.equal(payload.admin, true);
      assert.equal(payload.nothing, null);
      assert.deepEqual(payload.roles, ['read', 'write']);
      assert.deepEqual(payload.obj, { a: 1 });
      assert.equal(payload.name, 'Bob Smith');
      assert.equal(payload.quoted, '123');
      assert.equal(payload.eq, 'a=b');
      assert.equal(payload.empty, '');
      assert.equal(payload.tenant, 'acme');
    });

    it('token: --kid overrides, several --aud make an array, --nbf delays validity', async () => {
      const dir = fresh();
      assert.equal((await call(runKeygen, ['--out', dir])).code, 0);
      const tk = await call(runToken, [
        '--key', join(dir, 'private.pem'), '--sub', 'carol', '--kid', 'my-key',
        '--aud', 'a1', '--aud', 'a2', '--nbf', '1h', '--ttl', '2h',
      ]);
      assert.equal(tk.code, 0, tk.stderr);
      const token = tk.stdout.trim();
      assert.equal(decodeProtectedHeader(token).kid, 'my-key');
      const key = await importSPKI(await readFile(join(dir, 'public.pem'), 'utf8'), 'EdDSA');
      await assert.rejects(jwtVerify(token, key), { code: 'ERR_JWT_CLAIM_VALIDATION_FAILED', claim: 'nbf' });
      const { payload } = await jwtVerify(token, key, { currentDate: new Date(Date.now() + 90 * 60_000) });
      assert.deepEqual(payload.aud, ['a1', 'a2']);
      assert.equal(payload.nbf, payload.iat! + 3600);
      assert.equal(payload.exp, payload.iat! + 7200);
    });

    it('token: the ttl is respected (expired after it)', async () => {
      const dir = fresh();
      assert.equal((await call(runKeygen, ['--out', dir])).code, 0);
      const tk = await call(runToken, ['--key', join(dir, 'private.pem'), '--sub', 'dave', '--ttl', '30s']);
      assert.equal(tk.code, 0, tk.stderr);
      const key = await importSPKI(await readFile(join(dir, 'public.pem'), 'utf8'), 'EdDSA');
      const { payload } = await jwtVerify(tk.stdout.trim(), key);
      assert.equal(payload.exp, payload.iat! + 30);
      await assert.rejects(jwtVerify(tk.stdout.trim(), key, { currentDate: new Date(Date.now() + 31_000) }), {
        code: 'ERR_JWT_EXPIRED',
      });
    });

    it('token: no kid without jwks.json; foreign PEM keys (SEC1/PKCS#1) work; --alg PS256 for RSA', async () => {
      const dir = fresh();
      await mkdir(dir);
      const ec = generateKeyPairSync('ec', { namedCurve: 'P-384' });
      await writeFile(join(dir, 'ec.pem'), ec.privateKey.export({ type: 'sec1', format: 'pem' }));
      const t1 = await call(runToken, ['--key', join(dir, 'ec.pem'), '--sub', 'x']);
      assert.equal(t1.code, 0, t1.stderr);
      const h1 = decodeProtectedHeader(t1.stdout.trim());
      assert.equal(h1.alg, 'ES384');
      assert.equal(h1.kid, undefined);
      await jwtVerify(t1.stdout.trim(), ec.publicKey);

      const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
      await writeFile(join(dir, 'rsa.pem'), rsa.privateKey.export({ type: 'pkcs1', format: 'pem' }));
      const rs = await call(runToken, ['--key', join(dir, 'rsa.pem'), '--sub', 'x']);
      assert.equal(rs.code, 0, rs.stderr);
      assert.equal(decodeProtectedHeader(rs.stdout.trim()).alg, 'RS256');
      const ps = await call(runToken, ['--key', join(dir, 'rsa.pem'), '--sub', 'x', '--alg', 'PS256']);
      assert.equal(ps.code, 0, ps.stderr);
      assert.equal(decodeProtectedHeader(ps.stdout.trim()).alg, 'PS256');
      await jwtVerify(ps.stdout.trim(), rsa.publicKey, { algorithms: ['PS256'] });
    });

    it('token: a jwks.json without this key gives no kid', async () => {
      const a = fresh();
      const b = fresh();
      assert.equal((await call(runKeygen, ['--out', a])).code, 0);
      assert.equal((await call(runKeygen, ['--out', b])).code, 0);
      // a's private key next to b's jwks.json
      await writeFile(join(b, 'other.pem'), await readFile(join(a, 'private.pem')));
      const tk = await call(runToken, ['--key', join(b, 'other.pem'), '--sub', 'x']);
      assert.equal(tk.code, 0, tk.stderr);
      assert.equal(decodeProtectedHeader(tk.stdout.trim()).kid, undefined);
    });

    it('bad usage: exit 2, one line on stderr, nothing on stdout, never the key', async () => {
      const dir = fresh();
      assert.equal((await call(runKeygen, ['--out', dir])).code, 0);
      const key = join(dir, 'private.pem');
      const secret = (await readFile(key, 'utf8')).split('\n')[1]!;
      const cases: [typeof runKeygen, string[], RegExp][] = [
        [runKeygen, ['--alg', 'HS256'], /--alg/],
        [runKeygen, ['--alg'], /--alg needs a value/],
        [runKeygen, ['--bogus'], /unknown flag --bogus/],
        [runKeygen, ['stray'], /unexpected argument/],
        [runKeygen, ['--force=yes'], /--force/],
        [runToken, [], /--key and --sub are required/],
        [runToken, ['--key', key], /--sub is required/],
        [runToken, ['--sub', 'x'], /--key is required/],
        [runToken, ['--key', key, '--sub', 'x', '--ttl', 'soon'], /--ttl/],
        [runToken, ['--key', key, '--sub', 'x', '--ttl', '0s'], /--ttl/],
        [runToken, ['--key', key, '--sub', 'x', '--nbf', 'later'], /--nbf/],
        [runToken, ['--key', key, '--sub', 'x', '--claim', 'sub=eve'], /cannot set "sub"/],
        [runToken, ['--key', key, '--sub', 'x', '--claim', 'exp=1'], /cannot set "exp"/],
        [runToken, ['--key', key, '--sub', 'x', '--claim', 'iat=1'], /cannot set "iat"/],
        [runToken, ['--key', key, '--sub', 'x', '--claim', 'novalue'], /name=value/],
        [runToken, ['--key', key, '--sub', 'x', '--claim', 'a=1', '--claim', 'a=2'], /more than once/],
        [runToken, ['--key', key, '--sub', 'x', '--sub', 'y'], /--sub given more than once/],
        [runToken, ['--key', key, '--sub', 'x', '--alg', 'ES256'], /does not fit/],
        [runToken, ['--key', key, '--sub', 'x', '--alg', 'none'], /not supported/],
        [runToken, ['--key', key, '--sub', 'x', '--frobnicate'], /unknown flag/],
        [runToken, ['--key', join(dir, 'missing.pem'), '--sub', 'x'], /cannot read.*no such file/],
        [runToken, ['--key', join(dir, 'public.pem'), '--sub', 'x'], /not a PEM private key.*public key/],
        [runToken, ['--key', join(dir, 'jwks.json'), '--sub', 'x'], /not a PEM private key/],
        [runToken, ['--key', dir, '--sub', 'x'], /cannot read/],
      ];
      for (const [fn, args, re] of cases) {
        const r = await call(fn, args);
        const what = `${fn === runKeygen ? 'keygen' : 'token'} ${args.join(' ')}`;
        assert.equal(r.code, 2, `${what}: exit 2`);
        assert.equal(r.stdout, '', `${what}: nothing on stdout`);
        assertOneLine(r.stderr);
        assert.match(r.stderr, re, what);
        assert.ok(!r.stderr.includes(secret), `${what}: never the key`);
      }

      // an encrypted key, a too-short RSA key and an unsupported curve
      const enc = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      await writeFile(
        join(dir, 'enc.pem'),
        enc.privateKey.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'pw' }),
      );
      const small = generateKeyPairSync('rsa', { modulusLength: 1024 });
      await writeFile(join(dir, 'small.pem'), small.privateKey.export({ type: 'pkcs8', format: 'pem' }));
      const p521 = generateKeyPairSync('ec', { namedCurve: 'P-521' });
      await writeFile(join(dir, 'p521.pem'), p521.privateKey.export({ type: 'pkcs8', format: 'pem' }));
      for (const [file, re] of [['enc.pem', /encrypted/], ['small.pem', /too short/], ['p521.pem', /not supported/]] as const) {
        const r = await call(runToken, ['--key', join(dir, file), '--sub', 'x']);
        assert.equal(r.code, 2, file);
        assert.equal(r.stdout, '');
        assertOneLine(r.stderr);
        assert.match(r.stderr, re);
      }
    });

    it('--help prints usage with an example, exit 0', async () => {
      for (const fn of [runKeygen, runToken]) {
        for (const flag of ['--help', '-h']) {
          const r = await call(fn, [flag]);
          assert.equal(r.code, 0);
          assert.match(r.stdout, /^Usage: pgward (keygen|token)/);
          assert.match(r.stdout, /Example/);
          assert.equal(r.stderr, '');
        }
      }
    });
  });
});
