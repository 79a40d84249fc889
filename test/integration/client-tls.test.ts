import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import pg from 'pg';
import {
  backendMessage,
  encodeCancelRequest,
  encodeSSLRequest,
  encodeStartupMessage,
  Framer,
  type BackendMessage,
} from '../../src/protocol/index.js';
import { TestCA } from '../helpers/certs.js';
import { PgCluster } from '../helpers/pg-cluster.js';
import { runPsql } from '../helpers/psql.js';
import { logEvents, startTestProxy, type TestProxy } from '../helpers/proxy.js';
import { cancelOverTls } from '../helpers/tls-peers.js';
import { until } from '../helpers/wait.js';
import { RawClient } from '../helpers/raw-client.js';

/** Reads backend messages from a stream until ReadyForQuery or an ErrorResponse. */
function readUntilReady(stream: net.Socket | tls.TLSSocket): Promise<BackendMessage[]> {
  return new Promise((resolve, reject) => {
    const framer = new Framer();
    const got: BackendMessage[] = [];
    stream.on('data', (chunk: Buffer) => {
      framer.push(chunk, (code, source, offset, length) => {
        const m = backendMessage(code, Buffer.from(source.subarray(offset, offset + length)));
        got.push(m);
        if (m.type === 'ReadyForQuery' || m.type === 'ErrorResponse') resolve(got);
      });
    });
    stream.once('error', reject);
    stream.once('close', () => resolve(got));
  });
}

// Every case runs on both TLS layers: Node's TLS sockets (the default) and the native TLS layer
// (--nativeTls), which must behave the same way to clients.
for (const layer of ['node', 'native'] as const) describe(`client-side TLS, ${layer} TLS layer`, () => {
  const layerFlags = layer === 'native' ? ['--nativeTls'] : ['--no-nativeTls'];
  let ca: TestCA;
  let cluster: PgCluster;
  let proxy: TestProxy;

  before(async () => {
    ca = await TestCA.create();
    const server = await ca.issue('proxy', { cn: 'localhost', sans: ['DNS:localhost', 'IP:127.0.0.1'] });
    cluster = await PgCluster.start({});
    proxy = await startTestProxy([
      '--bindCert', server.cert, '--bindKey', server.key,
      '--auth', 'passthrough', '--backend', `${cluster.url('postgres')}?sslmode=disable`, ...layerFlags,
    ]);
  });

  after(async () => {
    await proxy?.close();
    await cluster?.stop();
    await ca?.[Symbol.asyncDispose]();
  });

  it('serves psql over TLS negotiated with SSLRequest (verify-full)', async () => {
    const r = await runPsql([`${proxy.url('postgres', undefined, 'postgres', `sslmode=verify-full&sslrootcert=${ca.cert}`)}`, '-c', 'select 7']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), '7');
    // The native carrier carries the native TLS layer's endpoints; Node's TLS sockets relay in JavaScript.
    await until(() => logEvents(proxy.logs, 'session ended').length > 0, 5000, 'the session to end');
    assert.equal(logEvents(proxy.logs, 'session ended')[0]!.relay, layer === 'native' ? 'native' : 'js');
    // The session log says how the client's TLS runs, and which layer runs it.
    const started = logEvents(proxy.logs, 'session started')[0]!;
    assert.equal(started.tls_layer, layer);
    assert.equal(started.tls_version, 'TLSv1.3');
    assert.match(String(started.tls_cipher), /^TLS_(AES|CHACHA20)_/);
    assert.equal(started.backend_tls_version, undefined, 'a plain backend has no TLS fields');
  });

  it('refuses a plaintext client with 28000 "TLS required" before asking anything', async () => {
    const r = await runPsql([proxy.url('postgres', undefined, 'postgres', 'sslmode=disable'), '-c', 'select 1']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /TLS required/);
  });

  it('accepts direct TLS with ALPN "postgresql" and refuses it without ALPN', async () => {
    const ok = tls.connect({ host: '127.0.0.1', port: proxy.port, ca: readFileSync(ca.cert), servername: 'localhost', ALPNProtocols: ['postgresql'] });
    await new Promise((r) => ok.once('secureConnect', r));
    const reply = readUntilReady(ok);
    ok.write(encodeStartupMessage([['user', 'postgres'], ['database', 'postgres']]));
    const msgs = await reply;
    assert.equal(msgs.at(-1)?.type, 'ReadyForQuery');
    ok.destroy();

    const noAlpn = tls.connect({ host: '127.0.0.1', port: proxy.port, ca: readFileSync(ca.cert), servername: 'localhost' });
    noAlpn.on('error', () => {});
    const closed = new Promise((r) => noAlpn.once('close', r));
    noAlpn.write(encodeStartupMessage([['user', 'postgres']]));
    await closed;
    assert.equal(noAlpn.alpnProtocol, false);
  });

  it('closes a connection that sends bytes after SSLRequest before the handshake (CVE-2021-23214)', async () => {
    await using c = await RawClient.connect(proxy.port);
    c.write(Buffer.concat([encodeSSLRequest(), encodeStartupMessage([['user', 'postgres']])]));
    await c.closedWithin(3000);
    assert.ok(!Buffer.concat(c.raw).toString('latin1').startsWith('S'), 'no TLS was offered');
    assert.equal(c.errors()[0]?.code, '08P01');
  });

  it('forwards a CancelRequest that arrives over TLS', async () => {
    const client = new pg.Client({
      connectionString: proxy.url('postgres', undefined, 'postgres', ''),
      ssl: { ca: readFileSync(ca.cert), servername: 'localhost' },
    });
    await client.connect();
    try {
      const { processID, secretKey } = client as unknown as { processID: number; secretKey: number };
      const cancelled = assert.rejects(client.query('select pg_sleep(20)'), (e: { code?: string }) => e.code === '57014');
      await new Promise((r) => setTimeout(r, 300));
      await cancelOverTls(proxy.port, ca.cert, processID, secretKey);
      await cancelled;
    } finally {
      await client.end();
    }
  });

  it('ignores a cancel with an unknown key', async () => {
    const client = new pg.Client({
      connectionString: proxy.url('postgres', undefined, 'postgres', ''),
      ssl: { ca: readFileSync(ca.cert), servername: 'localhost' },
    });
    await client.connect();
    try {
      const q = client.query('select pg_sleep(1) as slept');
      const raw = await RawClient.connect(proxy.port);
      raw.write(encodeCancelRequest(12345, Buffer.from([1, 2, 3, 4])));
      await raw.closedWithin(3000);
      const r = await q;
      assert.equal(r.rows.length, 1, 'the query ran to completion');
    } finally {
      await client.end();
    }
  });
});
