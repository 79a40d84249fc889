import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { tlsServerEndPoint } from '../../src/backend/channel-binding.js';
import { saslprep } from '../../src/backend/saslprep.js';
import { chooseMechanism, MAX_ITERATIONS, ScramClient, ScramError, scramKeys } from '../../src/backend/scram.js';
import { ScramKeyCache } from '../../src/backend/scram-keys.js';

// RFC 7677 §3 test vector.
const RFC = {
  password: 'pencil',
  clientFirst: 'n,,n=user,r=rOprNGfwEbeRWgbNEkqO',
  serverFirst: 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096',
  clientFinal: 'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
  serverFinal: 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=',
};

const PASSWORD = 'correct horse battery staple';

/** A minimal, independent SCRAM-SHA-256 server, written from RFC 5802 §3 for these tests. */
class TestServer {
  readonly salt = randomBytes(16);
  readonly iterations = 4096;
  private readonly storedKey: Buffer;
  private readonly serverKey: Buffer;
  private clientFirstBare = '';
  private serverFirst = '';
  private nonce = '';
  gs2 = '';

  constructor(password: string, private readonly cbData: Buffer = Buffer.alloc(0)) {
    const salted = pbkdf2Sync(password, this.salt, this.iterations, 32, 'sha256');
    const clientKey = createHmac('sha256', salted).update('Client Key').digest();
    this.storedKey = createHash('sha256').update(clientKey).digest();
    this.serverKey = createHmac('sha256', salted).update('Server Key').digest();
  }

  first(clientFirst: string): string {
    const m = /^((?:p=tls-server-end-point|y|n),,)(n=[^,]*,r=([^,]+))$/.exec(clientFirst);
    assert.ok(m, `bad client-first ${clientFirst}`);
    this.gs2 = m[1]!;
    this.clientFirstBare = m[2]!;
    this.nonce = m[3]! + randomBytes(12).toString('base64');
    this.serverFirst = `r=${this.nonce},s=${this.salt.toString('base64')},i=${this.iterations}`;
    return this.serverFirst;
  }

  final(clientFinal: string): string {
    const m = /^(c=([^,]*),r=([^,]*)),p=([^,]*)$/.exec(clientFinal);
    assert.ok(m, 'bad client-final');
    const expectedC = Buffer.concat([Buffer.from(this.gs2), this.gs2.startsWith('p=') ? this.cbData : Buffer.alloc(0)]).toString('base64');
    if (m[2] !== expectedC || m[3] !== this.nonce) return 'e=channel-bindings-dont-match';
    const authMessage = `${this.clientFirstBare},${this.serverFirst},${m[1]}`;
    const clientSignature = createHmac('sha256', this.storedKey).update(authMessage).digest();
    const proof = Buffer.from(m[4]!, 'base64');
    const clientKey = Buffer.from(proof.map((b, i) => b ^ clientSignature[i]!));
    if (!createHash('sha256').update(clientKey).digest().equals(this.storedKey)) return 'e=invalid-proof';
    return `v=${createHmac('sha256', this.serverKey).update(authMessage).digest('base64')}`;
  }
}

function assertNoSecrets(err: unknown, ...secrets: string[]): true {
  assert.ok(err instanceof ScramError, `expected a ScramError, got ${String(err)}`);
  assert.equal(err.code, 'PGWARD_ERR_SCRAM');
  for (const s of secrets) assert.ok(!err.message.includes(s), `message leaks a secret: ${err.message}`);
  return true;
}

