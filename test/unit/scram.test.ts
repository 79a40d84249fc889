import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { MAX_ITERATIONS, ScramClient, ScramError } from '../../src/backend/scram.js';
import { PASSWORD, RFC, TestServer } from '../helpers/scram-server.js';

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
