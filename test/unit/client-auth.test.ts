import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { describeClientAuth, matchClientAuth, parseClientAuth } from '../../src/auth/client-auth.js';
import { parseClientAuthSettings } from '../../src/config/client-auth-config.js';
import { bearerToken, oauthErrorJson, parseInitialResponse } from '../../src/auth/oauth-bearer.js';

const conn = (over: Partial<{ database: string; user: string; address: string; tls: boolean }> = {}) => ({
  database: 'app', user: 'alice', address: '10.1.2.3', tls: true, ...over,
});

function rules(value: unknown) {
  const problems: string[] = [];
  const parsed = parseClientAuth(value, problems);
  assert.deepEqual(problems, []);
  return parsed!;
}

describe('clientAuth rules', () => {
  it('the first rule whose conditions all hold decides', () => {
    const r = rules([
      { database: 'app', user: 'bob', method: 'reject' },
      { database: ['app', 'other'], method: 'oauth' },
      { method: 'password' },
    ]);
    assert.equal(matchClientAuth(r, conn())?.index, 2);
    assert.equal(matchClientAuth(r, conn({ user: 'bob' }))?.method, 'reject');
    assert.equal(matchClientAuth(r, conn({ database: 'x' }))?.index, 3);
  });

  it('regexes match whole names', () => {
    const r = rules([{ user: '/svc-.*/', method: 'oauth' }]);
    assert.ok(matchClientAuth(r, conn({ user: 'svc-ci' })));
    assert.equal(matchClientAuth(r, conn({ user: 'x-svc-ci' })), undefined);
  });

  it('addresses: IPv4 and IPv6 CIDR, IPv4-mapped IPv6 clients, single hosts', () => {
    const r = rules([{ address: ['10.0.0.0/8', '2001:db8::/32', '192.168.1.7'], method: 'password' }]);
    for (const a of ['10.255.0.1', '::ffff:10.0.0.5', '2001:db8::17', '192.168.1.7']) assert.ok(matchClientAuth(r, conn({ address: a })), a);
    for (const a of ['11.0.0.1', '2001:db9::1', '192.168.1.8', '']) assert.equal(matchClientAuth(r, conn({ address: a })), undefined, a);
  });

  it('tls: required matches only TLS connections', () => {
    const r = rules([{ tls: 'required', method: 'password' }]);
    assert.ok(matchClientAuth(r, conn({ tls: true })));
    assert.equal(matchClientAuth(r, conn({ tls: false })), undefined);
  });

  it('reports every problem with where it is', () => {
    const problems: string[] = [];
    parseClientAuth([{ method: 'trust' }, { method: 'password', address: '10.0.0.0/33', user: '/(/', colour: 1 }, 'x'], problems);
    assert.equal(problems.length, 5, problems.join('\n'));
    assert.ok(problems.some((p) => p.startsWith('clientAuth[0].method')));
    assert.ok(problems.some((p) => p.startsWith('clientAuth[1].colour: unknown key')));
    assert.ok(problems.some((p) => p.startsWith('clientAuth[1].address')));
    assert.ok(problems.some((p) => p.startsWith('clientAuth[1].user')));
    assert.ok(problems.some((p) => p.startsWith('clientAuth[2]')));
  });

  it('describes rules in order', () => {
    assert.deepEqual(describeClientAuth(rules([{ database: 'app', tls: 'required', method: 'oauth' }, { method: 'reject' }])), [
      'clientAuth 1: database app; TLS required → oauth',
      'clientAuth 2: any connection → reject',
    ]);
  });

  it('an oauth rule needs the jwt provider and an issuer; a second issuer is refused', () => {
    const check = (jwt: { provider: string; issuer?: string; oidcDiscovery?: string }, oauth?: unknown) => {
      const problems: string[] = [];
      parseClientAuthSettings({ clientAuth: [{ method: 'oauth' }], oauth }, jwt, problems);
      return problems;
    };
    assert.deepEqual(check({ provider: 'jwt', oidcDiscovery: 'https://idp/.well-known/openid-configuration' }), []);
    assert.deepEqual(check({ provider: 'jwt' }, { issuer: 'https://idp' }), []);
    assert.match(check({ provider: 'jwt' }).join(), /needs the issuer/);
    assert.match(check({ provider: 'passthrough' }, { issuer: 'https://idp' }).join(), /needs the jwt auth provider/);
    assert.match(check({ provider: 'jwt', issuer: 'https://a' }, { issuer: 'https://b' }).join(), /differs from --issuer/);
  });
});

describe('OAUTHBEARER messages', () => {
  it('reads the auth value of an initial response; empty is discovery', () => {
    assert.equal(parseInitialResponse(Buffer.from('n,,\x01auth=Bearer abc.def\x01\x01')), 'Bearer abc.def');
    assert.equal(parseInitialResponse(Buffer.from('y,,\x01host=db\x01auth=\x01\x01')), '');
  });

  it('refuses what RFC 7628 does not allow, naming the byte', () => {
    const detail = (s: string) => {
      try {
        parseInitialResponse(Buffer.from(s, 'latin1'));
      } catch (e) {
        return `${(e as { sqlstate: string }).sqlstate} ${(e as { detail?: string }).detail ?? (e as Error).message}`;
      }
      return 'accepted';
    };
    assert.match(detail('x,,\x01auth=\x01\x01'), /08P01 Unexpected channel-binding flag 'x'/);
    assert.match(detail('n;,\x01auth=\x01\x01'), /Comma expected, but found character ';'/);
    assert.match(detail('n,a=bob,\x01auth=\x01\x01'), /^0A000 client uses authorization identity/);
    assert.match(detail('n,,\x01auth=Bearer x\x01\x01junk'), /additional data after the final terminator/);
    assert.match(detail('n,,\x01=x\x01\x01'), /empty key name/);
    assert.match(detail('n,,\x01k1=x\x01\x01'), /invalid key name/);
    assert.match(detail('n,,\x01auth=\x7f\x01\x01'), /invalid value/);
    assert.match(detail('n,,\x01host=db\x01\x01'), /does not contain an auth value/);
    assert.match(detail(''), /empty/);
  });

  it('takes a bearer token with the scheme in any case', () => {
    assert.equal(bearerToken('bEaReR eyJ.a-b_c.d~+/=='), 'eyJ.a-b_c.d~+/==');
    assert.equal(bearerToken('Basic abc'), undefined);
    assert.equal(bearerToken('Bearer a b'), undefined);
  });

  it('names the discovery document as PostgreSQL 18 does', () => {
    assert.deepEqual(JSON.parse(oauthErrorJson({ issuer: 'https://idp.example/', scope: 'openid' })), {
      status: 'invalid_token',
      'openid-configuration': 'https://idp.example/.well-known/openid-configuration',
      scope: 'openid',
    });
    const explicit = 'https://idp.example/.well-known/oauth-authorization-server';
    assert.equal(JSON.parse(oauthErrorJson({ issuer: explicit, scope: 's' }))['openid-configuration'], explicit);
  });
});
