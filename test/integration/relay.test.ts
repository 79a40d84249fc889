import assert from 'node:assert/strict';
import net from 'node:net';
import v8 from 'node:v8';
import vm from 'node:vm';
import { after, before, describe } from 'node:test';
import pg from 'pg';
import postgres from 'postgres';
import { encodeCancelRequest, encodeStartupMessage, fe, Framer } from '../../src/protocol/index.js';
import { PgCluster } from '../helpers/pg-cluster.js';
import { casesFor, PG_VERSIONS } from '../helpers/pg-versions.js';
import { runPsql } from '../helpers/psql.js';
import { logEvents, startTestProxy, type TestProxy } from '../helpers/proxy.js';
import { until } from '../helpers/wait.js';

// Every case runs on both relays: the native one (the default for a pipeline that looks at no
// message) and the JavaScript one (--no-nativeRelay, and what every other pipeline uses).
// PostgreSQL 15 runs every case; 14, 16, 17 and 18 the ones marked `each` (query, large result,
// COPY, LISTEN/NOTIFY, cancel — on 18 a 32-byte backend cancel key behind 3.0 clients).
for (const version of PG_VERSIONS) for (const relay of ['native', 'js'] as const) {
  const relayFlags = relay === 'js' ? ['--no-nativeRelay'] : [];
  const { each, it15 } = casesFor(version);

  describe(`relay through pgward (passthrough) with real clients, PostgreSQL ${version}, ${relay} relay`, () => {
    let cluster: PgCluster;
    let proxy: TestProxy;

    before(async () => {
      cluster = await PgCluster.start({ version });
      await cluster.sql('CREATE TABLE items (id int primary key, name text)');
      proxy = await startTestProxy(['--insecure', '--auth', 'passthrough', '--backend', cluster.url('postgres', undefined, 'postgres') + '?sslmode=disable', ...relayFlags]);
    });

    it15(`carries the session on the ${relay} relay, as the log says`, async () => {
      const client = new pg.Client({ connectionString: proxy.url('postgres') });
      await client.connect();
      await client.query('select 1');
      await client.end();
      await until(() => logEvents(proxy.logs, 'session ended').length > 0, 5000, 'the session to end');
      assert.equal(logEvents(proxy.logs, 'session ended').at(-1)?.relay, relay);
    });

    after(async () => {
      await proxy?.close();
      await cluster?.stop();
    });

    each('runs simple and extended queries with pg', async () => {
      const client = new pg.Client({ connectionString: proxy.url('postgres') });
      await client.connect();
      try {
        const simple = await client.query('select 1 as one');
        assert.deepEqual(simple.rows, [{ one: 1 }]);
        const ext = await client.query('select $1::int + 1 as n, $2::text as t', [41, 'x']);
        assert.deepEqual(ext.rows, [{ n: 42, t: 'x' }]);
        const named = { name: 'stmt1', text: 'select $1::text as v', values: ['named'] };
        assert.deepEqual((await client.query(named)).rows, [{ v: 'named' }]);
        assert.deepEqual((await client.query({ ...named, values: ['again'] })).rows, [{ v: 'again' }]);
        await assert.rejects(client.query('select * from no_such_table'), (e: { code?: string }) => e.code === '42P01');
        assert.deepEqual((await client.query('select 2 as two')).rows, [{ two: 2 }], 'session survives an ERROR');
      } finally {
        await client.end();
      }
    });

    it15('runs queries with postgres.js (pipelined extended protocol)', async () => {
      const sql = postgres(proxy.url('postgres'), { max: 1, onnotice: () => {} });
      try {
        const results = await Promise.all([1, 2, 3, 4, 5].map((i) => sql`select ${i}::int * 2 as v`));
        assert.deepEqual(results.map((r) => r[0]!.v), [2, 4, 6, 8, 10]);
        await sql.begin(async (tx) => {
          await tx`insert into items values (1, 'one')`;
          const [row] = await tx`select name from items where id = 1`;
          assert.equal(row!.name, 'one');
        });
      } finally {
        await sql.end();
      }
    });

    it15('runs psql', async () => {
      const r = await runPsql([proxy.url('postgres'), '-c', 'select 40 + 2']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim(), '42');
    });

    each('relays a 100k-row result intact', async () => {
      const client = new pg.Client({ connectionString: proxy.url('postgres') });
      await client.connect();
      try {
        const r = await client.query('select g, md5(g::text) as h from generate_series(1, 100000) g');
        assert.equal(r.rows.length, 100000);
        assert.equal(r.rows[99999].g, 100000);
        const direct = await cluster.sql("select md5(100000::text) as h");
        assert.equal(r.rows[99999].h, direct.rows[0].h);
      } finally {
        await client.end();
      }
    });

    each('copies in and out with psql', async () => {
      const input = Array.from({ length: 1000 }, (_, i) => `${1000 + i}\tname${i}`).join('\n') + '\n';
      const load = await runPsql([proxy.url('postgres'), '-c', 'COPY items FROM STDIN'], {}, input);
      assert.equal(load.code, 0, load.stderr);
      const out = await runPsql([proxy.url('postgres'), '-c', 'COPY (select id, name from items where id >= 1000 order by id) TO STDOUT']);
      assert.equal(out.code, 0, out.stderr);
      assert.equal(out.stdout, input);
      const failed = await runPsql([proxy.url('postgres'), '-c', 'COPY items FROM STDIN'], {}, 'not-a-number\tx\n');
      assert.notEqual(failed.code, 0);
      assert.match(failed.stderr, /invalid input syntax for type integer/);
    });

    each('delivers LISTEN/NOTIFY across two sessions', async () => {
      const listener = new pg.Client({ connectionString: proxy.url('postgres') });
      const notifier = new pg.Client({ connectionString: proxy.url('postgres') });
      await listener.connect();
      await notifier.connect();
      try {
        const got = new Promise<pg.Notification>((resolve) => listener.on('notification', resolve));
        await listener.query('LISTEN pgward_test');
        await notifier.query("NOTIFY pgward_test, 'hello'");
        const n = await got;
        assert.equal(n.channel, 'pgward_test');
        assert.equal(n.payload, 'hello');
      } finally {
        await listener.end();
        await notifier.end();
      }
    });

    each('cancels a running query (57014) through the proxy-issued key', async () => {
      const sql = postgres(proxy.url('postgres'), { max: 1 });
      try {
        const started = Date.now();
        const q = sql`select pg_sleep(20)`;
        const cancelled = assert.rejects(q.execute(), (e: { code?: string }) => e.code === '57014');
        await new Promise((r) => setTimeout(r, 300));
        await q.cancel();
        await cancelled;
        assert.ok(Date.now() - started < 10_000, 'cancelled well before the sleep ended');
        const [row] = await sql`select 'still usable' as s`;
        assert.equal(row!.s, 'still usable');
      } finally {
        await sql.end();
      }
    });

    it15("gives clients the backend's pid but never its cancel secret", async () => {
      const client = new pg.Client({ connectionString: proxy.url('postgres') });
      await client.connect();
      try {
        const { rows } = await client.query('select pg_backend_pid() as pid');
        const { processID, secretKey } = client as unknown as { processID: number; secretKey: number };
        assert.equal(processID, rows[0].pid);
        // The client's key sent to PostgreSQL itself cancels nothing: the secret is pgward's own.
        const sleeping = client.query('select pg_sleep(1) as slept');
        await new Promise((r) => setTimeout(r, 200));
        const secret = Buffer.alloc(4);
        secret.writeInt32BE(secretKey);
        const direct = net.connect({ host: '127.0.0.1', port: cluster.port });
        direct.on('error', () => {});
        direct.end(encodeCancelRequest(processID, secret));
        await new Promise((r) => direct.once('close', r));
        assert.equal((await sleeping).rows.length, 1, 'not canceled');
      } finally {
        await client.end();
      }
    });

    it15('holds the backend back while a client does not read (backpressure), serves others, then delivers everything', async () => {
      const ROWS = 50_000; // × 2 kB: about 100 MB, far more than socket buffers hold
      const socket = net.connect({ host: '127.0.0.1', port: proxy.port });
      await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
      const framer = new Framer();
      let dataRows = 0;
      let ready = 0;
      socket.on('data', (chunk: Buffer) =>
        framer.push(chunk, (code) => {
          if (code === 0x44) dataRows++; // DataRow
          else if (code === 0x5a) ready++; // ReadyForQuery
        }),
      );
      try {
        socket.write(encodeStartupMessage([['user', 'postgres'], ['database', 'postgres'], ['application_name', 'slow-reader']]));
        await until(() => ready === 1, 10_000, 'login through the proxy');
        socket.pause();
        const buffersBefore = process.memoryUsage().arrayBuffers;
        socket.write(fe.query(`select repeat('x', 2000) from generate_series(1, ${ROWS})`).raw);

        // The backend ends up blocked writing to the proxy, and stays so: pgward (in this process)
        // stopped reading it instead of buffering the whole result in memory.
        const backendWait = async () =>
          (await cluster.sql<{ s: string; w: string | null }>("select state as s, wait_event as w from pg_stat_activity where application_name = 'slow-reader'")).rows[0];
        await until(async () => (await backendWait())?.w === 'ClientWrite', 15_000, 'the backend waiting on ClientWrite');
        await new Promise((r) => setTimeout(r, 1_500));
        assert.deepEqual(await backendWait(), { s: 'active', w: 'ClientWrite' }, 'the backend is still held back');
        const buffered = process.memoryUsage().arrayBuffers - buffersBefore;
        assert.ok(buffered < 32 * 1024 * 1024, `the proxy holds ${Math.round(buffered / 1e6)} MB of a 100 MB result, not all of it`);
        assert.equal(dataRows, 0, 'nothing was read by the paused client');
        const other = new pg.Client({ connectionString: proxy.url('postgres') });
        await other.connect();
        assert.deepEqual((await other.query('select 2 as ok')).rows, [{ ok: 2 }], 'other sessions are served meanwhile');
        await other.end();

        socket.resume();
        await until(() => ready === 2, 60_000, 'the whole result');
        assert.equal(dataRows, ROWS, 'every row arrives once the client reads again');
      } finally {
        socket.destroy();
      }
    });

    it15('relays a backend termination (57P01) and keeps serving others', async () => {
      const victim = new pg.Client({ connectionString: proxy.url('postgres') });
      victim.on('error', () => {});
      await victim.connect();
      const { rows } = await victim.query('select pg_backend_pid() as pid');
      const killed = assert.rejects(victim.query('select pg_sleep(20)'), (e: { code?: string }) => e.code === '57P01');
      await new Promise((r) => setTimeout(r, 200));
      await cluster.sql(`select pg_terminate_backend(${rows[0].pid})`);
      await killed;
      const other = new pg.Client({ connectionString: proxy.url('postgres') });
      await other.connect();
      assert.deepEqual((await other.query('select 1 as ok')).rows, [{ ok: 1 }]);
      await other.end();
      // The victim's end is logged as its close completes, which may come after the other session's query.
      await until(() => logEvents(proxy.logs, 'session ended').some((e) => e.reason === 'backend-eof'), 5000, 'the session end logged with its reason');
    });

    it15('lets go of an ended session at once, not only after the close grace period', async () => {
      const sessions: WeakRef<object>[] = [];
      // Handlers that hold their session context, as most middleware do.
      const holder = {
        name: 'holder',
        session: (ctx: object) => {
          sessions.push(new WeakRef(ctx));
          return { onClose: () => void ctx };
        },
      };
      await using watched = await startTestProxy(
        ['--insecure', '--auth', 'passthrough', '--backend', cluster.url('postgres', undefined, 'postgres') + '?sslmode=disable', ...relayFlags],
        { middleware: [holder] },
      );
      const client = new pg.Client({ connectionString: watched.url('postgres') });
      await client.connect();
      assert.deepEqual((await client.query('select 1 as one')).rows, [{ one: 1 }]);
      await client.end();
      await until(() => logEvents(watched.logs, 'session ended').length === 1, 5000, 'the session to end');
      assert.equal(sessions.length, 1);
      v8.setFlagsFromString('--expose-gc');
      const gc = vm.runInNewContext('gc') as () => void;
      // Sockets and everything of the session were kept for the whole grace period (5 s) before.
      await until(() => (gc(), sessions[0]!.deref() === undefined), 2500, 'the ended session to be collected');
    });
  });
}
