import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { encodeSSLRequest, encodeStartupMessage, fe } from '../../src/protocol/index.js';
import { PgCluster } from '../helpers/pg-cluster.js';
import { startTestProxy, type TestProxy } from '../helpers/proxy.js';
import { until } from '../helpers/wait.js';
import { RawClient } from '../helpers/raw-client.js';

const i32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};

describe('client side: malformed input, limits and timeouts', () => {
  let cluster: PgCluster;
  let proxy: TestProxy;

  before(async () => {
    cluster = await PgCluster.start({});
    proxy = await startTestProxy([
      '--insecure', '--auth', 'passthrough', '--backend', cluster.url('postgres', undefined, 'postgres') + '?sslmode=disable',
      '--authTimeout', '700ms', '--maxConnections', '3',
    ]);
  });

  after(async () => {
    await proxy?.close();
    await cluster?.stop();
  });

  async function stillServes(): Promise<void> {
    const c = new pg.Client({ connectionString: proxy.url('postgres') });
    await c.connect();
    assert.deepEqual((await c.query('select 1 as ok')).rows, [{ ok: 1 }]);
    await c.end();
  }

  it('closes on an oversize startup packet without a word, as PostgreSQL does', async () => {
    await using c = await RawClient.connect(proxy.port);
    c.write(Buffer.concat([i32(20_000), i32(196608)]));
    await c.closedWithin(3000);
    assert.equal(c.bytes, 0);
    assert.match(proxy.logs.join('\n'), /invalid length of startup packet 20000/);
    await stillServes();
  });

  it('refuses an impossible message length after startup with 08P01', async () => {
    await using c = await RawClient.connect(proxy.port);
    c.write(encodeStartupMessage([['user', 'postgres'], ['database', 'postgres']]));
    await new Promise((r) => setTimeout(r, 300));
    c.write(Buffer.from([0x51, 0, 0, 0, 2]));
    await c.closedWithin(3000);
    const errs = c.errors();
    assert.equal(errs.at(-1)?.code, '08P01');
    assert.equal(errs.at(-1)?.severity, 'FATAL');
    await stillServes();
  });

  it('refuses an oversize message during the relay (over 1 GiB) with 08P01', async () => {
    await using c = await RawClient.connect(proxy.port);
    c.write(encodeStartupMessage([['user', 'postgres'], ['database', 'postgres']]));
    await new Promise((r) => setTimeout(r, 300));
    c.write(Buffer.from([0x51, 0x7f, 0xff, 0xff, 0xff]));
    await c.closedWithin(3000);
    assert.equal(c.errors().at(-1)?.code, '08P01');
  });

  it('refuses a startup packet without a user with 28000', async () => {
    await using c = await RawClient.connect(proxy.port);
    c.write(encodeStartupMessage([['database', 'postgres']]));
    await c.closedWithin(3000);
    assert.equal(c.errors()[0]?.code, '28000');
    assert.match(c.errors()[0]?.message ?? '', /no PostgreSQL user name/);
  });

  it('closes a client that sends nothing before --authTimeout', async () => {
    await using c = await RawClient.connect(proxy.port);
    const t0 = Date.now();
    await c.closedWithin(5000);
    assert.ok(Date.now() - t0 >= 500, 'not before the timeout');
  });

  it('answers SSLRequest with N when no TLS is configured, and GSSENCRequest with N', async () => {
    await using c = await RawClient.connect(proxy.port);
    c.write(encodeSSLRequest());
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(Buffer.concat(c.raw).toString(), 'N');
    const gss = await RawClient.connect(proxy.port);
    gss.write(Buffer.concat([i32(8), i32(80877104)]));
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(Buffer.concat(gss.raw).toString(), 'N');
    gss.socket.destroy();
  });

  it('refuses connections over --maxConnections (sessions, not logins in progress) with 53300 and keeps the others', async () => {
    const held: RawClient[] = [];
    for (let i = 0; i < 3; i++) {
      const c = await RawClient.connect(proxy.port);
      c.write(encodeStartupMessage([['user', 'postgres'], ['database', 'postgres']]));
      held.push(c);
    }
    await until(() => held.every((c) => c.messages.some((m) => m.type === 'ReadyForQuery')), 5_000, 'three sessions logged in');
    await using extra = await RawClient.connect(proxy.port);
    await extra.closedWithin(3000);
    assert.equal(extra.errors()[0]?.code, '53300');
    for (const h of held) h.socket.destroy();
    await new Promise((r) => setTimeout(r, 200));
    await stillServes();
  });

  it('forwards Terminate and closes both sides cleanly', async () => {
    await using c = await RawClient.connect(proxy.port);
    c.write(encodeStartupMessage([['user', 'postgres'], ['database', 'postgres']]));
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(c.messages.some((m) => m.type === 'ReadyForQuery'));
    c.write(fe.terminate().raw);
    await c.closedWithin(3000);
    assert.deepEqual(c.errors(), []);
  });
});
