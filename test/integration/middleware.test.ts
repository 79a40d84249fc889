import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { ConfigError } from '../../src/config/load.js';
import { encodeStartupMessage, fe } from '../../src/protocol/index.js';
import { PgCluster } from '../helpers/pg-cluster.js';
import { logEvents, startTestProxy, type TestProxy } from '../helpers/proxy.js';
import { RawClient } from '../helpers/raw-client.js';
import { until } from '../helpers/wait.js';

let cluster: PgCluster;
let dir: string;
let fileNo = 0;

before(async () => {
  cluster = await PgCluster.start({ users: [{ name: 'app' }] });
  dir = await mkdtemp(join(tmpdir(), 'pgward-middleware-'));
});

after(async () => {
  await cluster?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Starts the proxy in-process (passthrough to the cluster) with this YAML as its --config file. */
async function proxyWith(yaml: string): Promise<TestProxy> {
  const path = join(dir, `pgward-${++fileNo}.yaml`);
  await writeFile(path, yaml);
  return startTestProxy(['--insecure', '--auth', 'passthrough', '--backend', `${cluster.url('app')}?sslmode=disable`, '--config', path]);
}

async function connect(proxy: TestProxy): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: proxy.url('app') });
  c.on('error', () => {});
  await c.connect();
  return c;
}

/** The query-log events written since `mark` (an index into proxy.logs). */
function queries(proxy: TestProxy, mark = 0): Record<string, unknown>[] {
  return logEvents(proxy.logs.slice(mark), 'query');
}

/**
 * The query-log events since `mark`, once there are `count` of them: query-log only observes, so
 * a statement's line may follow its answer by a few milliseconds (README, "Middleware API"), and
 * lines come in the order of their statements.
 */
async function logged(proxy: TestProxy, count: number, mark = 0): Promise<Record<string, unknown>[]> {
  await until(() => queries(proxy, mark).length >= count, 1000, `${count} query-log lines`);
  return queries(proxy, mark);
}

/** Runs `sql` and returns the error code it failed with (or undefined). */
async function failing(c: pg.Client, sql: string, values?: unknown[]): Promise<string | undefined> {
  try {
    await c.query(sql, values);
    return undefined;
  } catch (err) {
    return (err as { code?: string }).code;
  }
}


/**
 * Logs in with a hand-made startup message (so any parameter can be sent), runs one simple query
 * and returns the first row's values and the errors received.
 */
async function rawQuery(port: number, params: [string, string][], sql: string): Promise<{ values?: (string | undefined)[]; errors: Record<string, string | undefined>[]; localPort: number }> {
  await using c = await RawClient.connect(port);
  c.write(encodeStartupMessage([['user', 'app'], ['database', 'postgres'], ...params]));
  await until(() => c.messages.some((m) => m.type === 'ReadyForQuery' || m.type === 'ErrorResponse'), 10_000, 'login');
  if (c.errors().length > 0) return { errors: c.errors(), localPort: c.socket.localPort! };
  const mark = c.messages.length;
  c.write(fe.query(sql).raw);
  await until(() => c.messages.slice(mark).some((m) => m.type === 'ReadyForQuery'), 10_000, 'query answer');
  const row = c.messages.slice(mark).find((m) => m.type === 'DataRow');
  const values = row?.type === 'DataRow' ? row.body().values.map((v) => v?.toString()) : undefined;
  return { values, errors: c.errors(), localPort: c.socket.localPort! };
}

