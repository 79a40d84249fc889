import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { exportSPKI, generateKeyPair, SignJWT, type JWTPayload } from 'jose';
import pg from 'pg';
import { encodeStartupMessage, fe } from '../../src/protocol/index.js';
import { PgCluster } from '../helpers/pg-cluster.js';
import { startPgwardProcess } from '../helpers/pgward-process.js';
import { logEvents, startTestProxy, type TestProxy } from '../helpers/proxy.js';
import { RawClient } from '../helpers/raw-client.js';
import { metricValue } from '../helpers/scrape.js';
import { until } from '../helpers/wait.js';

// SASL OAUTHBEARER as PostgreSQL 18 speaks it, byte by byte from a raw client, beside a password
// rule on the same listener; clientAuth rules decide which connection gets which.

const ISSUER = 'https://issuer.example.com';
const SCOPE = 'openid email';
type Key = Awaited<ReturnType<typeof generateKeyPair>>;

async function mint(key: Key, claims: JWTPayload, exp: string | number = '5m') {
  return new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA' }).setIssuedAt().setExpirationTime(exp).sign(key.privateKey);
}

/** A SASLInitialResponse for OAUTHBEARER with this client initial response (null: none). */
function initialResponse(data: string | null): Buffer {
  const mech = Buffer.from('OAUTHBEARER\0');
  const body = data === null ? Buffer.alloc(0) : Buffer.from(data, 'latin1');
  const len = Buffer.alloc(4);
  len.writeInt32BE(data === null ? -1 : body.length);
  const payload = Buffer.concat([mech, len, body]);
  const head = Buffer.alloc(5);
  head[0] = 0x70;
  head.writeInt32BE(4 + payload.length, 1);
  return Buffer.concat([head, payload]);
}

const bearer = (token: string) => `n,,\x01auth=Bearer ${token}\x01\x01`;

type Auth = { kind: string; mechanisms?: string[]; data?: Buffer };

async function startOAuth(proxy: TestProxy, user: string, database: string): Promise<RawClient> {
  const c = await RawClient.connect(proxy.port);
  c.write(encodeStartupMessage([['user', user], ['database', database]]));
  await until(() => c.messages.some((m) => m.type === 'Authentication' || m.type === 'ErrorResponse'), 5_000, 'first answer');
  return c;
}

function auths(c: RawClient): Auth[] {
  return c.messages.filter((m) => m.type === 'Authentication').map((m) => m.body() as Auth);
}

