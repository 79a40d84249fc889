import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import postgres from 'postgres';
import { encodeStartupMessage, fe } from '../../src/protocol/index.js';
import { TestCA } from '../helpers/certs.js';
import { PgCluster } from '../helpers/pg-cluster.js';
import { runPsql } from '../helpers/psql.js';
import { logEvents, startTestProxy, type TestProxy } from '../helpers/proxy.js';
import { RawClient } from '../helpers/raw-client.js';
import { until } from '../helpers/wait.js';

// Backend connection reuse (SPEC §8) with real PostgreSQL and real clients, on both relays.

/** The backend pid a fresh pg session through `url` lands on, after running `work` in it. */
async function pidOf(url: string, work?: (c: pg.Client) => Promise<unknown>, params: Partial<pg.ClientConfig> = {}): Promise<number> {
  const client = new pg.Client({ connectionString: url, ...params });
  await client.connect();
  try {
    const pid = Number((await client.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid);
    await work?.(client);
    return pid;
  } finally {
    await client.end();
  }
}

/** Resolves once the backend with `pid` has left pg_stat_activity. */
async function gone(cluster: PgCluster, pid: number, what: string): Promise<void> {
  await until(async () => (await cluster.sql('select 1 from pg_stat_activity where pid = $1', 'postgres', [pid])).rowCount === 0, 5000, what);
}

for (const relay of ['native', 'js'] as const) {
  const relayFlags = relay === 'js' ? ['--no-nativeRelay'] : [];

  describe(`backend connection reuse, ${relay} relay`, () => {
    let cluster: PgCluster;
    let proxy: TestProxy;
    let backendUrl: string;

    before(async () => {
      cluster = await PgCluster.start();
      await cluster.sql("CREATE ROLE other NOLOGIN; CREATE TABLE shared (id int); CREATE SCHEMA elsewhere");
      backendUrl = cluster.url('postgres', undefined, 'postgres') + '?sslmode=disable';
      proxy = await startTestProxy(['--insecure', '--auth', 'passthrough', '--backend', backendUrl, ...relayFlags]);
    });

    after(async () => {
      await proxy?.close();
      await cluster?.stop();
    });

    it('moves a 20 MB result out and a COPY of 200 000 rows in, intact, on a reused backend', async () => {
      const first = await pidOf(proxy.url('postgres'));
      // Reused (on the native relay the kept connection is a plain native endpoint by now): large reads fill the carrier's room.
      const out = await runPsql([proxy.url('postgres'), '-c', "select pg_backend_pid(), sum(length(r)), count(*) from (select repeat('x', 1000) || i as r from generate_series(1, 20000) i) t"], {}, undefined, { timeoutMs: 60_000 });
      const [pid, bytes, rows] = out.stdout.trim().split('|').map(Number);
      assert.deepEqual({ pid, bytes, rows }, { pid: first, bytes: 20_000_000 + 88_894, rows: 20_000 }, out.stderr);
      const lines = Array.from({ length: 200_000 }, (_, i) => String(i)).join('\n') + '\n';
      const into = await runPsql([proxy.url('postgres'), '-c', 'COPY shared FROM STDIN', '-c', 'select pg_backend_pid(), count(*), sum(id) from shared'], {}, lines, { timeoutMs: 60_000 });
      await cluster.sql('truncate shared');
      assert.equal(into.stdout.trim().split('\n').at(-1), `${first}|200000|19999900000`, into.stderr);
    });

    it('hands sequential sessions the same backend, with pg, postgres.js and psql', async () => {
      const first = await pidOf(proxy.url('postgres'));
      assert.equal(await pidOf(proxy.url('postgres')), first, 'pg, second session');
      const sql = postgres(proxy.url('postgres'), { max: 1 });
      const [row] = await sql`select pg_backend_pid() as pid`;
      await sql.end();
      assert.equal(Number(row!.pid), first, 'postgres.js');
      const psql = await runPsql([proxy.url('postgres'), '-c', 'select pg_backend_pid()']);
      assert.equal(Number(psql.stdout.trim()), first, 'psql');
      const started = logEvents(proxy.logs, 'session started').slice(-4).map((e) => e.backend_pool);
      assert.deepEqual(started.slice(1), ['reused', 'reused', 'reused']);
    });

    it('leaves nothing of a session for the next one on the same backend', async () => {
      const pid = await pidOf(proxy.url('postgres'), async (c) => {
        await c.query('CREATE TEMP TABLE scratch (x int)');
        await c.query('PREPARE leftover AS SELECT 1');
        await c.query('BEGIN; DECLARE held CURSOR WITH HOLD FOR SELECT 1; COMMIT');
        await c.query('LISTEN somewhere');
        await c.query('SELECT pg_advisory_lock(42)');
        await c.query('SET ROLE other');
        await c.query('SET search_path = elsewhere');
        await c.query("SET statement_timeout = '7s'");
      });
      const seen = await pidOf(proxy.url('postgres'), async (c) => {
        const q = async (sql: string) => (await c.query(sql)).rows[0] as Record<string, unknown>;
        assert.equal((await q("select count(*)::int as n from pg_class where relname = 'scratch'")).n, 0, 'temp table');
        assert.equal((await q('select count(*)::int as n from pg_prepared_statements')).n, 0, 'prepared statement');
        assert.equal((await q('select count(*)::int as n from pg_cursors')).n, 0, 'cursor WITH HOLD');
        assert.equal((await q('select count(*)::int as n from pg_listening_channels()')).n, 0, 'LISTEN');
        assert.equal((await q("select count(*)::int as n from pg_locks where locktype = 'advisory' and pid = pg_backend_pid()")).n, 0, 'advisory lock');
        assert.equal((await q('select current_user as u')).u, 'postgres', 'SET ROLE');
        assert.equal((await q('show search_path')).search_path, '"$user", public', 'search_path');
        assert.equal((await q('show statement_timeout')).statement_timeout, '0', 'SET');
      });
      assert.equal(seen, pid, 'the same backend');
    });

    it("applies each session's own startup parameters on a reused backend", async () => {
      const settings = "select pg_backend_pid() as pid, current_setting('application_name') as a, current_setting('TimeZone') as tz, current_setting('client_encoding') as enc";
      const session = async (connection: Record<string, string>) => {
        const sql = postgres(proxy.url('postgres'), { max: 1, connection });
        try {
          const [row] = await sql.unsafe(settings);
          return { ...row, pid: Number(row!.pid) } as unknown as { pid: number; a: string; tz: string; enc: string };
        } finally {
          await sql.end();
        }
      };
      const defaultTz = (await cluster.sql<{ tz: string }>("select current_setting('TimeZone') as tz")).rows[0]!.tz;
      const first = await session({ application_name: 'first', TimeZone: 'Asia/Tokyo' });
      assert.deepEqual({ ...first, pid: 0 }, { pid: 0, a: 'first', tz: 'Asia/Tokyo', enc: 'UTF8' });
      const second = await session({ application_name: 'second' });
      assert.deepEqual(second, { pid: first.pid, a: 'second', tz: defaultTz, enc: 'UTF8' }, "the first session's TimeZone is gone");
      // psql sends client_encoding and application_name from its environment.
      const psql = await runPsql([proxy.url('postgres'), '-c', "select pg_backend_pid(), current_setting('client_encoding'), current_setting('application_name')"], {
        PGCLIENTENCODING: 'LATIN1',
        PGAPPNAME: 'third',
      });
      assert.equal(psql.stdout.trim(), `${first.pid}|LATIN1|third`, psql.stderr);
    });

    it('gives a reused session the full ParameterStatus set, its cancel key and ReadyForQuery', async () => {
      const login = async () => {
        await using raw = await RawClient.connect(proxy.port);
        raw.write(encodeStartupMessage(new Map([['user', 'postgres'], ['database', 'postgres'], ['application_name', 'raw']])));
        await until(() => raw.messages.some((m) => m.type === 'ReadyForQuery'), 5000, 'login');
        raw.write(fe.terminate().raw);
        await raw.closedWithin(5000);
        const params = new Map<string, string>();
        for (const m of raw.messages) if (m.type === 'ParameterStatus') params.set(m.body().name, m.body().value);
        const key = raw.messages.find((m) => m.type === 'BackendKeyData');
        return {
          params,
          types: raw.messages.map((m) => m.type),
          pid: key?.type === 'BackendKeyData' ? key.body().processId : 0,
          // Nothing is asked of this client (the proxy has the backend password): the first read holds everything.
          reads: raw.raw.length,
        };
      };
      const fresh = await login();
      const reused = await login();
      assert.equal(reused.pid, fresh.pid, 'the same backend');
      assert.deepEqual([...reused.params.keys()].sort(), [...fresh.params.keys()].sort());
      assert.deepEqual(reused.params, fresh.params);
      assert.equal(reused.params.get('application_name'), 'raw');
      assert.ok(reused.params.size >= 10, `a full set (${reused.params.size})`);
      assert.deepEqual(reused.types.slice(-2), ['BackendKeyData', 'ReadyForQuery']);
      assert.equal(reused.types[0], 'Authentication');
      // AuthenticationOk … ReadyForQuery leave in one write: the client reads them in one go.
      assert.equal(fresh.reads, 1, 'a fresh login reply in one read');
      assert.equal(reused.reads, 1, 'a reused login reply in one read');
    });

    it('closes a client that said Terminate cleanly (EOF, no reset) and keeps its backend', async () => {
      const pooled = await pidOf(proxy.url('postgres'));
      await using raw = await RawClient.connect(proxy.port);
      const errors: Error[] = [];
      raw.socket.on('error', (err) => errors.push(err));
      const ended = new Promise<void>((resolve) => raw.socket.once('end', () => resolve()));
      raw.write(encodeStartupMessage(new Map([['user', 'postgres'], ['database', 'postgres']])));
      await until(() => raw.messages.some((m) => m.type === 'ReadyForQuery'), 5000, 'login');
      raw.write(fe.query('select 1').raw);
      await until(() => raw.messages.filter((m) => m.type === 'ReadyForQuery').length === 2, 5000, 'select 1');
      raw.write(fe.terminate().raw);
      await raw.closedWithin(5000, 'the close after Terminate');
      await ended;
      assert.deepEqual(errors, [], 'no reset');
      assert.deepEqual(raw.messages.map((m) => m.type).slice(-4), ['RowDescription', 'DataRow', 'CommandComplete', 'ReadyForQuery']);
      const key = raw.messages.find((m) => m.type === 'BackendKeyData');
      assert.equal(key?.type === 'BackendKeyData' ? key.body().processId : 0, pooled, 'the pooled backend');
      assert.equal(await pidOf(proxy.url('postgres')), pooled, 'kept for the next session');
    });

    for (const how of ['mid-transaction', 'mid-query', 'mid-COPY'] as const) {
      it(`never reuses the backend of a client that vanished ${how}`, async () => {
        const pooled = await pidOf(proxy.url('postgres'));
        await using raw = await RawClient.connect(proxy.port);
        raw.write(encodeStartupMessage(new Map([['user', 'postgres'], ['database', 'postgres']])));
        await until(() => raw.messages.some((m) => m.type === 'ReadyForQuery'), 5000, 'login');
        const key = raw.messages.find((m) => m.type === 'BackendKeyData');
        const pid = key?.type === 'BackendKeyData' ? key.body().processId : 0;
        assert.equal(pid, pooled, 'the session got the pooled backend');
        const sent = raw.messages.length;
        const statement = { 'mid-transaction': 'BEGIN; INSERT INTO shared VALUES (1)', 'mid-query': 'select pg_sleep(2)', 'mid-COPY': 'COPY shared FROM STDIN' }[how];
        raw.write(fe.query(statement).raw);
        if (how === 'mid-transaction') await until(() => raw.messages.slice(sent).some((m) => m.type === 'ReadyForQuery'), 5000, 'BEGIN');
        if (how === 'mid-COPY') {
          await until(() => raw.messages.some((m) => m.type === 'CopyInResponse'), 5000, 'COPY to start');
          raw.write(fe.copyData(Buffer.from('1\n')).raw);
        }
        await new Promise((r) => setTimeout(r, 200));
        raw.socket.destroy();
        assert.notEqual(await pidOf(proxy.url('postgres')), pid, 'not handed to the next session');
        await gone(cluster, pid, 'the abandoned backend to end');
        assert.equal((await cluster.sql('select count(*)::int as n from shared')).rows[0]!.n, 0, 'nothing committed');
      });
    }

    it('gives the next session a new backend, silently, when the pooled one was killed while idle', async () => {
      const pid = await pidOf(proxy.url('postgres'));
      await cluster.sql('select pg_terminate_backend($1)', 'postgres', [pid]);
      await gone(cluster, pid, 'the killed backend to end');
      const next = await pidOf(proxy.url('postgres'));
      assert.notEqual(next, pid);
      // Killed without the proxy having noticed: the next login must still not see an error.
      // pg_terminate_backend waits (up to 5 s) until the backend has exited, so its FATAL is on
      // the proxy's socket by then; without the wait the backend could still be alive at the
      // hand-out (SIGTERM sent, not yet acted on), which is a backend killed mid-session, not
      // one that died while idle: no check before the hand-out can see that.
      const killedUnseen = await pidOf(proxy.url('postgres'));
      await cluster.sql('select pg_terminate_backend($1, 5000)', 'postgres', [killedUnseen]);
      assert.notEqual(await pidOf(proxy.url('postgres')), killedUnseen);
    });

    it('cancels a query on a reused backend through the proxy-issued key', async () => {
      const warmed = await pidOf(proxy.url('postgres'));
      const sql = postgres(proxy.url('postgres'), { max: 1 });
      try {
        const [{ pid }] = (await sql`select pg_backend_pid() as pid`) as unknown as [{ pid: number }];
        assert.equal(Number(pid), warmed);
        const q = sql`select pg_sleep(20)`;
        const cancelled = assert.rejects(q.execute(), (e: { code?: string }) => e.code === '57014');
        await new Promise((r) => setTimeout(r, 300));
        await q.cancel();
        await cancelled;
      } finally {
        await sql.end();
      }
    });

    it('runs each options session on a connection of its own, never pooled', async () => {
      const pooled = await pidOf(proxy.url('postgres'));
      const withOptions = async () =>
        pidOf(proxy.url('postgres', undefined, 'postgres', 'sslmode=disable&options=-c%20work_mem%3D8MB'), async (c) => {
          assert.equal((await c.query('show work_mem')).rows[0].work_mem, '8MB');
        });
      const a = await withOptions();
      const b = await withOptions();
      assert.notEqual(a, pooled);
      assert.notEqual(b, a);
      assert.equal(await pidOf(proxy.url('postgres')), pooled, 'the pooled one is still there');
    });

    it('refuses a startup parameter the backend refuses, as PostgreSQL would, and keeps the backend', async () => {
      const pooled = await pidOf(proxy.url('postgres'));
      const sql = postgres(proxy.url('postgres'), { max: 1, connection: { TimeZone: 'Not/AZone' } });
      await assert.rejects(sql`select 1`, (e: { code?: string; message?: string }) => e.code === '22023' && /TimeZone/.test(e.message ?? ''));
      await sql.end();
      assert.equal(await pidOf(proxy.url('postgres')), pooled);
    });
  });
}


describe('backend connection reuse: settings and refusals', () => {
  let cluster: PgCluster;
  let backendUrl: string;

  before(async () => {
    cluster = await PgCluster.start({ hba: ['host all app 127.0.0.1/32 scram-sha-256', 'host all all 127.0.0.1/32 trust', 'local all all trust'], users: [{ name: 'app', password: 'right' }] });
    backendUrl = cluster.url('postgres', undefined, 'postgres') + '?sslmode=disable';
  });

  after(async () => {
    await cluster?.stop();
  });

  it('opens a new backend for every session with --poolMode off', async () => {
    await using proxy = await startTestProxy(['--insecure', '--auth', 'passthrough', '--backend', backendUrl, '--poolMode', 'off']);
    const a = await pidOf(proxy.url('postgres'));
    const b = await pidOf(proxy.url('postgres'));
    assert.notEqual(a, b);
    assert.deepEqual(logEvents(proxy.logs, 'session started').map((e) => e.backend_pool), ['unpooled', 'unpooled']);
  });

  it('makes a session wait for a full target and gives it 53300 after --poolWaitTimeout', async () => {
    await using proxy = await startTestProxy(['--insecure', '--auth', 'passthrough', '--backend', backendUrl, '--poolMaxSize', '1', '--poolWaitTimeout', '400ms']);
    const holder = new pg.Client({ connectionString: proxy.url('postgres') });
    await holder.connect();
    try {
      const started = Date.now();
      await assert.rejects(pidOf(proxy.url('postgres')), (e: { code?: string; message?: string }) => e.code === '53300' && /too many backend connections for postgres@127\.0\.0\.1/.test(e.message ?? ''));
      const waited = Date.now() - started;
      assert.ok(waited >= 380, `waited ${waited} ms`);
      // A session that waits gets the connection as soon as the holder is done with it.
      const holderPid = Number((await holder.query('select pg_backend_pid() as p')).rows[0].p);
      const waiting = pidOf(proxy.url('postgres'));
      await new Promise((r) => setTimeout(r, 100));
      await holder.end();
      assert.equal(await waiting, holderPid);
    } finally {
      await holder.end().catch(() => {});
    }
  });

  it('closes, never reuses, a backend whose reset fails', async () => {
    await using proxy = await startTestProxy(['--insecure', '--auth', 'passthrough', '--backend', backendUrl, '--poolReset', 'SELECT 1/0']);
    const a = await pidOf(proxy.url('postgres'));
    await gone(cluster, a, 'the backend whose reset failed to be closed');
    assert.notEqual(await pidOf(proxy.url('postgres')), a);
  });

  it("passes on the backend's own refusal of a login, and pools by credential", async () => {
    const scramUrl = (password: string) => `postgres://app@127.0.0.1:${cluster.port}/postgres?sslmode=disable`.replace('app@', `app:${password}@`);
    await using proxy = await startTestProxy(['--insecure', '--auth', 'passthrough', '--backend', scramUrl('x'), '--no-credsOverride']);
    await assert.rejects(pidOf(proxy.url('app', 'wrong')), (e: { code?: string }) => e.code === '28P01');
    const right = await pidOf(proxy.url('app', 'right'));
    assert.equal(await pidOf(proxy.url('app', 'right')), right, 'reused with the right password');
    // The pooled connection is never handed to a client with another password: that one is checked by the backend.
    await assert.rejects(pidOf(proxy.url('app', 'wrong')), (e: { code?: string }) => e.code === '28P01');
    assert.equal(await pidOf(proxy.url('app', 'right')), right);
  });
});

describe('backend connection reuse over TLS to the backend', () => {
  it('reuses a verify-full SCRAM-SHA-256-PLUS connection, clean, for the next session', async () => {
    await using ca = await TestCA.create();
    const server = await ca.issue('server', { cn: 'localhost', sans: ['DNS:localhost', 'IP:127.0.0.1'] });
    const cluster = await PgCluster.start({ ssl: server, hba: ['hostssl all app 127.0.0.1/32 scram-sha-256', 'local all all trust'], users: [{ name: 'app', password: 'tls-secret' }] });
    try {
      const backend = `postgres://app:tls-secret@127.0.0.1:${cluster.port}/postgres?sslmode=verify-full&sslrootcert=${encodeURIComponent(ca.cert)}`;
      await using proxy = await startTestProxy(['--insecure', '--auth', 'passthrough', '--backend', backend]);
      const first = await pidOf(proxy.url('app'), async (c) => {
        await c.query('CREATE TEMP TABLE t (x int)');
        assert.equal((await c.query('select ssl from pg_stat_ssl where pid = pg_backend_pid()')).rows[0].ssl, true);
      });
      assert.equal(await pidOf(proxy.url('app'), async (c) => {
        assert.equal((await c.query("select count(*)::int as n from pg_class where relname = 't'")).rows[0].n, 0);
      }), first);
      const started = logEvents(proxy.logs, 'session started');
      assert.deepEqual(started.map((e) => [e.backend_pool, e.backend_tls, e.backend_auth]), [['new', true, 'SCRAM-SHA-256-PLUS'], ['reused', true, 'SCRAM-SHA-256-PLUS']]);
    } finally {
      await cluster.stop();
    }
  });
});