describe('query-log', () => {
  it('logs one event per statement: simple, multi-statement, extended with parameters, failures, row counts', async () => {
    await using proxy = await proxyWith('pipeline:\n  - query-log\n');
    const c = await connect(proxy);
    try {
      // A simple statement.
      let mark = proxy.logs.length;
      await c.query('select 1 as a');
      let ev = await logged(proxy, 1, mark);
      assert.equal(ev.length, 1);
      const first = ev[0]!;
      assert.equal(first.event, 'query');
      assert.equal(first.statement, 'select ? as a');
      assert.equal(first.params, 0);
      assert.equal(first.rows, 1);
      assert.equal(first.command, 'SELECT');
      assert.equal(first.user, 'app');
      assert.equal(first.database, 'postgres');
      assert.equal(first.sqlstate, undefined);
      assert.equal(typeof first.session, 'string');
      assert.ok((first.session as string).length > 0);
      assert.equal(typeof first.duration_ms, 'number');
      assert.ok((first.duration_ms as number) >= 0);
      const session = first.session;

      // A multi-statement query: one event per statement, each with its own row count.
      mark = proxy.logs.length;
      await c.query('create temp table ql(x int, s text); insert into ql values (1, \'a\'), (2, \'b\'), (3, \'c\'); update ql set x = x + 10 where x > 1; select * from ql');
      ev = await logged(proxy, 4, mark);
      assert.deepEqual(
        ev.map((e) => [e.statement, e.command, e.rows]),
        [
          ['create temp table ql(x int, s text)', 'CREATE', undefined],
          ['insert into ql values (?, ?), (?, ?), (?, ?)', 'INSERT', 3],
          ['update ql set x = x + ? where x > ?', 'UPDATE', 2],
          ['select * from ql', 'SELECT', 3],
        ],
      );
      assert.ok(ev.every((e) => e.session === session && e.params === 0 && e.sqlstate === undefined));

      // The extended protocol with bound parameters: their number is logged, never their values.
      const secret = 'bound-value-9f3a7c-never-logged';
      mark = proxy.logs.length;
      const r = await c.query('select $1::text as v, $2::int + 1 as n', [secret, 41]);
      assert.equal(r.rows[0].v, secret);
      ev = await logged(proxy, 1, mark);
      assert.equal(ev.length, 1);
      assert.equal(ev[0]!.statement, 'select $1::text as v, $2::int + ? as n');
      assert.equal(ev[0]!.params, 2);
      assert.equal(ev[0]!.rows, 1);
      assert.equal(ev[0]!.command, 'SELECT');
      assert.equal(ev[0]!.session, session);

      // A named prepared statement run twice: two events, each with its parameter count.
      mark = proxy.logs.length;
      for (const v of [`${secret}-1`, `${secret}-2`]) {
        await c.query({ name: 'ins', text: 'insert into ql(x, s) values (100, $1)', values: [v] });
      }
      ev = await logged(proxy, 2, mark);
      assert.deepEqual(
        ev.map((e) => [e.statement, e.params, e.rows, e.command]),
        [
          ['insert into ql(x, s) values (?, $1)', 1, 1, 'INSERT'],
          ['insert into ql(x, s) values (?, $1)', 1, 1, 'INSERT'],
        ],
      );

      // Failing statements carry their SQLSTATE: simple protocol, extended (error at Bind), and a
      // multi-statement query whose rest is not run after the failure.
      mark = proxy.logs.length;
      assert.equal(await failing(c, 'select 1/0'), '22012');
      assert.equal(await failing(c, 'select $1::int as n', [`${secret}-not-an-int`]), '22P02');
      assert.equal(await failing(c, 'select 1; select * from no_such_table; select 2'), '42P01');
      assert.equal(await failing(c, 'selec 1'), '42601');
      ev = await logged(proxy, 5, mark);
      assert.deepEqual(
        ev.map((e) => [e.statement, e.sqlstate, e.params]),
        [
          ['select ?/?', '22012', 0],
          ['select $1::int as n', '22P02', 1],
          ['select ?', undefined, 0],
          ['select * from no_such_table', '42P01', 0],
          ['selec ?', '42601', 0],
        ],
      );
      assert.equal(ev[2]!.rows, 1);

      // The session still works after the errors (the extended-protocol tracking resynchronised).
      mark = proxy.logs.length;
      const n = await c.query('select count(*)::int as n from ql where s like $1', [`${secret}%`]);
      assert.equal(n.rows[0].n, 2);
      ev = await logged(proxy, 1, mark);
      assert.deepEqual(ev.map((e) => [e.statement, e.params, e.rows]), [['select count(*)::int as n from ql where s like $1', 1, 1]]);

      // No bound value ever reaches the log, in any line.
      const leaks = proxy.logs.filter((l) => l.includes(secret));
      assert.deepEqual(leaks, [], 'bound parameter values must never be logged');
    } finally {
      await c.end().catch(() => {});
    }
  });

  it('redacts literals by default; redact: false logs the text as sent (but never a proxy_login literal)', async () => {
    const sql = "select 'hello-literal-5521' as s, 12345 as n, x'1f' as b, $tag$dollar-quoted-8812$tag$ as d";
    {
      await using proxy = await proxyWith('pipeline:\n  - query-log: { redact: true }\n');
      const c = await connect(proxy);
      try {
        await c.query(sql);
        const ev = await logged(proxy, 1);
        assert.equal(ev.length, 1);
        assert.equal(ev[0]!.statement, 'select ? as s, ? as n, ? as b, ? as d');
        for (const lit of ['hello-literal-5521', '12345', 'dollar-quoted-8812']) {
          assert.deepEqual(proxy.logs.filter((l) => l.includes(lit)), [], `literal ${lit} must not be logged`);
        }
      } finally {
        await c.end().catch(() => {});
      }
    }
    {
      await using proxy = await proxyWith('pipeline:\n  - query-log: { redact: false }\n');
      const c = await connect(proxy);
      try {
        await c.query(sql);
        assert.equal(await failing(c, "select proxy_login('login-secret-3307')"), '42883');
        const ev = await logged(proxy, 2);
        assert.deepEqual(
          ev.map((e) => [e.statement, e.sqlstate]),
          [
            [sql, undefined],
            ['select proxy_login(?)', '42883'],
          ],
        );
        assert.deepEqual(proxy.logs.filter((l) => l.includes('login-secret-3307')), [], 'a proxy_login literal is always redacted');
      } finally {
        await c.end().catch(() => {});
      }
    }
  });

  it('slowMs: 200 logs only statements that took at least 200 ms', async () => {
    await using proxy = await proxyWith('pipeline:\n  - query-log: { slowMs: 200 }\n');
    const c = await connect(proxy);
    try {
      await c.query('select 1');
      await c.query('select pg_sleep(0.3)');
      await c.query('select 2', []);
      await c.query('select pg_sleep($1)', [0.3]);
      const ev = await logged(proxy, 2);
      assert.deepEqual(ev.map((e) => [e.statement, e.params]), [
        ['select pg_sleep(?)', 0],
        ['select pg_sleep($1)', 1],
      ]);
      for (const e of ev) assert.ok((e.duration_ms as number) >= 250, `duration_ms ${e.duration_ms}`);
    } finally {
      await c.end().catch(() => {});
    }
  });
});