describe('ScramClient', () => {
  it('reproduces the RFC 7677 test vector exactly', () => {
    const c = new ScramClient(RFC.password, { username: 'user', nonce: 'rOprNGfwEbeRWgbNEkqO' });
    assert.equal(c.mechanism, 'SCRAM-SHA-256');
    assert.equal(c.clientFirstMessage(), RFC.clientFirst);
    assert.equal(c.handleServerFirst(RFC.serverFirst), RFC.clientFinal);
    assert.doesNotThrow(() => c.verifyServerFinal(RFC.serverFinal));
  });

  it('sends an empty username and a fresh random nonce by default, as libpq does', () => {
    const a = new ScramClient(PASSWORD).clientFirstMessage();
    const b = new ScramClient(PASSWORD).clientFirstMessage();
    assert.match(a, /^n,,n=,r=[A-Za-z0-9+/]{24}$/);
    assert.notEqual(a, b);
  });

  it('escapes "," and "=" in a username (saslname)', () => {
    const c = new ScramClient(PASSWORD, { username: 'a=b,c', nonce: 'abc' });
    assert.equal(c.clientFirstMessage(), 'n,,n=a=3Db=2Cc,r=abc');
  });

  it('rejects an invalid client nonce', () => {
    assert.throws(() => new ScramClient(PASSWORD, { nonce: 'has,comma' }), ScramError);
    assert.throws(() => new ScramClient(PASSWORD, { nonce: '' }), ScramError);
  });

  it('uses gs2 header n without TLS, y with TLS but no binding, p with binding', () => {
    const plain = new ScramClient(PASSWORD, { nonce: 'N1' });
    assert.equal(plain.clientFirstMessage(), 'n,,n=,r=N1');
    const tlsNoBinding = new ScramClient(PASSWORD, { nonce: 'N2', tls: true });
    assert.equal(tlsNoBinding.mechanism, 'SCRAM-SHA-256');
    assert.equal(tlsNoBinding.clientFirstMessage(), 'y,,n=,r=N2');
    const cb = randomBytes(32);
    const plus = new ScramClient(PASSWORD, { nonce: 'N3', tls: true, channelBinding: cb });
    assert.equal(plus.mechanism, 'SCRAM-SHA-256-PLUS');
    assert.equal(plus.clientFirstMessage(), 'p=tls-server-end-point,,n=,r=N3');
    // The c= attribute carries the gs2 header (plus the binding data for -PLUS).
    const sf = (n: string) => `r=${n}XYZ,s=${Buffer.from('salt').toString('base64')},i=1`;
    assert.match(plain.handleServerFirst(sf('N1')), /^c=biws,r=N1XYZ,p=/);
    assert.match(tlsNoBinding.handleServerFirst(sf('N2')), /^c=eSws,r=N2XYZ,p=/);
    const expectedC = Buffer.concat([Buffer.from('p=tls-server-end-point,,'), cb]).toString('base64');
    assert.ok(plus.handleServerFirst(sf('N3')).startsWith(`c=${expectedC},r=N3XYZ,p=`));
  });

  it('treats empty binding data as no binding', () => {
    assert.equal(new ScramClient(PASSWORD, { channelBinding: Buffer.alloc(0) }).mechanism, 'SCRAM-SHA-256');
  });

  for (const withBinding of [false, true]) {
    it(`completes an exchange with an independent server (${withBinding ? 'SCRAM-SHA-256-PLUS' : 'SCRAM-SHA-256'})`, () => {
      const cb = withBinding ? randomBytes(48) : undefined;
      const server = new TestServer(PASSWORD, cb);
      const client = new ScramClient(PASSWORD, { channelBinding: cb, tls: withBinding });
      const serverFinal = server.final(client.handleServerFirst(server.first(client.clientFirstMessage())));
      assert.match(serverFinal, /^v=/);
      assert.doesNotThrow(() => client.verifyServerFinal(serverFinal));
    });
  }

  it('is detected by the server when the channel binding differs (MITM with another certificate)', () => {
    const server = new TestServer(PASSWORD, randomBytes(32));
    const client = new ScramClient(PASSWORD, { channelBinding: randomBytes(32) });
    assert.equal(server.final(client.handleServerFirst(server.first(client.clientFirstMessage()))), 'e=channel-bindings-dont-match');
  });

  it('produces a proof the server rejects when the password is wrong', () => {
    const server = new TestServer(PASSWORD);
    const client = new ScramClient('wrong password');
    assert.equal(server.final(client.handleServerFirst(server.first(client.clientFirstMessage()))), 'e=invalid-proof');
  });

  it('rejects a server that does not know the password (bad server signature), without leaking secrets', () => {
    const real = new TestServer(PASSWORD);
    const client = new ScramClient(PASSWORD);
    const clientFinal = client.handleServerFirst(real.first(client.clientFirstMessage()));
    // A well-formed signature made without the password.
    const bogus = `v=${createHmac('sha256', 'x').update('y').digest('base64')}`;
    const proof = /,p=(.*)$/.exec(clientFinal)![1]!;
    assert.throws(() => client.verifyServerFinal(bogus), (err) => assertNoSecrets(err, PASSWORD, proof) && /signature mismatch/.test((err as Error).message));
    // A failed exchange cannot be continued.
    assert.throws(() => client.verifyServerFinal(real.final(clientFinal)), /out of order/);
  });

  it('rejects a truncated server signature', () => {
    const server = new TestServer(PASSWORD);
    const client = new ScramClient(PASSWORD);
    const good = server.final(client.handleServerFirst(server.first(client.clientFirstMessage())));
    const truncated = `v=${Buffer.from(good.slice(2), 'base64').subarray(0, 16).toString('base64')}`;
    assert.throws(() => client.verifyServerFinal(truncated), /signature mismatch/);
  });

  it('reports a server error (e=) in server-final', () => {
    const client = new ScramClient(PASSWORD, { nonce: 'abc' });
    client.clientFirstMessage();
    client.handleServerFirst('r=abcdef,s=c2FsdA==,i=1');
    assert.throws(() => client.verifyServerFinal('e=invalid-proof'), (err) => assertNoSecrets(err, PASSWORD) && /rejected.*invalid-proof/.test((err as Error).message));
  });

  const badServerFirsts: [string, string, RegExp][] = [
    ['nonce not extending ours', 'r=zzzdef,s=c2FsdA==,i=4096', /nonce mismatch/],
    ['nonce equal to ours', 'r=abc,s=c2FsdA==,i=4096', /nonce mismatch/],
    ['salt not base64', 'r=abcdef,s=not*base64,i=4096', /salt/],
    ['salt badly padded', 'r=abcdef,s=c2FsdA=,i=4096', /salt/],
    ['empty salt', 'r=abcdef,s=,i=4096', /salt/],
    ['zero iterations', 'r=abcdef,s=c2FsdA==,i=0', /iteration/],
    ['negative iterations', 'r=abcdef,s=c2FsdA==,i=-1', /iteration/],
    ['non-numeric iterations', 'r=abcdef,s=c2FsdA==,i=4k', /iteration/],
    ['too many iterations', `r=abcdef,s=c2FsdA==,i=${MAX_ITERATIONS + 1}`, /exceeds/],
    ['mandatory extension', 'm=ext,r=abcdef,s=c2FsdA==,i=4096', /mandatory extension/],
    ['attributes out of order', 's=c2FsdA==,r=abcdef,i=4096', /malformed/],
    ['missing iteration count', 'r=abcdef,s=c2FsdA==', /malformed/],
    ['garbage', 'hello', /malformed/],
    ['empty', '', /empty/],
  ];
  for (const [name, serverFirst, why] of badServerFirsts) {
    it(`rejects a server-first-message with ${name}`, () => {
      const client = new ScramClient(PASSWORD, { nonce: 'abc' });
      client.clientFirstMessage();
      assert.throws(() => client.handleServerFirst(serverFirst), (err) => assertNoSecrets(err, PASSWORD) && why.test((err as Error).message));
    });
  }

  it('accepts extensions after the iteration count (RFC 5802 §7)', () => {
    const client = new ScramClient(PASSWORD, { nonce: 'abc' });
    client.clientFirstMessage();
    assert.match(client.handleServerFirst('r=abcdef,s=c2FsdA==,i=1,x=future'), /^c=biws,r=abcdef,p=/);
  });

  it('honours a lower maxIterations', () => {
    const client = new ScramClient(PASSWORD, { nonce: 'abc', maxIterations: 4096 });
    client.clientFirstMessage();
    assert.throws(() => client.handleServerFirst('r=abcdef,s=c2FsdA==,i=4097'), /exceeds the allowed maximum 4096/);
  });

  it('enforces the message order', () => {
    const c = new ScramClient(PASSWORD, { nonce: 'abc' });
    assert.throws(() => c.handleServerFirst('r=abcdef,s=c2FsdA==,i=1'), /out of order/);
    const d = new ScramClient(PASSWORD, { nonce: 'abc' });
    d.clientFirstMessage();
    assert.throws(() => d.verifyServerFinal('v=AAAA'), /out of order/);
  });

  it('SASLprep-normalises the password: composed and decomposed forms give the same proof', () => {
    const run = (password: string) => {
      const c = new ScramClient(password, { nonce: 'abc' });
      c.clientFirstMessage();
      return c.handleServerFirst('r=abcdef,s=c2FsdA==,i=16');
    };
    assert.equal(run('caf\u00e9'), run('cafe\u0301'));
    assert.equal(run('pass\u00a0word'), run('pass word'));
    assert.notEqual(run('caf\u00e9'), run('cafe'));
  });
});

