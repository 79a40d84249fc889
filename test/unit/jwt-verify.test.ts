import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CompactSign, SignJWT, errors, exportJWK, exportSPKI, generateKeyPair, type CryptoKey, type JWTPayload } from 'jose';
import { KeySourceUnavailableError, loadKeySet, type KeySet } from '../../src/auth/key-sources.js';
import { TOKEN_FAILURE_REASONS, TokenError, verifyToken, type TokenFailureReason, type VerifyTokenOptions } from '../../src/auth/jwt-verify.js';
import { PgError } from '../../src/protocol/errors.js';

const ALGS = ['EdDSA', 'ES256', 'ES384', 'RS256', 'PS256'] as const;
type Alg = (typeof ALGS)[number];

const OPTS: VerifyTokenOptions = { algorithms: [...ALGS], clockToleranceSec: 30, requireExp: true };
const SUBJECT = 'alice-unique-subject-7f3a';

interface Pair {
  publicKey: CryptoKey;
  privateKey: CryptoKey;
}

const pairs = {} as Record<Alg, Pair>;
let other: Pair; // a second EdDSA key, never configured
let pemKeys: KeySet; // every pair as an inline PEM key (no kid)
let jwksKeys: KeySet; // every pair in a JWKS file, kid = alg
let dir: string;

const now = () => Math.floor(Date.now() / 1000);

async function mint(alg: Alg, claims: JWTPayload = {}, opts: { key?: CryptoKey; kid?: string; exp?: number | null; sub?: string } = {}) {
  const jwt = new SignJWT({ ...claims }).setProtectedHeader({ alg, ...(opts.kid !== undefined ? { kid: opts.kid } : {}) });
  jwt.setSubject(opts.sub ?? SUBJECT).setIssuedAt();
  if (opts.exp !== null) jwt.setExpirationTime(opts.exp ?? now() + 3600);
  return jwt.sign(opts.key ?? pairs[alg].privateKey);
}

