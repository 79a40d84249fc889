import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { exportSPKI, generateKeyPair, SignJWT, type JWTPayload } from 'jose';
import pg from 'pg';
import { encodeCancelRequest, encodeStartupMessage, fe } from '../../src/protocol/index.js';
import { PgCluster } from '../helpers/pg-cluster.js';
import { logEvents, startTestProxy, type TestProxy } from '../helpers/proxy.js';
import { RawClient } from '../helpers/raw-client.js';
import { metricValue, scrapeMetric } from '../helpers/scrape.js';
import { until } from '../helpers/wait.js';

// What the console shows and counts of the sessions it watches, how it logs in itself, and when
// the name of its database is an ordinary one.

type Key = Awaited<ReturnType<typeof generateKeyPair>>;
type PgErr = { code?: string; message: string; detail?: string };

function mint(key: Key, claims: JWTPayload, exp: string | number = '10m'): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA' }).setIssuedAt().setExpirationTime(exp).sign(key.privateKey);
}

/** A connected pg client that records the error the server pushes when it closes the session. */
async function connect(proxy: TestProxy, user: string, token: string, db = 'postgres') {
  const c = new pg.Client({ connectionString: proxy.url(user, token, db) });
  const closed: { error?: PgErr } = {};
  c.on('error', (e: Error & PgErr) => void (closed.error ??= { code: e.code, message: e.message }));
  await c.connect();
  return { c, closed };
}

async function closedTotal(proxy: TestProxy, reason: string): Promise<number> {
  return metricValue(await proxy.proxy.metrics.registry.metrics(), 'pgward_sessions_closed_total', { reason });
}

