import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';
import { tokenResolver, type JwtProviderOptions } from '../../src/auth/jwt-provider.js';
import { loadKeySet, type KeySet } from '../../src/auth/key-sources.js';
import type { ClientChannel } from '../../src/auth/provider.js';
import { parseBackends } from '../../src/auth/routing.js';
import { VerifiedTokenCache } from '../../src/auth/token-cache.js';
import type { VerifiedToken } from '../../src/auth/jwt-verify.js';
import { PgError } from '../../src/protocol/errors.js';
import { silentLogger } from '../../src/telemetry/log.js';

type Pair = { publicKey: CryptoKey; privateKey: CryptoKey };

const nowSec = () => Math.floor(Date.now() / 1000);

function mint(pair: Pair, claims: JWTPayload, exp: number | null = nowSec() + 600, kid?: string): Promise<string> {
  const jwt = new SignJWT(claims).setProtectedHeader({ alg: 'ES256', ...(kid ? { kid } : {}) }).setIssuedAt();
  if (exp !== null) jwt.setExpirationTime(exp);
  return jwt.sign(pair.privateKey);
}

function channel(user: string): ClientChannel {
  return {
    client: { address: '127.0.0.1', port: 1, tls: false },
    startup: new Map([['user', user]]),
    log: silentLogger,
    send() {},
    read: () => Promise.reject(new Error('not used')),
    reserveCancelKey: () => ({ processId: 1, secretKey: Buffer.alloc(4) }),
    handshakeComplete() {},
  };
}

const routes = parseBackends(
  { alice: 'postgres://alice:pw@127.0.0.1:5432/db', bob: 'postgres://bob:pw@127.0.0.1:5432/db' },
  'test backends',
);

/** A resolver over `keys` with its cache in view; `revoked` names revoked subjects. */
function resolverOver(keys: () => KeySet, opts: Partial<JwtProviderOptions> = {}) {
  const cache = new VerifiedTokenCache();
  const revoked = new Set<string>();
  const resolve = tokenResolver({
    current: () => ({ keys: keys(), routes }),
    jwtField: 'sub',
    verify: { algorithms: ['ES256'], clockToleranceSec: 0, requireExp: true },
    requireUserMatch: true,
    revoked: (sub) => sub !== undefined && revoked.has(sub),
    tokenCache: cache,
    ...opts,
  });
  return { cache, revoked, resolve: (token: string, user = 'alice') => resolve(token, channel(user)) };
}

async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof PgError, String(err));
    return `${err.sqlstate} ${err.message}`;
  }
  assert.fail('expected a refusal');
}

describe('VerifiedTokenCache', () => {
  const keys = { resolve: async () => assert.fail(), describe: () => [] } as unknown as KeySet;
  const verified = (sub: string, expiresAt?: number): VerifiedToken => ({ claims: { sub }, expiresAt });

  it('answers until exp and never at or after it', () => {
    let now = 1_000_000;
    const cache = new VerifiedTokenCache(10, () => now);
    cache.keep('t', keys, verified('alice', now + 5000));
    assert.equal(cache.get('t', keys)?.claims.sub, 'alice');
    now += 4999;
    assert.ok(cache.get('t', keys));
    now += 1;
    assert.equal(cache.get('t', keys), undefined);
    assert.equal(cache.size, 0, 'the expired entry is gone');
    cache.keep('past', keys, verified('alice', now - 1));
    cache.keep('no exp', keys, verified('alice'));
    assert.equal(cache.size, 0, 'tokens already expired or without exp are not kept');
  });

  it('keeps nothing a token could be read back from, and never gives one token another token’s entry', () => {
    const cache = new VerifiedTokenCache(10);
    const soon = Date.now() + 60_000;
    cache.keep('token-A', keys, verified('alice', soon));
    cache.keep('token-B', keys, verified('bob', soon));
    assert.equal(cache.get('token-A', keys)?.claims.sub, 'alice');
    assert.equal(cache.get('token-B', keys)?.claims.sub, 'bob');
    assert.equal(cache.get('token-A ', keys), undefined);
    assert.equal(cache.get('token-', keys), undefined);
    const ids = [...(cache as unknown as { entries: Map<string, unknown> }).entries.keys()];
    assert.ok(ids.every((id) => !id.includes('token')), 'entries are found by a hash');
  });

  it('is bounded, dropping the least recently used entry', () => {
    const cache = new VerifiedTokenCache(2);
    const soon = Date.now() + 60_000;
    cache.keep('a', keys, verified('a', soon));
    cache.keep('b', keys, verified('b', soon));
    cache.get('a', keys);
    cache.keep('c', keys, verified('c', soon));
    assert.equal(cache.size, 2);
    assert.ok(cache.get('a', keys));
    assert.equal(cache.get('b', keys), undefined);
    assert.ok(cache.get('c', keys));
    const none = new VerifiedTokenCache(0);
    none.keep('a', keys, verified('a', soon));
    assert.equal(none.size, 0);
  });

  it('answers only for the same key set at the same version', () => {
    const cache = new VerifiedTokenCache(10);
    let version = 1;
    const versioned = { ...keys, get version() { return version; } } as KeySet;
    cache.keep('t', versioned, verified('alice', Date.now() + 60_000));
    assert.ok(cache.get('t', versioned));
    assert.equal(cache.get('t', keys), undefined, 'another key set');
    cache.keep('t', versioned, verified('alice', Date.now() + 60_000));
    version = 2;
    assert.equal(cache.get('t', versioned), undefined, 'the keys changed');
  });
});