describe('ScramKeyCache: the keys derived from a password, kept between logins', () => {
  /** One exchange against `server` with a fixed nonce; returns the client-final and whether the server accepted it. */
  function exchange(password: string, server: TestServer, keyCache: ScramKeyCache | null | undefined) {
    const client = new ScramClient(password, { nonce: 'fixed-nonce', keyCache });
    const serverFirst = server.first(client.clientFirstMessage());
    const clientFinal = client.handleServerFirst(serverFirst);
    const serverFinal = server.final(clientFinal);
    client.verifyServerFinal(serverFinal);
    return { serverFirst, clientFinal };
  }

  it('gives the same messages as deriving anew, and runs PBKDF2 once per password, salt and count', () => {
    const cache = new ScramKeyCache();
    const server = new TestServer(PASSWORD);
    const first = exchange(PASSWORD, server, cache);
    assert.deepEqual([cache.hits, cache.misses, cache.size], [0, 1, 1]);
    for (let i = 0; i < 3; i++) exchange(PASSWORD, server, cache);
    assert.deepEqual([cache.hits, cache.misses, cache.size], [3, 1, 1]);
    // A client that derives its keys itself answers the same server-first with the same client-final.
    const uncached = new ScramClient(PASSWORD, { nonce: 'fixed-nonce', keyCache: null });
    uncached.clientFirstMessage();
    const cached = new ScramClient(PASSWORD, { nonce: 'fixed-nonce', keyCache: cache });
    cached.clientFirstMessage();
    assert.equal(cached.handleServerFirst(first.serverFirst), uncached.handleServerFirst(first.serverFirst));
    assert.equal(cache.hits, 4);
  });

  it('the RFC 7677 vector still comes out right through a warm cache', () => {
    const cache = new ScramKeyCache();
    for (let i = 0; i < 2; i++) {
      const c = new ScramClient(RFC.password, { username: 'user', nonce: 'rOprNGfwEbeRWgbNEkqO', keyCache: cache });
      c.clientFirstMessage();
      assert.equal(c.handleServerFirst(RFC.serverFirst), RFC.clientFinal);
      c.verifyServerFinal(RFC.serverFinal);
    }
    assert.deepEqual([cache.hits, cache.misses], [1, 1]);
  });

  it('keeps apart other passwords, salts and counts: a wrong password is still refused after a right one', () => {
    const cache = new ScramKeyCache();
    const server = new TestServer(PASSWORD);
    exchange(PASSWORD, server, cache);
    assert.throws(() => exchange('wrong password', server, cache), /server signature mismatch|rejected/);
    exchange(PASSWORD, new TestServer(PASSWORD), cache); // another salt
    const sf = (i: number) => `r=fixed-nonceXYZ,s=${Buffer.from('salt').toString('base64')},i=${i}`;
    const at = (i: number) => {
      const c = new ScramClient(PASSWORD, { nonce: 'fixed-nonce', keyCache: cache });
      c.clientFirstMessage();
      return c.handleServerFirst(sf(i));
    };
    assert.notEqual(at(16), at(17));
    assert.equal(cache.misses, 5);
    assert.equal(cache.size, 5);
  });

  it('is bounded: past maxEntries the least recently used entry goes', () => {
    const cache = new ScramKeyCache(2);
    const keys = (tag: string) => ({ clientKey: Buffer.from(tag), storedKey: Buffer.from(tag), serverKey: Buffer.from(tag) });
    const salt = Buffer.from('salt');
    cache.get('a', salt, 1, () => keys('a'));
    cache.get('b', salt, 1, () => keys('b'));
    cache.get('a', salt, 1, () => keys('a again')); // a is now the most recently used
    cache.get('c', salt, 1, () => keys('c')); // b goes
    assert.equal(cache.size, 2);
    assert.equal(cache.get('a', salt, 1, () => keys('a anew')).clientKey.toString(), 'a');
    assert.equal(cache.get('b', salt, 1, () => keys('b anew')).clientKey.toString(), 'b anew');
    assert.equal(cache.size, 2);
    const none = new ScramKeyCache(0);
    none.get('a', salt, 1, () => keys('a'));
    assert.equal(none.size, 0);
    assert.throws(() => new ScramKeyCache(-1), RangeError);
  });

  it('is used by default, and its keys are no password nor salt in any form', () => {
    const before = scramKeys.misses;
    const server = new TestServer('default cache password');
    exchange('default cache password', server, undefined);
    exchange('default cache password', server, undefined);
    assert.equal(scramKeys.misses, before + 1);
    const ids = [...(scramKeys as unknown as { entries: Map<string, unknown> }).entries.keys()].join('\n');
    for (const secret of ['default cache password', Buffer.from('default cache password').toString('base64'), server.salt.toString('base64')]) {
      assert.ok(!ids.includes(secret), 'no secret in the cache keys');
    }
  });
});

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
