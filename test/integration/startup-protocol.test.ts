import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { encodeCancelRequest, encodeStartupMessage, fe } from '../../src/protocol/index.js';
import { PgCluster } from '../helpers/pg-cluster.js';
import { logEvents, startTestProxy, type TestProxy } from '../helpers/proxy.js';
import { runPsql } from '../helpers/psql.js';
import { RawClient } from '../helpers/raw-client.js';

const i32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};

/** A PasswordMessage ('p', length, password, NUL), built by hand. */
function passwordMessage(password: string): Buffer {
  const body = Buffer.from(password + '\0');
  return Buffer.concat([Buffer.from('p'), i32(body.length + 4), body]);
}

/** The value of one series in the registry's text output (0 when absent). */
async function metric(proxy: TestProxy, name: string, labels: string): Promise<number> {
  const text = await proxy.proxy.metrics.registry.metrics();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && labels.split(',').every((p) => l.includes(p)));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

describe('startup protocol: what PostgreSQL does, byte for byte', () => {
  let cluster: PgCluster;
  let proxy: TestProxy;

  before(async () => {
    cluster = await PgCluster.start({
      hba: ['host all all 127.0.0.1/32 scram-sha-256'],
      users: [{ name: 'app', password: 'app-secret' }],
    });
    proxy = await startTestProxy(['--insecure', '--auth', 'passthrough', '--backend', `${cluster.url('app')}?sslmode=disable`, '--no-credsOverride']);
  });

  after(async () => {
    await proxy?.close();
    await cluster?.stop();
  });

  it('accepts a PasswordMessage pipelined with the StartupMessage in one write', async () => {
    await using c = await RawClient.connect(proxy.port);
    c.write(Buffer.concat([encodeStartupMessage([['user', 'app'], ['database', 'postgres']]), passwordMessage('app-secret')]));
    const t0 = Date.now();
    while (!c.messages.some((m) => m.type === 'ReadyForQuery') && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(c.errors(), []);
    assert.ok(c.messages.some((m) => m.type === 'ReadyForQuery'), 'logged in');
  });

  it('closes without a word on a bad first packet (Terminate before StartupMessage), counted as refused', async () => {
    const before = await metric(proxy, 'pgward_connections_total', 'result="refused"');
    await using c = await RawClient.connect(proxy.port);
    c.write(Buffer.concat([fe.terminate().raw, encodeStartupMessage([['user', 'app']])]));
    await c.closedWithin(3000);
    assert.equal(c.bytes, 0, 'PostgreSQL sends nothing for an invalid startup packet length');
    assert.equal(await metric(proxy, 'pgward_connections_total', 'result="refused"'), before + 1);
    assert.ok(logEvents(proxy.logs, 'connection refused').some((e) => /invalid length of startup packet/.test(String(e.reason))));
  });

  it('answers an unsupported protocol version with FATAL 0A000, as PostgreSQL does', async () => {
    await using c = await RawClient.connect(proxy.port);
    c.write(Buffer.concat([i32(8), i32(2 << 16)]));
    await c.closedWithin(3000);
    assert.equal(c.errors()[0]?.code, '0A000');
    assert.match(c.errors()[0]?.message ?? '', /unsupported frontend protocol 2\.0/);
  });

  it('names GSSENCRequest right when data follows it', async () => {
    await using c = await RawClient.connect(proxy.port);
    c.write(Buffer.concat([i32(8), i32(80877104), encodeStartupMessage([['user', 'app']])]));
    await c.closedWithin(3000);
    assert.match(c.errors()[0]?.message ?? '', /received unencrypted data after GSSAPI encryption request/);
  });

  it('escapes raw bytes quoted in an 08P01 message', async () => {
    await using c = await RawClient.connect(proxy.port);
    c.write(Buffer.concat([encodeStartupMessage([['user', 'app'], ['database', 'postgres']]), Buffer.from([0x01, 0, 0, 0, 1])]));
    await c.closedWithin(3000);
    assert.equal(c.errors().at(-1)?.code, '08P01');
    assert.match(c.errors().at(-1)?.message ?? '', /message type "\\x01"/);
  });

  it('refuses replication connections (psql replication=database and =true) with FATAL 0A000', async () => {
    for (const mode of ['database', 'true']) {
      const r = await runPsql([proxy.url('app', 'app-secret', 'postgres', `sslmode=disable&replication=${mode}`), '-c', 'IDENTIFY_SYSTEM']);
      assert.notEqual(r.code, 0, mode);
      assert.match(r.stderr, /replication connections are not supported by pgward/, mode);
    }
    const c = new pg.Client({ connectionString: proxy.url('app', 'app-secret') + '&replication=false' });
    await c.connect();
    await c.end();
  });

  it('counts psql\'s password-less first try as abandoned, not as a failure', async () => {
    const abandoned = await metric(proxy, 'pgward_connections_total', 'result="abandoned"');
    const authAbandoned = await metric(proxy, 'pgward_auth_attempts_total', 'result="abandoned",reason="client_gone"');
    const failed = await metric(proxy, 'pgward_connections_total', 'result="failed"');
    const mark = proxy.logs.length;
    const r = await runPsql(['-w', proxy.url('app'), '-c', 'select 1']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /no password supplied/);
    await new Promise((res) => setTimeout(res, 200));
    assert.equal(await metric(proxy, 'pgward_connections_total', 'result="abandoned"'), abandoned + 1);
    assert.equal(await metric(proxy, 'pgward_auth_attempts_total', 'result="abandoned",reason="client_gone"'), authAbandoned + 1);
    assert.equal(await metric(proxy, 'pgward_connections_total', 'result="failed"'), failed);
    const logs = proxy.logs.slice(mark);
    assert.equal(logEvents(logs, 'authentication failed').length, 0, 'not logged as an authentication failure');
    assert.equal(logEvents(logs, 'client closed the connection during authentication').length, 1);
  });

  it('logs and counts a client that resets mid-login as gone, not as an internal error', async () => {
    const abandoned = await metric(proxy, 'pgward_connections_total', 'result="abandoned"');
    const mark = proxy.logs.length;
    const c = await RawClient.connect(proxy.port);
    c.write(encodeStartupMessage([['user', 'app'], ['database', 'postgres']]));
    const t0 = Date.now();
    while (!c.messages.some((m) => m.type === 'Authentication') && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 20));
    c.socket.resetAndDestroy();
    await new Promise((res) => setTimeout(res, 300));
    assert.equal(await metric(proxy, 'pgward_connections_total', 'result="abandoned"'), abandoned + 1);
    assert.doesNotMatch(proxy.logs.slice(mark).join('\n'), /XX000|internal proxy error/);
  });

  it('counts a login the backend refuses (28P01, 22023) as refused, with its sqlstate in the log', async () => {
    for (const [password, options, code] of [['wrong', undefined, '28P01'], ['app-secret', '-c work_mem=abc', '22023']] as const) {
      const refused = await metric(proxy, 'pgward_connections_total', 'result="refused"');
      const failed = await metric(proxy, 'pgward_connections_total', 'result="failed"');
      const c = new pg.Client({ connectionString: proxy.url('app', password), options });
      await assert.rejects(c.connect(), (e: { code?: string }) => e.code === code);
      await new Promise((res) => setTimeout(res, 200));
      assert.equal(await metric(proxy, 'pgward_connections_total', 'result="refused"'), refused + 1, code);
      assert.equal(await metric(proxy, 'pgward_connections_total', 'result="failed"'), failed, code);
      assert.ok(logEvents(proxy.logs, 'connection refused').some((e) => e.sqlstate === code), code);
    }
  });

  it('gives the backend\'s real pid in BackendKeyData: pg_backend_pid, NOTIFY and cancel agree', async () => {
    const c = new pg.Client({ connectionString: proxy.url('app', 'app-secret') });
    await c.connect();
    try {
      const keyPid = (c as unknown as { processID: number }).processID;
      const pid = (await c.query('select pg_backend_pid() as pid')).rows[0].pid as number;
      assert.equal(keyPid, pid);
      await c.query('listen ch');
      const note = new Promise<pg.Notification>((res) => c.once('notification', res));
      await c.query("notify ch, 'x'");
      assert.equal((await note).processId, keyPid);
      const slow = c.query('select pg_sleep(10)').then(
        () => 'finished',
        (e: { code?: string }) => e.code,
      );
      await new Promise((res) => setTimeout(res, 300));
      // A CancelRequest through pgward with the key it gave: found by pid and secret, forwarded.
      await using cancel = await RawClient.connect(proxy.port);
      const secret = (c as unknown as { secretKey: number }).secretKey;
      cancel.write(encodeCancelRequest(keyPid, i32(secret)));
      await cancel.closedWithin(3000);
      assert.equal(await slow, '57014', 'canceled');
    } finally {
      await c.end();
    }
  });
});