describe('remote-addr', () => {
  it('puts the client address in pgward.remote_addr, read back with current_setting()', async () => {
    await using proxy = await proxyWith('pipeline:\n  - remote-addr: { param: pgward.remote_addr }\n');
    const c = await connect(proxy);
    try {
      const r = await c.query<{ a: string }>("select current_setting('pgward.remote_addr') as a");
      assert.match(r.rows[0]!.a, /^127\.0\.0\.1:\d+$/);
      const stream = (c as unknown as { connection?: { stream?: net.Socket } }).connection?.stream;
      if (stream?.localPort) assert.equal(r.rows[0]!.a, `127.0.0.1:${stream.localPort}`);
    } finally {
      await c.end().catch(() => {});
    }
  });

  it('cannot be spoofed by the client: startup parameter (any letter case) or -c in options', async () => {
    await using proxy = await proxyWith('pipeline:\n  - remote-addr: { param: pgward.remote_addr }\n');
    const attempts: [string, [string, string][]][] = [
      ['same name', [['pgward.remote_addr', '6.6.6.6:1']]],
      ['other letter case', [['PGWARD.Remote_Addr', '6.6.6.6:2']]],
      ['both', [['pgward.remote_addr', '6.6.6.6:3'], ['PGWARD.REMOTE_ADDR', '6.6.6.6:4']]],
      ['options -c', [['options', '-c pgward.remote_addr=6.6.6.6:5']]],
    ];
    for (const [what, params] of attempts) {
      const r = await rawQuery(proxy.port, params, "select current_setting('pgward.remote_addr')");
      assert.deepEqual(r.errors, [], what);
      assert.deepEqual(r.values, [`127.0.0.1:${r.localPort}`], `${what}: the proxy's value wins`);
    }
  });

  it('without remote-addr in the pipeline a client still cannot set the reserved parameter', async () => {
    await using proxy = await proxyWith('pipeline:\n  - drain-gate\n');
    for (const name of ['pgward.remote_addr', 'PGWARD.Remote_Addr']) {
      const r = await rawQuery(proxy.port, [[name, '6.6.6.6:1']], "select coalesce(current_setting('pgward.remote_addr', true), '<unset>')");
      assert.deepEqual(r.errors, [], name);
      assert.deepEqual(r.values, ['<unset>'], `${name} is dropped`);
    }
  });
});

describe('pipeline configuration errors', () => {
  it('unknown middleware and bad options reject with one ConfigError listing every problem', async () => {
    const yaml = [
      'pipeline:',
      '  - no-such-middleware',
      '  - query-log: { slowMs: -5, redact: "yes", colour: red }',
      '  - remote-addr: { param: user }',
      '  - drain-gate: { grace: 5 }',
      '',
    ].join('\n');
    await assert.rejects(proxyWith(yaml), (err: unknown) => {
      assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
      const text = err.problems.join('\n');
      for (const p of [
        /unknown middleware "no-such-middleware"/,
        /query-log: .*option "slowMs" must be a non-negative number/,
        /query-log: .*option "redact" must be a boolean/,
        /query-log: .*unknown option "colour"/,
        /remote-addr: .*"user" is a connection parameter/,
        /drain-gate: takes no options/,
      ]) {
        assert.match(text, p);
      }
      return true;
    });
  });

  it('a middleware listed twice, a malformed entry and a pipeline that is not a list are ConfigErrors', async () => {
    await assert.rejects(proxyWith('pipeline:\n  - query-log\n  - { query-log: {}, remote-addr: {} }\n  - query-log: { slowMs: 5 }\n'), (err: unknown) => {
      assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
      const text = err.problems.join('\n');
      assert.match(text, /"query-log" is listed twice/);
      assert.match(text, /pipeline\[1\]: expected a name or a mapping with exactly one name/);
      return true;
    });
    await assert.rejects(proxyWith('pipeline: query-log\n'), (err: unknown) => {
      assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
      assert.match(err.problems.join('\n'), /pipeline: expected a list/);
      return true;
    });
  });
});
