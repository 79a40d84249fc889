import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { tlsServerEndPoint } from '../../src/backend/channel-binding.js';
import { saslprep } from '../../src/backend/saslprep.js';
import { chooseMechanism, ScramError } from '../../src/backend/scram.js';

describe('saslprep', () => {
  it('returns ASCII unchanged, even control characters (as PostgreSQL does)', () => {
    assert.equal(saslprep('user'), 'user');
    assert.equal(saslprep('USER'), 'USER');
    assert.equal(saslprep('a\u0007b'), 'a\u0007b');
    assert.equal(saslprep(''), '');
  });

  it('follows the RFC 4013 §3 examples where they succeed', () => {
    assert.equal(saslprep('I\u00adX'), 'IX'); // soft hyphen mapped to nothing
    assert.equal(saslprep('\u00aa'), 'a'); // NFKC
    assert.equal(saslprep('\u2168'), 'IX'); // NFKC
  });

  it('maps non-ASCII spaces to U+0020 and applies NFKC', () => {
    assert.equal(saslprep('a\u3000b\u2003c'), 'a b c');
    assert.equal(saslprep('\uff50\uff41\uff53\uff53'), 'pass'); // fullwidth
    assert.equal(saslprep('e\u0301'), '\u00e9');
  });

  it('falls back to the raw password when SASLprep fails, like PostgreSQL', () => {
    assert.equal(saslprep('\u00e9\u0007'), '\u00e9\u0007'); // prohibited control character
    assert.equal(saslprep('\u00ad'), '\u00ad'); // empty after mapping
    assert.equal(saslprep('\u0627\u0031'), '\u0627\u0031'); // RFC 4013 example: bidi rule 3
    assert.equal(saslprep('\u05d0a\u05d0'), '\u05d0a\u05d0'); // R/AL mixed with L
    assert.equal(saslprep('\u00a0\u{1f511}'), '\u00a0\u{1f511}'); // emoji: unassigned in Unicode 3.2
    assert.equal(saslprep('\ue000x\u00e9'), '\ue000x\u00e9'); // private use
    assert.equal(saslprep('\ud800\u00e9'), '\ud800\u00e9'); // lone surrogate
  });

  it('accepts a right-to-left password that starts and ends with R/AL characters', () => {
    assert.equal(saslprep('\u05d0\u05d1\u05d2'), '\u05d0\u05d1\u05d2');
    assert.equal(saslprep('\u0627\u0031\u0628'), '\u0627\u0031\u0628');
  });
});

