import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { describe, it } from 'node:test';
import pg from 'pg';
import { backendMessage, encodeStartupMessage, fe, Framer, type BackendMessage } from '../../src/protocol/index.js';
import { PgCluster } from '../helpers/pg-cluster.js';
import { startPgwardProcess, type PgwardProcess } from '../helpers/pgward-process.js';
import { freePort } from '../helpers/ports.js';
import { RawClient } from '../helpers/raw-client.js';
import { scrapeMetric } from '../helpers/scrape.js';
import { until } from '../helpers/wait.js';

// Issue 17.2 and 17.4 on a real `pgward start`: memory does not follow what a client claims or
// sends, and connections that never log in do not take the place of those that do.

const MiB = 1024 * 1024;

function rssBytes(p: PgwardProcess): number {
  const kb = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${p.child.pid}/status`, 'utf8'))![1]!;
  return Number(kb) * 1024;
}

async function loggedIn(port: number): Promise<RawClient> {
  const c = await RawClient.connect(port);
  c.write(encodeStartupMessage([['user', 'postgres'], ['database', 'postgres']]));
  await until(() => c.messages.some((m) => m.type === 'Authentication' || m.type === 'ReadyForQuery'), 5_000, 'asked to log in');
  if (!c.messages.some((m) => m.type === 'ReadyForQuery')) c.write(fe.password('x').raw);
  await until(() => c.messages.some((m) => m.type === 'ReadyForQuery'), 5_000, 'logged in');
  return c;
}

async function query(port: number, sql: string): Promise<unknown[]> {
  const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', password: 'x', database: 'postgres' });
  await client.connect();
  try {
    return (await client.query(sql)).rows;
  } finally {
    await client.end();
  }
}

/** Writes `total` bytes of COPY text as ONE CopyData message, in pieces, waiting for the socket to drain. */
async function oneHugeCopyData(socket: net.Socket, total: number): Promise<void> {
  const head = Buffer.alloc(5);
  head[0] = 0x64;
  head.writeInt32BE(4 + total, 1);
  socket.write(head);
  const line = Buffer.from('y'.repeat(1023) + '\n');
  const piece = Buffer.concat(Array.from({ length: 1024 }, () => line)); // 1 MiB of whole lines
  for (let sent = 0; sent < total; sent += piece.length) {
    if (!socket.write(piece)) await new Promise((r) => socket.once('drain', r));
  }
}

describe('memory is bounded by what the proxy must hold, not by what a client sends (JavaScript relay)', () => {
  it('streams a 160 MiB CopyData and a 96 MiB DataRow, and ends a stalled oversized Query with 54000', { timeout: 120_000 }, async () => {
    await using cluster = await PgCluster.start({});
    await cluster.sql('create table sink (t text)');
    await using proxy = await startPgwardProcess([
      '--insecure', '--auth', 'passthrough', '--backend', `${cluster.url('postgres')}?sslmode=disable`, '--no-nativeRelay',
    ]);
    await query(proxy.port, 'select 1');
    const before = rssBytes(proxy);

    // One CopyData message far over --maxMessageSize (64 MiB) streams through.
    const copier = await loggedIn(proxy.port);
    copier.write(fe.query('copy sink from stdin').raw);
    await until(() => copier.messages.some((m) => m.type === 'CopyInResponse'), 5_000, 'COPY started');
    let peak = 0;
    const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(proxy))), 20);
    try {
      await oneHugeCopyData(copier.socket, 160 * MiB);
      copier.write(fe.copyDone().raw);
      await until(() => copier.messages.some((m) => m.type === 'CommandComplete'), 60_000, 'COPY done');
      assert.equal(copier.errors().length, 0, JSON.stringify(copier.errors()));
      assert.deepEqual(await query(proxy.port, 'select count(*)::int as n from sink'), [{ n: 160 * 1024 }]);

      // A DataRow larger than --maxMessageSize streams to the client.
      const rows = (await query(proxy.port, `select length(repeat('z', ${96 * MiB})) as n, repeat('z', ${96 * MiB}) as big`)) as {
        n: number;
        big: string;
      }[];
      assert.equal(rows[0]!.big.length, 96 * MiB);
    } finally {
      clearInterval(sampler);
      copier.socket.destroy();
    }
    assert.ok(peak - before < 80 * MiB, `proxy RSS rose by ${((peak - before) / MiB).toFixed(0)} MiB while 160 MiB and 96 MiB went through`);

    // A Query claiming nearly 1 GiB is refused at its header; what follows is never held.
    await using hostile = await loggedIn(proxy.port);
    const head = Buffer.alloc(5);
    head[0] = 0x51;
    head.writeInt32BE(2 ** 30 - 64, 1);
    hostile.write(Buffer.concat([head, Buffer.alloc(8 * MiB, 0x61)]));
    await hostile.closedWithin(10_000, 'the hostile session');
    assert.equal(hostile.errors()[0]?.code, '54000');
    assert.match(hostile.errors()[0]?.message ?? '', /message too long/);
    assert.deepEqual(await query(proxy.port, 'select 2 as ok'), [{ ok: 2 }], 'others are still served');
  });

  it('a Query under the limit but larger than any socket read is still held whole and runs, on both relays', { timeout: 60_000 }, async () => {
    await using cluster = await PgCluster.start({});
    for (const relay of [[], ['--no-nativeRelay']]) {
      await using proxy = await startPgwardProcess([
        '--insecure', '--auth', 'passthrough', '--backend', `${cluster.url('postgres')}?sslmode=disable`, ...relay,
      ]);
      const literal = 'q'.repeat(3 * MiB);
      assert.deepEqual(await query(proxy.port, `select length('${literal}') as n`), [{ n: 3 * MiB }], relay.join(' ') || 'native');
    }
  });
});

/** A raw connection from `from` (another loopback address); resolves with the first error it was sent, if any, once closed or after `ms`. */
function silent(port: number, from: string): { socket: net.Socket; refused: Promise<string | undefined> } {
  const socket = net.connect({ host: '127.0.0.1', port, localAddress: from });
  socket.on('error', () => {});
  const framer = new Framer();
  const got: BackendMessage[] = [];
  socket.on('data', (chunk: Buffer) => {
    try {
      framer.push(chunk, (code, source, offset, length) => got.push(backendMessage(code, Buffer.from(source.subarray(offset, offset + length)))));
    } catch {
      // not framed: nothing this test waits for
    }
  });
  const refused = new Promise<string | undefined>((resolve) => {
    socket.once('close', () => resolve((got.find((m) => m.type === 'ErrorResponse')?.body() as { code?: string } | undefined)?.code));
  });
  return { socket, refused };
}

describe('logins in progress have their own budget', () => {
  it('silent sockets from one address fill only its share; logins from elsewhere go on; the metrics say so', { timeout: 60_000 }, async () => {
    await using cluster = await PgCluster.start({});
    const metricsPort = await freePort();
    await using proxy = await startPgwardProcess([
      '--insecure', '--auth', 'passthrough', '--backend', `${cluster.url('postgres')}?sslmode=disable`,
      '--maxConnections', '5', '--maxPendingLogins', '30', '--maxPendingLoginsPerAddress', '20', '--authTimeout', '30s',
      '--metricsAddr', `127.0.0.1:${metricsPort}`,
    ]);
    const metrics = `http://127.0.0.1:${metricsPort}/metrics`;
    const flood = Array.from({ length: 25 }, () => silent(proxy.port, '127.0.0.2'));
    const second = Array.from({ length: 15 }, () => silent(proxy.port, '127.0.0.3'));
    try {
      await until(async () => (await scrapeMetric(metrics, 'pgward_logins_pending')) === 30, 10_000, '30 logins pending');
      const refused = await Promise.race([
        Promise.all([...flood, ...second].map((s) => s.refused.then((code) => (code ? 1 : 0)))),
        new Promise<null>((r) => setTimeout(() => r(null), 3_000)),
      ]);
      assert.equal(refused, null, 'the 30 pending sockets are still open');
      assert.equal(await scrapeMetric(metrics, 'pgward_connections_limited_total', { reason: 'max_pending_logins_per_address' }), 5);
      assert.equal(await scrapeMetric(metrics, 'pgward_connections_limited_total', { reason: 'max_pending_logins' }), 5);
      const codes = (await Promise.all([...flood.slice(20), ...second.slice(10)].map((s) => s.refused)));
      assert.deepEqual(codes, Array(10).fill('53300'));

      // Five sessions fill --maxConnections while 30 silent sockets sit there.
      for (const s of second.slice(0, 10)) s.socket.destroy();
      await until(async () => (await scrapeMetric(metrics, 'pgward_logins_pending')) === 20, 10_000, 'the .3 sockets gone');
      const sessions = await Promise.all(Array.from({ length: 5 }, () => loggedIn(proxy.port)));
      const sixth = silent(proxy.port, '127.0.0.1');
      assert.equal(await sixth.refused, '53300', 'a sixth session is over --maxConnections');
      for (const s of sessions) s.socket.destroy();
      assert.deepEqual(await (async () => {
        await until(async () => (await scrapeMetric(metrics, 'pgward_connections_active')) <= 20, 10_000, 'sessions closed');
        return query(proxy.port, 'select 3 as ok');
      })(), [{ ok: 3 }]);
    } finally {
      for (const s of [...flood, ...second]) s.socket.destroy();
    }
    await until(async () => (await scrapeMetric(metrics, 'pgward_logins_pending')) === 0, 10_000, 'no login pending');
  });
});