describe('tokenResolver with the verified-token cache', () => {
  let pair: Pair;
  let keys: KeySet;

  before(async () => {
    pair = await generateKeyPair('ES256', { extractable: true });
    keys = await loadKeySet({ signingKeys: [await exportSPKI(pair.publicKey)], algorithms: ['ES256'] });
  });

  it('verifies a token once and routes it the same way at every login', async () => {
    const r = resolverOver(() => keys);
    const token = await mint(pair, { sub: 'alice' });
    const first = await r.resolve(token);
    for (let i = 0; i < 3; i++) assert.deepEqual(await r.resolve(token), first);
    assert.deepEqual([r.cache.misses, r.cache.hits], [1, 3]);
    assert.equal(first.target.user, 'alice');
  });

  it('still refuses a cached token once it is revoked, and for another user', async () => {
    const r = resolverOver(() => keys);
    const token = await mint(pair, { sub: 'alice', jti: 'revoke-me' });
    await r.resolve(token);
    assert.match(await refusal(r.resolve(token, 'bob')), /^28000 user "bob" does not match the token/);
    r.revoked.add('alice');
    assert.match(await refusal(r.resolve(token)), /^28P01 token revoked/);
    assert.equal(r.cache.hits, 2, 'both refusals came from the cached verification');
  });

  it('refuses a cached token after its exp (verified again, without clock tolerance here)', async () => {
    const r = resolverOver(() => keys);
    const exp = nowSec() + 1;
    const token = await mint(pair, { sub: 'alice' }, exp);
    await r.resolve(token);
    await new Promise((done) => setTimeout(done, exp * 1000 - Date.now() + 50));
    assert.match(await refusal(r.resolve(token)), /^28P01 token expired/);
  });

  it('gives each token its own result; a forged signature is refused after the genuine token was cached', async () => {
    const r = resolverOver(() => keys);
    const alice = await mint(pair, { sub: 'alice' });
    const bob = await mint(pair, { sub: 'bob' });
    assert.equal((await r.resolve(alice)).identity, 'alice');
    assert.equal((await r.resolve(bob, 'bob')).identity, 'bob');
    assert.equal((await r.resolve(alice)).identity, 'alice');
    const [h, p, s] = alice.split('.');
    const flipped = s![5] === 'A' ? 'B' : 'A';
    const forged = `${h}.${p}.${s!.slice(0, 5)}${flipped}${s!.slice(6)}`;
    assert.match(await refusal(r.resolve(forged)), /^28P01 signature invalid/);
    const otherPayload = `${h}.${Buffer.from(JSON.stringify({ sub: 'bob', exp: nowSec() + 600 })).toString('base64url')}.${s}`;
    assert.match(await refusal(r.resolve(otherPayload, 'bob')), /^28P01 signature invalid/);
  });

  it('a reload (new keys without the signing key) refuses a token the old keys had verified', async () => {
    let current = keys;
    const r = resolverOver(() => current);
    const token = await mint(pair, { sub: 'alice' });
    await r.resolve(token);
    const stranger = await generateKeyPair('ES256', { extractable: true });
    current = await loadKeySet({ signingKeys: [await exportSPKI(stranger.publicKey)], algorithms: ['ES256'] });
    assert.match(await refusal(r.resolve(token)), /^28P01 signature invalid/);
  });

  describe('a remote JWKS that drops a key', () => {
    let server: Server;
    let served: { keys: JWK[] };
    let remote: KeySet;

    before(async () => {
      served = { keys: [{ ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'ES256' }] };
      server = createServer((_req, res) => {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify(served));
      });
      await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`;
      remote = await loadKeySet({ signingKeys: [url], algorithms: ['ES256'], refreshMs: 50 });
    });

    after(async () => {
      remote?.close?.();
      server?.closeAllConnections();
      await new Promise((done) => server?.close(done));
    });

    it('stops answering for tokens of the dropped key at the next refresh; an unchanged refresh keeps the entries', async () => {
      const r = resolverOver(() => remote);
      const token = await mint(pair, { sub: 'alice' }, nowSec() + 600, 'k1');
      await r.resolve(token);
      const version = remote.version;
      await new Promise((done) => setTimeout(done, 200)); // several refreshes of the same document
      assert.equal(remote.version, version, 'the same keys do not change the version');
      await r.resolve(token);
      assert.equal(r.cache.hits, 1);
      const other = await generateKeyPair('ES256', { extractable: true });
      served = { keys: [{ ...(await exportJWK(other.publicKey)), kid: 'k2', alg: 'ES256' }] };
      const deadline = Date.now() + 5000;
      while (remote.version === version && Date.now() < deadline) await new Promise((done) => setTimeout(done, 20));
      assert.notEqual(remote.version, version, 'the refresh brought other keys');
      assert.match(await refusal(r.resolve(token)), /^28P01 unknown key id/);
    });
  });
});
