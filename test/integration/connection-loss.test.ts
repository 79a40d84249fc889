import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import pg from 'pg';
import { PgCluster } from '../helpers/pg-cluster.js';
import { logEvents, startTestProxy } from '../helpers/proxy.js';
import { RawClient } from '../helpers/raw-client.js';
import { encodeStartupMessage, fe } from '../../src/protocol/index.js';
import { until } from '../helpers/wait.js';

// A SIGKILLed backend makes the postmaster reset every session, so this has its own cluster.
describe('a backend killed mid-query', () => {
  it('gives the client 08006 and the proxy keeps serving', async () => {
    await using cluster = await PgCluster.start({});
    await using proxy = await startTestProxy(['--insecure', '--auth', 'passthrough', '--backend', `${cluster.url('postgres')}?sslmode=disable`]);
    const { refused } = await sleepRefused(proxy.url('postgres'));
    await new Promise((r) => setTimeout(r, 300));
    assert.ok((await cluster.killBackends()) >= 1, 'a backend was killed');
    await refused;
    assert.ok(logEvents(proxy.logs, 'session ended').some((e) => e.reason === 'backend-eof' && e.sqlstate === '08006'));
    await cluster.waitReady();
    const again = new pg.Client({ connectionString: proxy.url('postgres') });
    await again.connect();
    assert.deepEqual((await again.query('select 1 as ok')).rows, [{ ok: 1 }]);
    await again.end();
  });
});

/** A session through pgward sleeping in a query, and the promise that it is refused with 08006 when its backend goes. */
async function sleepRefused(url: string): Promise<{ refused: Promise<void> }> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {});
  await client.connect();
  // In an object: an async function's returned promise would be waited for.
  const refused = assert.rejects(
    client.query('select pg_sleep(30)'),
    (e: { code?: string; message: string }) => e.code === '08006' && /backend connection closed unexpectedly/.test(e.message),
  );
  return { refused };
}

/**
 * Relays TCP to `port` (a PostgreSQL); `reset()` resets every connection it accepted (an RST to
 * pgward, as a dead host's would be), `inject(bytes)` sends pgward bytes as if the backend had.
 */