/** A token assembled by hand: base64url(header).base64url(payload).signature */
function handmade(header: object, payload: object, signature = ''): string {
  const b = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b(header)}.${b(payload)}.${signature}`;
}

/** Asserts that verification fails with `reason`, and that nothing of the token leaks. */
async function refused(token: string, reason: TokenFailureReason, keys: KeySet = pemKeys, opts: Partial<VerifyTokenOptions> = {}) {
  let caught: unknown;
  try {
    await verifyToken(token, keys, { ...OPTS, ...opts });
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof TokenError, `expected a TokenError (${reason}), got ${String(caught)}`);
  assert.ok(caught instanceof PgError);
  assert.equal(caught.reason, reason);
  assert.equal(caught.sqlstate, '28P01');
  assert.equal(caught.severity, 'FATAL');
  assert.ok(caught.message.startsWith(reason), caught.message);
  const shown = `${caught.message}\n${caught.detail ?? ''}\n${caught.hint ?? ''}\n${JSON.stringify(caught.toFields())}`;
  if (token !== '') assert.ok(!shown.includes(token), 'the token leaks into the error');
  for (const part of token.split('.')) {
    if (part.length >= 8) assert.ok(!shown.includes(part), `a token segment leaks into the error: ${shown}`);
  }
  assert.ok(!shown.includes(SUBJECT), 'a claim value leaks into the error');
  return caught;
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pgward-jwt-'));
  for (const alg of ALGS) pairs[alg] = await generateKeyPair(alg, { extractable: true });
  other = await generateKeyPair('EdDSA', { extractable: true });
  const pems = await Promise.all(ALGS.map((a) => exportSPKI(pairs[a].publicKey)));
  pemKeys = await loadKeySet({ signingKeys: pems, algorithms: [...ALGS] });
  const jwks = { keys: await Promise.all(ALGS.map(async (a) => ({ ...(await exportJWK(pairs[a].publicKey)), kid: a, alg: a, use: 'sig' }))) };
  const file = join(dir, 'jwks.json');
  await writeFile(file, JSON.stringify(jwks));
  jwksKeys = await loadKeySet({ signingKeys: [file], algorithms: [...ALGS] });
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('verifyToken: accepted tokens', () => {
  for (const alg of ALGS) {
    it(`verifies ${alg} with a PEM key and with a JWKS key`, async () => {
      const exp = now() + 600;
      const token = await mint(alg, { tenant: 't1' }, { exp, kid: alg });
      for (const keys of [pemKeys, jwksKeys]) {
        const { claims, expiresAt } = await verifyToken(token, keys, OPTS);
        assert.equal(claims.sub, SUBJECT);
        assert.equal(claims.tenant, 't1');
        assert.equal(expiresAt, exp * 1000);
      }
    });
  }

  it('accepts a token without kid against PEM keys', async () => {
    const token = await mint('ES256');
    const { claims } = await verifyToken(token, pemKeys, OPTS);
    assert.equal(claims.sub, SUBJECT);
  });

  it('tries every key that fits (rotation: two PEM keys of one type)', async () => {
    const keys = await loadKeySet({
      signingKeys: [await exportSPKI(other.publicKey), await exportSPKI(pairs.EdDSA.publicKey)],
      algorithms: ['EdDSA'],
    });
    for (const key of [pairs.EdDSA.privateKey, other.privateKey]) {
      const token = await mint('EdDSA', {}, { key });
      assert.equal((await verifyToken(token, keys, { ...OPTS, algorithms: ['EdDSA'] })).claims.sub, SUBJECT);
    }
  });

  it('honours the clock tolerance for exp, nbf and iat', async () => {
    const expired10s = await mint('EdDSA', {}, { exp: now() - 10 });
    await verifyToken(expired10s, pemKeys, OPTS);
    await refused(expired10s, 'token expired', pemKeys, { clockToleranceSec: 0 });
    const nbfSoon = await mint('EdDSA', { nbf: now() + 10 });
    await verifyToken(nbfSoon, pemKeys, OPTS);
    await refused(nbfSoon, 'token not yet valid', pemKeys, { clockToleranceSec: 0 });
  });

  it('accepts a token without exp when requireExp is off (no expiresAt)', async () => {
    const token = await mint('EdDSA', {}, { exp: null });
    const result = await verifyToken(token, pemKeys, { ...OPTS, requireExp: false });
    assert.equal(result.expiresAt, undefined);
  });

  it('checks issuer and audience when configured', async () => {
    const token = await mint('ES256', { iss: 'https://idp.example', aud: ['pgward', 'other'] });
    const { claims } = await verifyToken(token, pemKeys, { ...OPTS, issuer: 'https://idp.example', audience: 'pgward' });
    assert.equal(claims.iss, 'https://idp.example');
  });
});

describe('verifyToken: refusals', () => {
  it('has the fixed set of reasons', () => {
    assert.deepEqual(
      [...TOKEN_FAILURE_REASONS].sort(),
      [
        'algorithm not allowed',
        'audience mismatch',
        'issuer mismatch',
        'key source unavailable',
        'malformed token',
        'missing exp claim',
        'signature invalid',
        'token expired',
        'token not yet valid',
        'token too large',
        'unknown key id',
      ],
    );
  });

  it('malformed token', async () => {
    await refused('', 'malformed token');
    await refused('not-a-token-at-all', 'malformed token');
    await refused('abc.def', 'malformed token');
    await refused('a b.c d.e f', 'malformed token');
    await refused('eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d', 'malformed token'); // JWE shape
    await refused(`${Buffer.from('not json').toString('base64url')}.e30.c2ln`, 'malformed token');
    await refused(handmade({ typ: 'JWT' }, { sub: SUBJECT }, 'c2lnbmF0dXJl'), 'malformed token'); // no alg
    // A valid signature over a payload that is not a JSON claims set.
    const notJson = await new CompactSign(new TextEncoder().encode('just some bytes, not JSON'))
      .setProtectedHeader({ alg: 'EdDSA' })
      .sign(pairs.EdDSA.privateKey);
    await refused(notJson, 'malformed token');
    // A non-numeric exp.
    const badExp = await new SignJWT({ exp: 'tomorrow' as unknown as number }).setProtectedHeader({ alg: 'EdDSA' }).setSubject(SUBJECT).sign(pairs.EdDSA.privateKey);
    await refused(badExp, 'malformed token');
  });

  it('token too large (17 KiB), before any verification', async () => {
    const token = await mint('EdDSA', { pad: 'x'.repeat(17 * 1024) });
    assert.ok(token.length > 16 * 1024);
    await refused(token, 'token too large');
    // The limit is configurable, and a token at the limit is fine.
    const small = await mint('EdDSA');
    await verifyToken(small, pemKeys, { ...OPTS, maxLength: small.length });
    await refused(small, 'token too large', pemKeys, { maxLength: small.length - 1 });
  });

  it('token expired', async () => {
    await refused(await mint('ES384', {}, { exp: now() - 3600 }), 'token expired');
  });

  it('token not yet valid (nbf, and iat in the future)', async () => {
    await refused(await mint('EdDSA', { nbf: now() + 3600 }), 'token not yet valid');
    const futureIat = await new SignJWT({})
      .setProtectedHeader({ alg: 'EdDSA' })
      .setSubject(SUBJECT)
      .setIssuedAt(now() + 3600)
      .setExpirationTime(now() + 7200)
      .sign(pairs.EdDSA.privateKey);
    await refused(futureIat, 'token not yet valid');
  });

  it('signature invalid (unknown key without kid, tampered payload)', async () => {
    await refused(await mint('EdDSA', {}, { key: other.privateKey }), 'signature invalid');
    const token = await mint('RS256');
    const [h, , s] = token.split('.');
    const forged = `${h}.${Buffer.from(JSON.stringify({ sub: 'admin', exp: now() + 3600 })).toString('base64url')}.${s}`;
    await refused(forged, 'signature invalid');
    // Valid header and payload with the signature removed.
    await refused(`${h}.${token.split('.')[1]}.`, 'signature invalid');
  });

  it('unknown key id', async () => {
    await refused(await mint('EdDSA', {}, { kid: 'no-such-key-id' }), 'unknown key id', jwksKeys);
    // Only JWKS keys: a token whose alg fits no key at all.
    const jwksEd = await loadKeySet({ signingKeys: [await jwksFile('ed.json', pairs.EdDSA, 'ed')], algorithms: ['EdDSA', 'ES256'] });
    await refused(await mint('ES256', {}, { kid: 'ed' }), 'unknown key id', jwksEd, { algorithms: ['EdDSA', 'ES256'] });
  });

  it('algorithm not allowed: alg none and HS256, even when listed', async () => {
    const none = handmade({ alg: 'none', typ: 'JWT' }, { sub: SUBJECT, exp: now() + 3600 });
    await refused(none, 'algorithm not allowed');
    await refused(none, 'algorithm not allowed', pemKeys, { algorithms: ['none', ...ALGS] });
    await refused(handmade({ alg: 'NONE' }, { sub: SUBJECT, exp: now() + 3600 }, 'c2lnbmF0dXJl'), 'algorithm not allowed');
    // HS256 "signed" with the public key bytes as the secret: the classic key-confusion attack.
    const secret = Buffer.from(await exportSPKI(pairs.RS256.publicKey));
    const hs = await new SignJWT({ exp: now() + 3600 }).setProtectedHeader({ alg: 'HS256' }).setSubject(SUBJECT).sign(secret);
    await refused(hs, 'algorithm not allowed');
    await refused(hs, 'algorithm not allowed', pemKeys, { algorithms: ['HS256', 'RS256'] });
    const hs512 = handmade({ alg: 'HS512' }, { sub: SUBJECT, exp: now() + 3600 }, 'c2lnbmF0dXJlc2lnbmF0dXJl');
    await refused(hs512, 'algorithm not allowed');
  });

  it('algorithm not allowed: a real algorithm missing from the allow-list', async () => {
    await refused(await mint('ES384'), 'algorithm not allowed', pemKeys, { algorithms: ['EdDSA'] });
    await refused(handmade({ alg: 'ES512' }, { sub: SUBJECT }, 'c2lnbmF0dXJl'), 'algorithm not allowed');
  });

  it('audience mismatch (wrong or missing aud)', async () => {
    await refused(await mint('EdDSA', { aud: 'someone-else' }), 'audience mismatch', pemKeys, { audience: 'pgward' });
    await refused(await mint('EdDSA'), 'audience mismatch', pemKeys, { audience: 'pgward' });
  });

  it('issuer mismatch (wrong or missing iss)', async () => {
    await refused(await mint('EdDSA', { iss: 'https://evil.example' }), 'issuer mismatch', pemKeys, { issuer: 'https://idp.example' });
    await refused(await mint('EdDSA'), 'issuer mismatch', pemKeys, { issuer: 'https://idp.example' });
  });

  it('missing exp claim', async () => {
    await refused(await mint('PS256', {}, { exp: null }), 'missing exp claim');
  });

  it('signature is checked before claims (a forged expired token is a bad signature)', async () => {
    await refused(await mint('EdDSA', {}, { key: other.privateKey, exp: now() - 3600 }), 'signature invalid');
  });

  it('key source unavailable', async () => {
    const token = await mint('EdDSA', {}, { kid: 'k1' });
    const failing = (err: Error): KeySet => ({
      resolve: async () => {
        throw err;
      },
      describe: () => [],
    });
    await refused(token, 'key source unavailable', failing(new KeySourceUnavailableError('down')));
    await refused(token, 'key source unavailable', failing(new errors.JWKSTimeout()));
    const caught = await refused(token, 'key source unavailable', failing(new errors.JWKSInvalid('bad set')));
    assert.ok(caught.cause, 'the cause is kept for the log');
  });
});

async function jwksFile(name: string, pair: Pair, kid: string): Promise<string> {
  const file = join(dir, name);
  await writeFile(file, JSON.stringify({ keys: [{ ...(await exportJWK(pair.publicKey)), kid }] }));
  return file;
}