describe('the console: statements, login, counting, and its database name', () => {
  let cluster: PgCluster;
  let dir: string;
  let key: Key;
  let base: string[];
  let rootToken: string;

  before(async () => {
    cluster = await PgCluster.start({ users: [{ name: 'alice', password: 'a' }, { name: 'bob', password: 'b' }] });
    // A backend database that happens to have the console's default name.
    await cluster.sql('create database pgward');
    await cluster.sql('create table pgward_t (v text); insert into pgward_t values (\'from the backend\'); grant select on pgward_t to alice', 'pgward');
    dir = await mkdtemp(join(tmpdir(), 'pgward-admin-ops-'));
    key = await generateKeyPair('EdDSA', { extractable: true });
    await writeFile(join(dir, 'key.pem'), await exportSPKI(key.publicKey));
    // No database in the URLs: the client's startup database is used.
    const url = (u: string) => `postgres://${u}@127.0.0.1:${cluster.port}?sslmode=disable`;
    await writeFile(join(dir, 'backends.json'), JSON.stringify({ alice: url('alice'), bob: url('bob') }));
    await writeFile(join(dir, 'admin.yaml'), 'admin:\n  subjects: [root]\n');
    base = ['--insecure', '--backends', join(dir, 'backends.json'), '--signingKeys', join(dir, 'key.pem')];
    rootToken = await mint(key, { sub: 'root' });
  });

  after(async () => {
    await cluster?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  for (const relay of ['native', 'js'] as const) {
    it(`SHOW SESSIONS counts each session's statements on the ${relay} relay (no --metricsAddr needed)`, async () => {
      await using proxy = await startTestProxy([...base, '--config', join(dir, 'admin.yaml'), ...(relay === 'js' ? ['--no-nativeRelay'] : [])]);
      const alice = await connect(proxy, 'alice', await mint(key, { sub: 'alice' }));
      const bob = await connect(proxy, 'bob', await mint(key, { sub: 'bob' }));
      const admin = await connect(proxy, 'root', rootToken, 'pgward');
      const rowOf = async (sub: string) => (await admin.c.query('SHOW SESSIONS')).rows.find((r) => r.subject === sub);
      try {
        // Five statements: simple, extended with parameters, a named prepared one, and one that fails.
        await alice.c.query('select 1');
        await alice.c.query('select $1::int as n', [2]);
        await alice.c.query({ name: 's', text: 'select $1::text as t', values: ['x'] });
        await alice.c.query({ name: 's', text: 'select $1::text as t', values: ['y'] });
        await assert.rejects(alice.c.query('select * from no_such_table'), (e: PgErr) => e.code === '42P01');
        const row = await rowOf('alice');
        assert.equal(row.relay, relay, 'the relay the test means to exercise');
        assert.equal(row.statements, '5');
        // Counted as they happen, between scrapes too (the native relay hands its timings in on demand).
        await alice.c.query('begin');
        await alice.c.query('select 2');
        assert.equal((await rowOf('alice')).statements, '7');
        await alice.c.query('commit');
        assert.equal((await rowOf('alice')).statements, '8');
        assert.equal((await rowOf('bob')).statements, '0', 'a session that ran nothing');
        // The console's own session counts its commands (this SHOW SESSIONS is its 5th).
        assert.equal((await rowOf('root')).statements, '5');
      } finally {
        for (const x of [alice, bob, admin]) await x.c.end().catch(() => {});
      }
    });
  }

  it('the console login has a proxy-issued BackendKeyData before ReadyForQuery, a cancel for it cancels nothing, and it is counted as accepted', async () => {
    await using proxy = await startTestProxy([...base, '--config', join(dir, 'admin.yaml'), '--metricsAddr', '127.0.0.1:0']);
    const metrics = `http://127.0.0.1:${proxy.proxy.metricsAddress!.port}/metrics`;
    const acceptedBefore = await scrapeMetric(metrics, 'pgward_connections_total', { result: 'accepted' });
    await using c = await RawClient.connect(proxy.port);
    c.write(encodeStartupMessage([['user', 'root'], ['database', 'pgward']]));
    await until(() => c.messages.some((m) => m.type === 'Authentication'), 5_000, 'the password request');
    c.write(fe.password(rootToken).raw);
    await until(() => c.messages.some((m) => m.type === 'ReadyForQuery'), 5_000, 'ReadyForQuery');
    const types = c.messages.map((m) => m.type);
    const keyAt = types.indexOf('BackendKeyData');
    assert.ok(keyAt > types.lastIndexOf('ParameterStatus') && keyAt < types.indexOf('ReadyForQuery'), types.join(' '));
    const keyMessage = c.messages[keyAt]!;
    assert.equal(keyMessage.type, 'BackendKeyData');
    const { processId, secretKey } = keyMessage.body() as { processId: number; secretKey: Buffer };
    assert.ok(processId > 0);
    assert.equal(secretKey.length, 4, 'protocol 3.0: a 4-byte secret');
    assert.equal(await scrapeMetric(metrics, 'pgward_connections_total', { result: 'accepted' }), acceptedBefore + 1);
    assert.equal(await scrapeMetric(metrics, 'pgward_logins_pending'), 0, 'the console session is past its login');

    const unknownBefore = await scrapeMetric(metrics, 'pgward_cancel_requests_total', { result: 'unknown' });
    await using cancel = await RawClient.connect(proxy.port);
    cancel.write(encodeCancelRequest(processId, secretKey));
    await cancel.closedWithin(3_000);
    assert.equal(await scrapeMetric(metrics, 'pgward_cancel_requests_total', { result: 'unknown' }), unknownBefore + 1, 'ignored: no backend has it');
    assert.equal(await scrapeMetric(metrics, 'pgward_cancel_requests_total', { result: 'backend' }), 0);
    c.write(fe.query('SHOW VERSION').raw);
    await until(() => c.messages.some((m) => m.type === 'DataRow'), 5_000, 'the console still answers');
    assert.equal(c.errors().length, 0);
    c.write(fe.terminate().raw);
    await c.closedWithin(3_000);
    // A client's own pg: the key it was given is the one above (pg reads BackendKeyData too).
    const admin = await connect(proxy, 'root', rootToken, 'pgward');
    assert.ok((admin.c as unknown as { processID?: number }).processID! > 0);
    await admin.c.end();
  });

  it('without admin subjects or claim, "pgward" is an ordinary database routed to the backend', async () => {
    await using proxy = await startTestProxy(base);
    const alice = await connect(proxy, 'alice', await mint(key, { sub: 'alice' }), 'pgward');
    try {
      const r = await alice.c.query('select current_database() as db, (select v from pgward_t) as v');
      assert.deepEqual(r.rows, [{ db: 'pgward', v: 'from the backend' }]);
    } finally {
      await alice.c.end();
    }
    // An admin: entry with no administrators is no console either.
    await writeFile(join(dir, 'nobody.yaml'), 'admin:\n  database: pgward\n');
    await using proxy2 = await startTestProxy([...base, '--config', join(dir, 'nobody.yaml')]);
    const bob = await connect(proxy2, 'bob', await mint(key, { sub: 'bob' }), 'pgward');
    assert.equal((await bob.c.query('select current_database() as db')).rows[0].db, 'pgward');
    await bob.c.end();
    assert.equal(logEvents(proxy2.logs, 'console session started').length, 0);
  });

  it('with admin configured, "pgward" is the console: an admin gets it, anyone else 28000', async () => {
    await using proxy = await startTestProxy([...base, '--config', join(dir, 'admin.yaml')]);
    const refused = new pg.Client({ connectionString: proxy.url('alice', await mint(key, { sub: 'alice' }), 'pgward') });
    await assert.rejects(refused.connect(), (e: PgErr) => e.code === '28000' && /is the pgward console/.test(e.message));
    const admin = await connect(proxy, 'root', rootToken, 'pgward');
    try {
      assert.match((await admin.c.query('SHOW VERSION')).rows[0].version, /^pgward /);
    } finally {
      await admin.c.end();
    }
  });
});

describe('sessions pgward closes itself, counted by reason', () => {
  let cluster: PgCluster;
  let dir: string;
  let key: Key;
  let args: string[];

  before(async () => {
    cluster = await PgCluster.start({ users: [{ name: 'alice', password: 'a' }, { name: 'bob', password: 'b' }] });
    dir = await mkdtemp(join(tmpdir(), 'pgward-closed-'));
    key = await generateKeyPair('EdDSA', { extractable: true });
    await writeFile(join(dir, 'key.pem'), await exportSPKI(key.publicKey));
    const url = (u: string) => `postgres://${u}@127.0.0.1:${cluster.port}/postgres?sslmode=disable`;
    await writeFile(join(dir, 'backends.json'), JSON.stringify({ alice: url('alice'), bob: url('bob') }));
    await writeFile(join(dir, 'admin.yaml'), 'admin:\n  subjects: [root]\n');
    args = [
      '--insecure', '--config', join(dir, 'admin.yaml'), '--backends', join(dir, 'backends.json'), '--signingKeys', join(dir, 'key.pem'),
      '--revocations', join(dir, 'revocations.yaml'), '--clockTolerance', '0s', '--expiryWarning', '0s', '--gracePeriod', '1s',
    ];
  });

  after(async () => {
    await cluster?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('expired: token expiry closes a session (and an admin\'s console session), each counted once', async () => {
    await using proxy = await startTestProxy(args);
    const exp = Math.floor(Date.now() / 1000) + 2;
    const alice = await connect(proxy, 'alice', await mint(key, { sub: 'alice' }, exp));
    const admin = await connect(proxy, 'root', await mint(key, { sub: 'root' }, exp), 'pgward');
    const bob = await connect(proxy, 'bob', await mint(key, { sub: 'bob' }));
    try {
      assert.equal(await closedTotal(proxy, 'expired'), 0);
      await until(() => alice.closed.error !== undefined && admin.closed.error !== undefined, 5_000, 'both expired sessions closed');
      assert.equal(alice.closed.error!.code, '28P01');
      assert.match(alice.closed.error!.message, /token expired/);
      assert.equal(admin.closed.error!.code, '28P01');
      assert.equal(await closedTotal(proxy, 'expired'), 2);
      assert.equal((await bob.c.query('select 1 as x')).rows[0].x, 1, 'a session with a valid token goes on');
      assert.equal(await closedTotal(proxy, 'admin') + (await closedTotal(proxy, 'revoked')), 0);
    } finally {
      for (const x of [alice, admin, bob]) await x.c.end().catch(() => {});
    }
  });

  it('revoked: REVOKE closes the live session and counts it', async () => {
    await using proxy = await startTestProxy(args);
    const alice = await connect(proxy, 'alice', await mint(key, { sub: 'alice', jti: 'a-1' }));
    const admin = await connect(proxy, 'root', await mint(key, { sub: 'root' }), 'pgward');
    try {
      assert.equal((await admin.c.query(`REVOKE TOKEN 'a-1'`)).rowCount, 1);
      await until(() => alice.closed.error !== undefined, 2_000, 'the revoked session closed');
      assert.equal(await closedTotal(proxy, 'revoked'), 1);
      await admin.c.query(`UNREVOKE TOKEN 'a-1'`);
    } finally {
      for (const x of [alice, admin]) await x.c.end().catch(() => {});
    }
  });

  it('drain: an idle session closed by drain-gate and a busy one at --gracePeriod, each counted once', async () => {
    const proxy = await startTestProxy(args);
    let drained = false;
    const idle = await connect(proxy, 'alice', await mint(key, { sub: 'alice' }));
    const busy = await connect(proxy, 'bob', await mint(key, { sub: 'bob' }));
    try {
      await busy.c.query('begin');
      const drain = proxy.proxy.drain().then(() => (drained = true));
      await until(() => idle.closed.error !== undefined, 2_000, 'the idle session closed at once');
      assert.equal(idle.closed.error!.code, '57P01');
      assert.equal(await closedTotal(proxy, 'drain'), 1);
      assert.equal(busy.closed.error, undefined, 'the open transaction may finish within the grace period');
      await drain;
      await until(() => busy.closed.error !== undefined, 2_000, 'the busy session closed at the grace period');
      assert.equal(busy.closed.error!.code, '57P01');
      assert.equal(await closedTotal(proxy, 'drain'), 2);
    } finally {
      for (const x of [idle, busy]) await x.c.end().catch(() => {});
      if (!drained) await proxy.close();
    }
  });
});
