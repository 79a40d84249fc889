import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import fc from 'fast-check';
import pg from 'pg';
import { backendMessage, encodeSSLRequest, encodeStartupMessage, fe, Framer } from '../../src/protocol/index.js';
import type { CertPaths, TestCA } from '../helpers/certs.js';
import type { PgCluster } from '../helpers/pg-cluster.js';
import { startPgwardProcess, type PgwardProcess } from '../helpers/pgward-process.js';
import { logEvents, startTestProxy } from '../helpers/proxy.js';
import { splitRelay, tlsAfterSslRequest, tlsBothHops, type TlsBothHops } from '../helpers/tls-peers.js';
import { until } from '../helpers/wait.js';

/**
 * TLS sessions on the native carrier (the default: the native TLS layer's endpoints lent to the
 * carrier for the relay): a 100 MB result to a TLS client that reads slowly keeps the proxy's
 * memory bounded and disturbs nobody else, and what crosses is intact however the TLS records on
 * either hop are cut.
 */
const MiB = 1024 * 1024;

function rssBytes(p: PgwardProcess): number {
  const kb = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${p.child.pid}/status`, 'utf8'))![1]!;
  return Number(kb) * 1024;
}

/** SSLRequest, the handshake, and a StartupMessage. */
async function tlsSession(port: number, ca: string): Promise<tls.TLSSocket> {
  const socket = await tlsAfterSslRequest(port, ca);
  socket.write(encodeStartupMessage([['user', 'postgres'], ['database', 'postgres']]));
  return socket;
}

describe('TLS sessions on the native carrier', () => {
  let hops: TlsBothHops;
  let ca: TestCA;
  let proxyCert: CertPaths;
  let cluster: PgCluster;

  before(async () => {
    hops = await tlsBothHops();
    ({ ca, proxyCert, cluster } = hops);
  });

  after(async () => {
    await hops?.close();
  });

  const backendUrl = (port?: number) => hops.backendUrl(port);

  it('sends a 100 MB result to a TLS client that reads slowly, with memory bounded and other sessions served', { timeout: 120_000 }, async () => {
    await using proxy = await startPgwardProcess(['--bindCert', proxyCert.cert, '--bindKey', proxyCert.key, '--auth', 'passthrough', '--backend', backendUrl()]);
    const other = () => {
      const c = new pg.Client({ host: '127.0.0.1', port: proxy.port, user: 'postgres', database: 'postgres', ssl: { ca: readFileSync(ca.cert), servername: 'localhost' } });
      c.on('error', () => {});
      return c;
    };
    const warm = other();
    await warm.connect();
    await warm.query('select 1');
    await warm.end();
    const before = rssBytes(proxy);

    const socket = await tlsSession(proxy.port, ca.cert);
    const framer = new Framer({ maxLength: 64 * MiB });
    let rows = 0;
    let rowBytes = 0;
    let ready = 0;
    let complete = '';
    const errors: unknown[] = [];
    let sinceBreak = 0;
    socket.on('data', (chunk: Buffer) => {
      framer.push(chunk, (code, source, offset, length) => {
        if (code === 0x44) {
          rows++;
          rowBytes += length;
          return;
        }
        const m = backendMessage(code, Buffer.from(source.subarray(offset, offset + length)));
        if (m.type === 'ReadyForQuery') ready++;
        else if (m.type === 'CommandComplete') complete = String((m.body() as { tag?: string }).tag ?? '');
        else if (m.type === 'ErrorResponse') errors.push(m.body());
      });
      // About 20 MB/s: a pause of 50 ms after every MiB read.
      sinceBreak += chunk.length;
      if (sinceBreak >= MiB) {
        sinceBreak = 0;
        socket.pause();
        setTimeout(() => socket.resume(), 50);
      }
    });
    await until(() => ready === 1, 10_000, 'logged in');
    socket.write(fe.query("select repeat('x', 1000) from generate_series(1, 100000)").raw);

    let peak = 0;
    const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(proxy))), 20);
    try {
      // Served meanwhile: a session that starts while the slow one is mid-result.
      await until(() => rowBytes > 10 * MiB, 30_000, 'the slow client to be 10 MB in');
      const meanwhile = other();
      await meanwhile.connect();
      assert.equal((await meanwhile.query('select 42 as n')).rows[0].n, 42);
      await meanwhile.end();
      assert.ok(rows < 100_000, 'the other session was served while the slow client was still reading');
      await until(() => ready === 2, 90_000, 'the whole result');
    } finally {
      clearInterval(sampler);
    }
    assert.deepEqual(errors, []);
    assert.equal(rows, 100_000);
    assert.equal(complete, 'SELECT 100000');
    assert.ok(rowBytes > 100_000_000, `${rowBytes} bytes of rows`);
    assert.ok(peak - before < 32 * MiB, `proxy RSS rose by ${((peak - before) / MiB).toFixed(1)} MiB while 100 MB went to a slow TLS client`);
    socket.end(fe.terminate().raw);
    const ended = () => proxy.events.filter((e) => e.msg === 'session ended');
    await until(() => ended().length === 3, 10_000, 'the three sessions to end');
    assert.deepEqual(ended().map((e) => e.relay), ['native', 'native', 'native'], 'every TLS session ran on the native carrier');
  });

  it('closes a TLS client that said Terminate at once (close_notify, FIN), though the client keeps its side open', async () => {
    await using proxy = await startTestProxy(['--bindCert', proxyCert.cert, '--bindKey', proxyCert.key, '--auth', 'passthrough', '--backend', backendUrl()]);
    // Half-open: Node's TLS socket sends no close_notify and no FIN of its own until told to.
    const raw = net.connect({ port: proxy.port, host: '127.0.0.1', allowHalfOpen: true });
    const errors: Error[] = [];
    raw.on('error', (err) => errors.push(err));
    await new Promise((r) => raw.once('connect', r));
    raw.write(encodeSSLRequest());
    await new Promise((r) => raw.once('data', r));
    const client = tls.connect({ socket: raw, ca: readFileSync(ca.cert), servername: 'localhost' });
    client.on('error', (err) => errors.push(err));
    await new Promise((r) => client.once('secureConnect', r));
    const framer = new Framer();
    let ready = 0;
    client.on('data', (d: Buffer) => framer.push(d, (code) => void (code === 0x5a && ready++)));
    client.write(encodeStartupMessage([['user', 'postgres'], ['database', 'postgres']]));
    await until(() => ready === 1, 10_000, 'login (ReadyForQuery)');
    // The proxy runs in this process: its descriptors are ours to count.
    const during = readdirSync('/proc/self/fd').length;
    const ended = new Promise((r) => client.once('end', r));
    client.write(fe.terminate().raw);
    await ended;
    assert.deepEqual(errors, [], 'no reset: everything pgward sent arrived, its close_notify last');
    // Not read on until the client's own close (or the 5 s grace): its socket and the endpoint's are closed.
    await until(() => readdirSync('/proc/self/fd').length <= during - 2, 1000, "pgward's end of the client connection closed");
    client.destroy();
  });

  it('carries every message intact however the TLS records of either hop are cut (pieces down to a byte)', { timeout: 180_000 }, async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 1, max: 400 }), { minLength: 1, maxLength: 6 }),
        fc.array(fc.integer({ min: 1, max: 400 }), { minLength: 1, maxLength: 6 }),
        fc.array(fc.integer({ min: 0, max: 40_000 }), { minLength: 1, maxLength: 4 }),
        async (clientPieces, backendPieces, sizes) => {
          await using toBackend = await splitRelay(cluster.port, backendPieces);
          await using proxy = await startTestProxy(['--bindCert', proxyCert.cert, '--bindKey', proxyCert.key, '--auth', 'passthrough', '--backend', backendUrl(toBackend.port)]);
          await using toProxy = await splitRelay(proxy.port, clientPieces);
          const client = new pg.Client({ host: '127.0.0.1', port: toProxy.port, user: 'postgres', database: 'postgres', ssl: { ca: readFileSync(ca.cert), servername: 'localhost' } });
          client.on('error', () => {});
          await client.connect();
          try {
            for (const size of sizes) {
              const text = randomBytes(Math.ceil(size / 2)).toString('hex').slice(0, size);
              const r = await client.query('select $1::text as t, length($1::text) as n', [text]);
              assert.equal(r.rows[0].n, size);
              assert.equal(r.rows[0].t, text);
            }
          } finally {
            await client.end();
          }
          await until(() => logEvents(proxy.logs, 'session ended').length === 1, 10_000, 'the session to end');
          assert.equal(logEvents(proxy.logs, 'session ended')[0]!.relay, 'native');
          assert.ok(toProxy.forwarded.toServer > 0 && toBackend.forwarded.toClient > 0);
        },
      ),
      { numRuns: 8 },
    );
  });
});
