import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import postgres from 'postgres';
import { filter, tap } from 'rxjs';
import type { Middleware } from '../../src/pipeline/index.js';
import { be, encodeStartupMessage, fe, Framer, PgError } from '../../src/protocol/index.js';
import { PgCluster } from '../helpers/pg-cluster.js';
import { runPsql } from '../helpers/psql.js';
import { logEvents, startTestProxy, type TestProxy } from '../helpers/proxy.js';
import { until } from '../helpers/wait.js';

// Middleware that declare the messages they read, on both carriers: on the native one the
// declared messages come up from C in one batch per read and everything else is forwarded in C.
let cluster: PgCluster;

before(async () => {
  cluster = await PgCluster.start({});
  await cluster.sql('CREATE TABLE items (id int primary key, name text)');
});

after(async () => {
  await cluster?.stop();
});

/** Runs simple, extended, pipelined, COPY, large-result and LISTEN/NOTIFY traffic through `proxy`, checking every answer. */
async function everyKindOfTraffic(proxy: TestProxy): Promise<{ simpleQueries: number }> {
  let simpleQueries = 0;
  const client = new pg.Client({ connectionString: proxy.url('postgres') });
  await client.connect();
  try {
    assert.deepEqual((await client.query('select 1 as one')).rows, [{ one: 1 }]);
    simpleQueries++;
    assert.deepEqual((await client.query('select $1::int + 1 as n', [41])).rows, [{ n: 42 }]);
    const big = await client.query('select g, md5(g::text) as h from generate_series(1, 100000) g');
    simpleQueries++;
    assert.equal(big.rows.length, 100000);
    assert.equal(big.rows[99999].h, (await cluster.sql('select md5(100000::text) as h')).rows[0].h);
    const wide = await client.query("select repeat('w', 3000000) as w");
    simpleQueries++;
    assert.equal(wide.rows[0].w.length, 3000000, 'a DataRow of several MB, intact');
  } finally {
    await client.end();
  }

  const sql = postgres(proxy.url('postgres'), { max: 1, onnotice: () => {} });
  try {
    const results = await Promise.all([1, 2, 3, 4, 5].map((i) => sql`select ${i}::int * 2 as v`));
    assert.deepEqual(results.map((r) => r[0]!.v), [2, 4, 6, 8, 10], 'pipelined extended protocol');
  } finally {
    await sql.end();
  }

  const input = Array.from({ length: 2000 }, (_, i) => `${5000 + i}\tname${i}`).join('\n') + '\n';
  await cluster.sql('delete from items where id >= 5000');
  const load = await runPsql([proxy.url('postgres'), '-c', 'COPY items FROM STDIN'], {}, input);
  assert.equal(load.code, 0, load.stderr);
  const out = await runPsql([proxy.url('postgres'), '-c', 'COPY (select id, name from items where id >= 5000 order by id) TO STDOUT']);
  assert.equal(out.code, 0, out.stderr);
  assert.equal(out.stdout, input, 'COPY in and out');
  simpleQueries += 2;

  const listener = new pg.Client({ connectionString: proxy.url('postgres') });
  const notifier = new pg.Client({ connectionString: proxy.url('postgres') });
  await listener.connect();
  await notifier.connect();
  try {
    const got = new Promise<pg.Notification>((resolve) => listener.on('notification', resolve));
    await listener.query('LISTEN carrier_test');
    await notifier.query("NOTIFY carrier_test, 'hello'");
    simpleQueries += 2;
    assert.equal((await got).payload, 'hello');
  } finally {
    await listener.end();
    await notifier.end();
  }
  return { simpleQueries };
}