describe('a stalled JavaScript-relay session whose client resets', () => {
  it('ends at once as the client going away and frees its backend', async () => {
    const cluster = await PgCluster.start({});
    try {
      await using proxy = await startTestProxy([
        '--insecure', '--auth', 'passthrough', '--backend', cluster.url('postgres', undefined, 'postgres') + '?sslmode=disable',
        '--no-nativeRelay',
      ]);
      const c = await RawClient.connect(proxy.port);
      c.write(encodeStartupMessage([['user', 'postgres'], ['database', 'postgres'], ['application_name', 'stalled']]));
      const t0 = Date.now();
      while (!c.messages.some((m) => m.type === 'ReadyForQuery') && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 20));
      c.socket.pause(); // stops reading: the result backs up through pgward into the backend
      c.write(fe.query("select repeat('x', 10000) from generate_series(1, 100000)").raw);
      await new Promise((r) => setTimeout(r, 1500));
      c.socket.resetAndDestroy();
      const direct = new pg.Client({ connectionString: cluster.url('postgres', undefined, 'postgres') });
      await direct.connect();
      const left = async () =>
        Number((await direct.query("select count(*)::int as n from pg_stat_activity where application_name = 'stalled'")).rows[0].n);
      const t1 = Date.now();
      while ((await left()) > 0 && Date.now() - t1 < 4000) await new Promise((r) => setTimeout(r, 100));
      const n = await left();
      await direct.end();
      assert.equal(n, 0, 'the backend is gone within 4 s (the close grace period is 5 s)');
      const ended = logEvents(proxy.logs, 'session ended');
      assert.equal(ended.length, 1);
      assert.equal(ended[0]!.reason, 'client-eof');
      assert.equal(ended[0]!.sqlstate, undefined);
    } finally {
      await cluster.stop();
    }
  });
});
