import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ScramClient, scramKeys } from '../../src/backend/scram.js';
import { ScramKeyCache } from '../../src/backend/scram-keys.js';
import { PASSWORD, RFC, TestServer } from '../helpers/scram-server.js';

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