describe('clientAuth rules and OAUTHBEARER', () => {
  let cluster: PgCluster;
  let dir: string;
  let key: Key;
  let proxy: TestProxy;

  before(async () => {
    cluster = await PgCluster.start({});
    dir = await mkdtemp(join(tmpdir(), 'pgward-oauth-'));
    key = await generateKeyPair('EdDSA', { extractable: true });
    await writeFile(join(dir, 'key.pem'), await exportSPKI(key.publicKey));
    await writeFile(join(dir, 'backends.json'), JSON.stringify({ '*': `postgres://postgres@127.0.0.1:${cluster.port}/postgres?sslmode=disable` }));
    await writeFile(
      join(dir, 'pgward.yaml'),
      [
        'clientAuth:',
        '  - { database: forbidden, method: reject }',
        '  - { database: [oauthdb, /oauth_.*/], method: oauth }',
        '  - { database: postgres, address: [127.0.0.0/8, "::1/128"], method: password }',
        `oauth: { issuer: "${ISSUER}", scope: "${SCOPE}" }`,
      ].join('\n'),
    );
    proxy = await startTestProxy([
      '--insecure', '--config', join(dir, 'pgward.yaml'), '--backends', join(dir, 'backends.json'),
      '--signingKeys', join(dir, 'key.pem'), '--requireUserMatch=false',
    ]);
  });
  after(async () => {
    await proxy?.close();
    await cluster?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('offers OAUTHBEARER to an oauth rule and logs in with a valid bearer token', async () => {
    await using c = await startOAuth(proxy, 'alice', 'oauthdb');
    assert.deepEqual(auths(c)[0], { kind: 'SASL', mechanisms: ['OAUTHBEARER'] });
    const token = await mint(key, { sub: 'alice', iss: ISSUER });
    c.write(initialResponse(bearer(token)));
    await until(() => c.messages.some((m) => m.type === 'ReadyForQuery'), 5_000, 'logged in');
    assert.equal(auths(c).at(-1)!.kind, 'Ok', 'AuthenticationOk with no SASLFinal before it');
    assert.equal(auths(c).length, 2);
    c.write(fe.query("select 'through oauth' as v").raw);
    await until(() => c.messages.some((m) => m.type === 'DataRow'), 5_000, 'a row');
    assert.ok(!proxy.logs.some((l) => l.includes(token)), 'the token is in no log line');
  });

  it('answers discovery with the error JSON, reads the 0x01, then FATAL 28000; not counted as a failure', async () => {
    const connections = async (result: string) =>
      metricValue(await proxy.proxy.metrics.registry.metrics(), 'pgward_connections_total', { result });
    const [discoveryBefore, refusedBefore] = [await connections('discovery'), await connections('refused')];
    await using c = await startOAuth(proxy, 'alice', 'oauth_reports');
    c.write(initialResponse('n,,\x01auth=\x01\x01'));
    await until(() => auths(c).length === 2, 5_000, 'the error challenge');
    const challenge = auths(c)[1]!;
    assert.equal(challenge.kind, 'SASLContinue');
    assert.deepEqual(JSON.parse(challenge.data!.toString()), {
      status: 'invalid_token',
      'openid-configuration': `${ISSUER}/.well-known/openid-configuration`,
      scope: SCOPE,
    });
    assert.equal(c.errors().length, 0, 'no error before the client has answered');
    c.write(fe.saslResponse(Buffer.of(1)).raw);
    await c.closedWithin(5_000);
    assert.equal(c.errors()[0]?.code, '28000');
    assert.equal(c.errors()[0]?.message, 'OAuth bearer authentication failed for user "alice"');
    assert.ok(logEvents(proxy.logs, 'OAuth discovery answered').length >= 1);
    // The first half of a login, counted as such: not as a refused connection.
    await until(async () => (await connections('discovery')) === discoveryBefore + 1, 2_000, 'counted as discovery');
    assert.equal(await connections('refused'), refusedBefore);
  });

  it('answers the empty challenge when the client sent no initial response', async () => {
    await using c = await startOAuth(proxy, 'alice', 'oauthdb');
    c.write(initialResponse(null));
    await until(() => auths(c).length === 2, 5_000, 'the empty challenge');
    assert.deepEqual(auths(c)[1], { kind: 'SASLContinue', data: Buffer.alloc(0) });
    c.write(fe.saslResponse(Buffer.from(bearer(await mint(key, { sub: 'alice', iss: ISSUER })))).raw);
    await until(() => c.messages.some((m) => m.type === 'ReadyForQuery'), 5_000, 'logged in');
  });

  for (const [what, claims, exp, reason] of [
    ['an expired token', { sub: 'alice', iss: ISSUER }, Math.floor(Date.now() / 1000) - 3600, 'token expired'],
    ['a token of another issuer', { sub: 'alice', iss: 'https://elsewhere.example.com' }, '5m', 'issuer mismatch'],
  ] as const) {
    it(`refuses ${what} with the error JSON and the reason in the detail`, async () => {
      await using c = await startOAuth(proxy, 'alice', 'oauthdb');
      const token = await mint(key, claims, exp);
      c.write(initialResponse(bearer(token)));
      await until(() => auths(c).length === 2, 5_000, 'the error challenge');
      assert.equal(JSON.parse(auths(c)[1]!.data!.toString()).status, 'invalid_token');
      c.write(fe.saslResponse(Buffer.of(1)).raw);
      await c.closedWithin(5_000);
      const err = c.errors()[0]!;
      assert.equal(err.code, '28000');
      assert.equal(err.detail, reason);
      assert.ok(!JSON.stringify(c.errors()).includes(token) && !proxy.logs.some((l) => l.includes(token)), 'the token is never echoed');
    });
  }

  it('refuses a token signed by another key', async () => {
    await using c = await startOAuth(proxy, 'alice', 'oauthdb');
    const other = await generateKeyPair('EdDSA');
    c.write(initialResponse(bearer(await mint(other, { sub: 'alice', iss: ISSUER }))));
    await until(() => auths(c).length === 2, 5_000, 'the error challenge');
    c.write(fe.saslResponse(Buffer.of(1)).raw);
    await c.closedWithin(5_000);
    assert.equal(c.errors()[0]?.detail, 'signature invalid');
  });

  for (const [what, data, detail] of [
    ['channel binding', 'p=tls-server-end-point,,\x01auth=Bearer x\x01\x01', /does not support channel binding/],
    ['no kvsep after the gs2 header', 'n,,auth=Bearer x\x01\x01', /Key-value separator expected/],
    ['no final terminator', 'n,,\x01auth=Bearer x\x01', /final terminator/],
    ['two auth values', 'n,,\x01auth=Bearer x\x01auth=Bearer y\x01\x01', /multiple auth values/],
  ] as const) {
    it(`a malformed initial response (${what}) is FATAL 08P01`, async () => {
      await using c = await startOAuth(proxy, 'alice', 'oauthdb');
      c.write(initialResponse(data));
      await c.closedWithin(5_000);
      const err = c.errors()[0]!;
      assert.equal(err.code, '08P01');
      assert.equal(err.message, 'malformed OAUTHBEARER message');
      assert.match(err.detail ?? '', detail);
    });
  }

  it('after the error challenge, anything but a single 0x01 (e.g. a second initial response) is 08P01', async () => {
    await using c = await startOAuth(proxy, 'alice', 'oauthdb');
    c.write(initialResponse('n,,\x01auth=\x01\x01'));
    await until(() => auths(c).length === 2, 5_000, 'the error challenge');
    c.write(initialResponse(bearer(await mint(key, { sub: 'alice', iss: ISSUER }))));
    await c.closedWithin(5_000);
    assert.equal(c.errors()[0]?.code, '08P01');
    assert.match(c.errors()[0]?.detail ?? '', /kvsep/);
  });

  it('a password rule beside it: node-postgres logs in to postgres with the token as the password', async () => {
    const token = await mint(key, { sub: 'alice', iss: ISSUER });
    const client = new pg.Client({ connectionString: proxy.url('alice', token, 'postgres') });
    await client.connect();
    assert.deepEqual((await client.query('select 1 as ok')).rows, [{ ok: 1 }]);
    await client.end();
  });

  it('a reject rule and a connection no rule matches get FATAL 28000 in PostgreSQL words, before any password', async () => {
    for (const [database, message] of [
      ['forbidden', 'pgward clientAuth rejects connection for host "127.0.0.1", user "alice", database "forbidden", no encryption'],
      ['elsewhere', 'no pgward clientAuth rule for host "127.0.0.1", user "alice", database "elsewhere", no encryption'],
    ]) {
      await using c = await startOAuth(proxy, 'alice', database!);
      await c.closedWithin(5_000);
      assert.equal(auths(c).length, 0, 'no password was asked for');
      assert.deepEqual([c.errors()[0]?.code, c.errors()[0]?.message], ['28000', message]);
    }
  });

  it('SIGHUP reloads the rules for new connections (a real pgward process)', async () => {
    const config = join(dir, 'reloaded.yaml');
    await writeFile(config, 'clientAuth:\n  - { database: postgres, method: reject }\n');
    await using p = await startPgwardProcess([
      '--insecure', '--config', config, '--backends', join(dir, 'backends.json'), '--signingKeys', join(dir, 'key.pem'),
      '--requireUserMatch=false', '--refresh', '0',
    ]);
    const attempt = async () => {
      const client = new pg.Client({ host: '127.0.0.1', port: p.port, user: 'alice', database: 'postgres', password: await mint(key, { sub: 'alice' }) });
      try {
        await client.connect();
        return (await client.query('select 1 as ok')).rows[0].ok as number;
      } catch (err) {
        return (err as { message: string }).message;
      } finally {
        await client.end().catch(() => {});
      }
    };
    assert.match(String(await attempt()), /pgward clientAuth rejects connection/);
    await writeFile(config, 'clientAuth:\n  - { database: postgres, user: [alice, bob], method: password }\n');
    const mark = p.events.length;
    p.signal('SIGHUP');
    await p.waitFor('configuration reloaded', 10_000, mark);
    assert.equal(await attempt(), 1);
  });
});