describe('chooseMechanism', () => {
  const cb = Buffer.alloc(32, 1);
  it('picks -PLUS only when offered and binding data is available', () => {
    assert.equal(chooseMechanism(['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256'], cb), 'SCRAM-SHA-256-PLUS');
    assert.equal(chooseMechanism(['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256'], undefined), 'SCRAM-SHA-256');
    assert.equal(chooseMechanism(['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256'], Buffer.alloc(0)), 'SCRAM-SHA-256');
    assert.equal(chooseMechanism(['SCRAM-SHA-256'], cb), 'SCRAM-SHA-256');
  });

  it('fails when nothing usable is offered', () => {
    assert.throws(() => chooseMechanism(['SCRAM-SHA-256-PLUS'], undefined), /requires SCRAM-SHA-256-PLUS/);
    assert.throws(() => chooseMechanism(['OAUTHBEARER'], cb), /none of the server's SASL mechanisms is supported \(offered: OAUTHBEARER\)/);
    assert.throws(() => chooseMechanism([], cb), ScramError);
  });

  it('refuses -PLUS offered over a connection known to be plaintext', () => {
    assert.throws(() => chooseMechanism(['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256'], undefined, false), /without TLS/);
    assert.equal(chooseMechanism(['SCRAM-SHA-256'], undefined, false), 'SCRAM-SHA-256');
  });
});

describe('tlsServerEndPoint', () => {
  let dir = '';
  let hasOpenssl = true;
  let rsaKey = '';
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
  } catch {
    hasOpenssl = false;
  }

  before(() => {
    if (!hasOpenssl) return;
    dir = mkdtempSync(join(tmpdir(), 'pgward-scram-'));
    rsaKey = join(dir, 'rsa.key');
    execFileSync('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', rsaKey], { stdio: 'ignore' });
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** Self-signed certificate in DER, made by the openssl CLI. */
  function makeCert(name: string, keyArgs: string[], signArgs: string[]): Buffer {
    const pem = join(dir, `${name}.pem`);
    execFileSync('openssl', ['req', '-x509', ...keyArgs, ...signArgs, '-subj', `/CN=${name}`, '-days', '1', '-out', pem], { stdio: 'ignore' });
    return execFileSync('openssl', ['x509', '-in', pem, '-outform', 'DER']);
  }
  function opensslDigest(der: Buffer, hash: string): Buffer {
    const out = execFileSync('openssl', ['dgst', `-${hash}`, '-r'], { input: der }).toString();
    return Buffer.from(out.split(' ')[0]!, 'hex');
  }

  const cases: [string, () => string[], string[], string][] = [
    ['rsa-sha256', () => ['-key', rsaKey], ['-sha256'], 'sha256'],
    ['rsa-sha384', () => ['-key', rsaKey], ['-sha384'], 'sha384'],
    ['rsa-sha512', () => ['-key', rsaKey], ['-sha512'], 'sha512'],
    ['rsa-sha1 (→ sha256)', () => ['-key', rsaKey], ['-sha1'], 'sha256'],
    ['rsa-md5 (→ sha256)', () => ['-key', rsaKey], ['-md5'], 'sha256'],
    ['rsa-pss-sha512', () => ['-key', rsaKey], ['-sha512', '-sigopt', 'rsa_padding_mode:pss'], 'sha512'],
    ['rsa-pss-sha384', () => ['-key', rsaKey], ['-sha384', '-sigopt', 'rsa_padding_mode:pss'], 'sha384'],
    ['rsa-sha3-256', () => ['-key', rsaKey], ['-sha3-256'], 'sha3-256'],
    ['ecdsa-p256-sha256', () => ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'ec256.key')], ['-sha256'], 'sha256'],
    ['ecdsa-p384-sha384', () => ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384', '-nodes', '-keyout', join(dir, 'ec384.key')], ['-sha384'], 'sha384'],
  ];
  for (const [name, keyArgs, signArgs, hash] of cases) {
    it(`hashes a ${name} certificate like \`openssl x509 -outform DER | openssl dgst -${hash}\``, { skip: !hasOpenssl && 'no openssl CLI' }, () => {
      const der = makeCert(name.split(' ')[0]!, keyArgs(), signArgs);
      const expected = opensslDigest(der, hash);
      const got = tlsServerEndPoint(der);
      assert.equal(got.toString('hex'), expected.toString('hex'));
      // For md5/sha1 certificates the result is a SHA-256 (32 bytes), not the certificate's own hash.
      if (/→/.test(name)) assert.equal(got.length, 32);
    });
  }

  it('refuses Ed25519 and Ed448 certificates (no hash: PostgreSQL fails the same way)', { skip: !hasOpenssl && 'no openssl CLI' }, () => {
    for (const alg of ['ed25519', 'ed448']) {
      const der = makeCert(alg, ['-newkey', alg, '-nodes', '-keyout', join(dir, `${alg}.key`)], []);
      assert.throws(() => tlsServerEndPoint(der), (err) => err instanceof ScramError && /has no hash/.test(err.message));
      // An explicit hash name still works, for callers that know better.
      assert.equal(tlsServerEndPoint(der, 'sha-256').toString('hex'), opensslDigest(der, 'sha256').toString('hex'));
    }
  });

  it('applies the md5/sha1 → sha256 rule to an explicit hash name too', { skip: !hasOpenssl && 'no openssl CLI' }, () => {
    const der = makeCert('override', ['-key', rsaKey], ['-sha384']);
    assert.equal(tlsServerEndPoint(der, 'sha1').toString('hex'), opensslDigest(der, 'sha256').toString('hex'));
    assert.equal(tlsServerEndPoint(der, 'SHA512').toString('hex'), opensslDigest(der, 'sha512').toString('hex'));
    assert.throws(() => tlsServerEndPoint(der, 'nosuchhash'), ScramError);
  });

  it('accepts the PEM form as well and hashes the DER bytes', { skip: !hasOpenssl && 'no openssl CLI' }, () => {
    const der = makeCert('pemform', ['-key', rsaKey], ['-sha256']);
    const pem = readFileSync(join(dir, 'pemform.pem'));
    assert.deepEqual(tlsServerEndPoint(pem), tlsServerEndPoint(der));
  });

  it('rejects data that is not a certificate', () => {
    assert.throws(() => tlsServerEndPoint(Buffer.from('not a certificate')), /could not be parsed/);
    assert.throws(() => tlsServerEndPoint(Buffer.alloc(0)), ScramError);
  });

  it('answers a certificate seen before the same way (kept by its bytes), each time with a buffer of its own', { skip: !hasOpenssl && 'no openssl CLI' }, () => {
    const der = makeCert('again', ['-key', rsaKey], ['-sha384']);
    const first = tlsServerEndPoint(der);
    first.fill(0);
    const second = tlsServerEndPoint(der);
    assert.equal(second.toString('hex'), opensslDigest(der, 'sha384').toString('hex'), 'a caller changing its buffer changes nothing kept');
    assert.equal(tlsServerEndPoint(der, 'sha512').toString('hex'), opensslDigest(der, 'sha512').toString('hex'), 'the hash name is part of the key');
    const ed = makeCert('ed-again', ['-newkey', 'ed25519', '-nodes', '-keyout', join(dir, 'ed-again.key')], []);
    for (let i = 0; i < 2; i++) assert.throws(() => tlsServerEndPoint(ed), (err) => err instanceof ScramError && /has no hash/.test(err.message));
    for (let i = 0; i < 2; i++) assert.throws(() => tlsServerEndPoint(Buffer.from('still not a certificate')), /could not be parsed/);
  });
});