for (const relay of ['native', 'js'] as const) {
  const relayFlags = relay === 'js' ? ['--no-nativeRelay'] : [];
  const args = () => ['--insecure', '--auth', 'passthrough', '--backend', cluster.url('postgres', undefined, 'postgres') + '?sslmode=disable', ...relayFlags];

  describe(`middleware that declare their messages, ${relay} carrier`, () => {
    it('a middleware that declares only Query sees only Query, and everything else arrives intact and in order', async () => {
      const seen: string[] = [];
      const queries: Middleware = { name: 'queries', messages: { frontend: ['Query'] }, session: () => ({ frontend: tap((m) => seen.push(m.type)) }) };
      await using proxy = await startTestProxy(args(), { middleware: [queries] });
      const { simpleQueries } = await everyKindOfTraffic(proxy);
      assert.ok(seen.length >= simpleQueries, `saw ${seen.length} queries`);
      assert.deepEqual([...new Set(seen)], ['Query']);
      await until(() => logEvents(proxy.logs, 'session ended').length >= 6, 5000, 'the sessions to end');
      assert.ok(logEvents(proxy.logs, 'session ended').every((e) => e.relay === relay));
    });

    it('a backend declaration: only CommandComplete and ReadyForQuery come up, in order with the rows between them', async () => {
      const seen: string[] = [];
      const tags: Middleware = {
        name: 'tags',
        messages: { backend: ['CommandComplete', 'ReadyForQuery'] },
        session: () => ({ backend: tap((m) => seen.push(m.type === 'CommandComplete' ? m.body().tag : m.type)) }),
      };
      await using proxy = await startTestProxy(args(), { middleware: [tags] });
      const client = new pg.Client({ connectionString: proxy.url('postgres') });
      await client.connect();
      try {
        const r = await client.query('select g from generate_series(1, 5000) g; select 2');
        assert.equal((r as unknown as pg.QueryResult[])[0]!.rows.length, 5000);
      } finally {
        await client.end();
      }
      assert.deepEqual(seen.slice(-3), ['SELECT 5000', 'SELECT 1', 'ReadyForQuery']);
      assert.equal(seen.includes('DataRow'), false);
    });

    it('a middleware that declares nothing sees everything', async () => {
      const front = new Set<string>();
      const back = new Set<string>();
      const all: Middleware = { name: 'all', session: () => ({ frontend: tap((m) => front.add(m.type)), backend: tap((m) => back.add(m.type)) }) };
      await using proxy = await startTestProxy(args(), { middleware: [all] });
      const client = new pg.Client({ connectionString: proxy.url('postgres') });
      await client.connect();
      await client.query('select $1::text as t', ['x']);
      await client.query('select 1');
      await client.end();
      for (const t of ['Parse', 'Bind', 'Describe', 'Execute', 'Sync', 'Query', 'Terminate']) assert.ok(front.has(t), `saw ${t}`);
      for (const t of ['ParseComplete', 'BindComplete', 'RowDescription', 'DataRow', 'CommandComplete', 'ReadyForQuery']) assert.ok(back.has(t), `saw ${t}`);
    });

    it('injects an answer and closes the session from a delivered message', async () => {
      const answering: Middleware = {
        name: 'answering',
        messages: { frontend: ['Query'] },
        session: (ctx) => ({
          frontend: filter((m) => {
            if (m.type !== 'Query') return true;
            const sql = m.body().sql;
            if (sql === 'ping') {
              ctx.sendToClient(be.commandComplete('PING'), be.readyForQuery(ctx.state.transactionStatus));
              return false;
            }
            if (sql === 'quit') {
              ctx.close(new PgError('FATAL', '57P01', 'closed by the middleware'));
              return false;
            }
            return true;
          }),
        }),
      };
      await using proxy = await startTestProxy(args(), { middleware: [answering] });
      const client = new pg.Client({ connectionString: proxy.url('postgres') });
      client.on('error', () => {});
      await client.connect();
      assert.equal((await client.query('ping')).command, 'PING');
      assert.deepEqual((await client.query('select 3 as three')).rows, [{ three: 3 }], 'the session goes on');
      assert.equal((await client.query('ping')).command, 'PING');
      await assert.rejects(client.query('quit'), (e: { code?: string }) => e.code === '57P01');
      await until(() => logEvents(proxy.logs, 'session ended').length === 1, 5000, 'the session to end');
      const ended = logEvents(proxy.logs, 'session ended')[0]!;
      assert.equal(ended.reason, 'closed');
      assert.equal(ended.relay, relay);
    });

    it('holds the backend back while a client does not read, with a middleware reading every row, memory bounded', async () => {
      const ROWS = 40_000; // × 2 kB: about 80 MB
      let rowsSeen = 0;
      const counter: Middleware = { name: 'rows', messages: { backend: ['DataRow'] }, session: () => ({ backend: tap(() => rowsSeen++) }) };
      await using proxy = await startTestProxy(args(), { middleware: [counter] });
      const socket = net.connect({ host: '127.0.0.1', port: proxy.port });
      await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
      const framer = new Framer();
      let dataRows = 0;
      let ready = 0;
      socket.on('data', (chunk: Buffer) =>
        framer.push(chunk, (code) => {
          if (code === 0x44) dataRows++;
          else if (code === 0x5a) ready++;
        }),
      );
      try {
        socket.write(encodeStartupMessage([['user', 'postgres'], ['database', 'postgres'], ['application_name', 'slow-carrier']]));
        await until(() => ready === 1, 10_000, 'login through the proxy');
        socket.pause();
        const rssBefore = process.memoryUsage().rss;
        socket.write(fe.query(`select repeat('x', 2000) from generate_series(1, ${ROWS})`).raw);
        const backendWait = async () =>
          (await cluster.sql<{ w: string | null }>("select wait_event as w from pg_stat_activity where application_name = 'slow-carrier'")).rows[0]?.w;
        await until(async () => (await backendWait()) === 'ClientWrite', 15_000, 'the backend waiting on ClientWrite');
        await new Promise((r) => setTimeout(r, 1000));
        assert.equal(await backendWait(), 'ClientWrite', 'the backend is still held back');
        const grown = process.memoryUsage().rss - rssBefore;
        assert.ok(grown < 48 * 1024 * 1024, `the proxy grew by ${Math.round(grown / 1e6)} MB for an 80 MB result`);
        assert.ok(rowsSeen < ROWS / 2, `the middleware saw ${rowsSeen} rows before the client read any`);
        socket.resume();
        await until(() => ready === 2, 60_000, 'the whole result');
        assert.equal(dataRows, ROWS);
        assert.equal(rowsSeen, ROWS);
      } finally {
        socket.destroy();
      }
    });
  });
}