async function backendRelay(port: number): Promise<{ port: number; reset(): number; inject(bytes: Buffer): number; [Symbol.asyncDispose](): Promise<void> }> {
  const accepted = new Set<net.Socket>();
  const server = net.createServer((inbound) => {
    const outbound = net.connect({ host: '127.0.0.1', port });
    accepted.add(inbound);
    for (const s of [inbound, outbound]) {
      s.on('error', () => {});
      s.once('close', () => {
        accepted.delete(inbound);
        inbound.destroy();
        outbound.destroy();
      });
    }
    inbound.pipe(outbound).pipe(inbound);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    reset: () => {
      const n = accepted.size;
      for (const s of accepted) s.resetAndDestroy();
      return n;
    },
    inject: (bytes) => {
      for (const s of accepted) s.write(bytes);
      return accepted.size;
    },
    [Symbol.asyncDispose]: async () => {
      for (const s of accepted) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/**
 * A PostgreSQL, a backendRelay in front of it, pgward on the `relay` carrier using it as its
 * backend, and a session through it sleeping in a query (and the promise that it is refused).
 */
async function sleepingBehindRelay(relay: 'native' | 'js') {
  const cluster = await PgCluster.start({});
  const middle = await backendRelay(cluster.port);
  const flags = relay === 'js' ? ['--no-nativeRelay'] : [];
  const proxy = await startTestProxy(['--insecure', '--auth', 'passthrough', ...flags, '--backend', `postgres://127.0.0.1:${middle.port}/postgres?sslmode=disable`]);
  const { refused } = await sleepRefused(proxy.url('postgres'));
  await new Promise((r) => setTimeout(r, 300));
  return {
    middle,
    proxy,
    refused,
    [Symbol.asyncDispose]: async () => {
      await proxy[Symbol.asyncDispose]();
      await middle[Symbol.asyncDispose]();
      await cluster[Symbol.asyncDispose]();
    },
  };
}

for (const relay of ['native', 'js'] as const) {
  describe(`a client connection reset mid-session (${relay} relay)`, () => {
    it('is logged with its cause even when clean ends are not (--no-logDisconnections), and others are served', async () => {
      await using cluster = await PgCluster.start({});
      const flags = relay === 'js' ? ['--no-nativeRelay'] : [];
      await using proxy = await startTestProxy(['--insecure', '--auth', 'passthrough', '--no-logDisconnections', ...flags, '--backend', `${cluster.url('postgres')}?sslmode=disable`]);
      await using clean = await RawClient.connect(proxy.port);
      clean.write(encodeStartupMessage([['user', 'postgres'], ['database', 'postgres']]));
      await until(() => clean.messages.some((m) => m.type === 'ReadyForQuery'), 5000, 'a clean login');
      clean.write(fe.terminate().raw);
      await clean.closedWithin(5000, 'the clean close');
      await using reset = await RawClient.connect(proxy.port);
      reset.write(encodeStartupMessage([['user', 'postgres'], ['database', 'postgres']]));
      await until(() => reset.messages.some((m) => m.type === 'ReadyForQuery'), 5000, 'the login');
      // A result the client does not wait for: the reset comes while pgward is relaying it.
      reset.write(fe.query("select repeat('x', 1000) from generate_series(1, 20000)").raw);
      await until(() => reset.messages.length > 20, 5000, 'the result arriving');
      reset.socket.resetAndDestroy();
      await until(() => logEvents(proxy.logs, 'session ended').length > 0, 5000, 'the reset session logged');
      const lines = logEvents(proxy.logs, 'session ended');
      assert.equal(lines.length, 1, 'only the reset session: the clean one is routine');
      assert.deepEqual([lines[0]!.reason, lines[0]!.relay], ['client-eof', relay]);
      assert.match(String(lines[0]!.cause), /ECONNRESET|EPIPE/, 'the cause names the reset');
      const again = new pg.Client({ connectionString: proxy.url('postgres') });
      await again.connect();
      assert.deepEqual((await again.query('select 1 as ok')).rows, [{ ok: 1 }], 'the next session is served');
      await again.end();
    });
  });

  describe(`a backend connection reset mid-query (${relay} relay)`, () => {
    it("gives the client 08006 and logs the reset as the session's cause", async () => {
      await using rig = await sleepingBehindRelay(relay);
      const { middle, proxy, refused } = rig;
      assert.equal(middle.reset(), 1, "pgward's one backend connection was reset");
      await refused;
      await until(() => logEvents(proxy.logs, 'session ended').length > 0, 5000, 'the session end logged');
      const [ended] = logEvents(proxy.logs, 'session ended');
      assert.deepEqual([ended!.reason, ended!.relay, ended!.sqlstate], ['backend-eof', relay, '08006']);
      assert.match(String(ended!.cause), /ECONNRESET/, 'the cause names the reset');
      const again = new pg.Client({ connectionString: proxy.url('postgres') });
      await again.connect();
      assert.deepEqual((await again.query('select 1 as ok')).rows, [{ ok: 1 }], 'the next session is served');
      await again.end();
    });

    it('gives the client 08006 for a backend that breaks the protocol, and logs the violation as the cause', async () => {
      await using rig = await sleepingBehindRelay(relay);
      const { middle, proxy, refused } = rig;
      // A DataRow declaring 1 byte: no message is shorter than its 4-byte length.
      assert.equal(middle.inject(Buffer.from([0x44, 0, 0, 0, 1])), 1, "pgward's one backend connection");
      await refused;
      await until(() => logEvents(proxy.logs, 'session ended').length > 0, 5000, 'the session end logged');
      const [ended] = logEvents(proxy.logs, 'session ended');
      assert.deepEqual([ended!.reason, ended!.relay, ended!.sqlstate], ['backend-eof', relay, '08006']);
      assert.match(String(ended!.cause), /invalid message length 1 for message type "D"/);
    });
  });
}
