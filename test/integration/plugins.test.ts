import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import postgres from 'postgres';
import { PgCluster } from '../helpers/pg-cluster.js';
import { runPsql } from '../helpers/psql.js';
import { logEvents, startTestProxy, type TestProxy } from '../helpers/proxy.js';
import { RawClient } from '../helpers/raw-client.js';
import { encodeStartupMessage, fe, type BackendMessage, type FrontendMessage } from '../../src/protocol/index.js';
import { until } from '../helpers/wait.js';

/** The compiled test lives at dist/test/integration/, so the repository root is three levels up. */
const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const DENIED = 'statement not allowed by the deny-statements policy';

/** A plugin whose middleware throws (a bug, not a PgError) on any simple query mentioning "boom". */
const THROWER = (rxjs: string) => `import { map } from ${JSON.stringify(rxjs)};
export default {
  name: 'thrower',
  version: '1.0.0',
  pgward: '>=0.1',
  setup(api) {
    api.registerMiddleware('thrower', () => ({
      name: 'thrower',
      session: () => ({
        frontend: map((m) => {
          if (m.type === 'Query' && m.body().sql.includes('boom')) throw new TypeError('thrower went boom');
          return m;
        }),
      }),
    }));
  },
};
`;

/** A compact trace of what a client received: `D:1` a row, `E:42501` an error, `Z:I` ReadyForQuery… */
function trace(messages: readonly BackendMessage[]): string[] {
  return messages.map((m) => {
    switch (m.type) {
      case 'DataRow':
        return `D:${m.body().values.map((v) => v?.toString()).join(',')}`;
      case 'ErrorResponse':
        return `E:${m.body().code}`;
      case 'ReadyForQuery':
        return `Z:${m.body().status}`;
      case 'CommandComplete':
        return `C:${m.body().tag}`;
      default:
        return m.type;
    }
  });
}


type PgErr = { code?: string; message?: string; severity?: string; where?: string };
const sqlstate = (code: string) => (e: PgErr) => {
  assert.equal(e.code, code, e.message);
  return true;
};

describe('plugins in the pipeline: deny-statements (the template) and a failing plugin', () => {
  let cluster: PgCluster;
  let dir: string;
  let proxy: TestProxy;

  before(async () => {
    cluster = await PgCluster.start({});
    await cluster.sql('CREATE TABLE keep_me (id int primary key)');
    dir = await mkdtemp(join(tmpdir(), 'pgward-plugins-'));
    await writeFile(join(dir, 'thrower.mjs'), THROWER(import.meta.resolve('rxjs')));
    const config = [
      'plugins:',
      `  - ${JSON.stringify(join(REPO, 'plugins/deny-statements'))}`,
      `  - ${JSON.stringify(join(dir, 'thrower.mjs'))}`,
      'pipeline:',
      '  - deny-statements: { pattern: "^\\\\s*drop\\\\b" }',
      '  - thrower',
      '',
    ].join('\n');
    await writeFile(join(dir, 'pgward.yaml'), config);
    proxy = await startTestProxy([
      '--insecure',
      '--config',
      join(dir, 'pgward.yaml'),
      '--auth',
      'passthrough',
      '--backend',
      `${cluster.url('postgres')}?sslmode=disable`,
    ]);
  });

  after(async () => {
    await proxy?.close();
    await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function connect(): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: proxy.url('postgres') });
    client.on('error', () => {}); // a session ended by the proxy must not crash the test process
    await client.connect();
    return client;
  }

  async function tableStillThere(): Promise<void> {
    const r = await cluster.sql("select to_regclass('keep_me') is not null as there");
    assert.equal(r.rows[0]!.there, true, 'the denied statement never ran');
  }

  it('loaded both plugins', () => {
    assert.deepEqual(proxy.proxy.plugins.plugins.map((p) => p.name), ['deny-statements', 'thrower']);
  });

  it('psql: a denied statement gets 42501 and the session goes on', async () => {
    const r = await runPsql([proxy.url('postgres'), '-v', 'VERBOSITY=verbose', '-c', 'drop table keep_me', '-c', 'select 40 + 2'], {}, undefined, {
      flags: ['-X', '-At'],
    });
    assert.match(r.stderr, new RegExp(`ERROR:  42501: ${DENIED}`));
    assert.doesNotMatch(r.stderr, /CONTEXT|PL\/pgSQL/);
    assert.equal(r.stdout.trim(), '42');
    await tableStillThere();
  });

  it('pg, simple protocol: denied (any case, after comments, inside a multi-statement query), then the session works', async () => {
    const client = await connect();
    try {
      for (const sql of ['drop table keep_me', 'DROP TABLE keep_me', '  /* tidy up */ drop table keep_me', 'select 1; drop table keep_me;']) {
        await assert.rejects(client.query(sql), (e: PgErr) => {
          assert.equal(e.code, '42501', `${sql}: ${e.message}`);
          assert.equal(e.message, DENIED);
          assert.equal(e.severity, 'ERROR');
          return true;
        });
        assert.deepEqual((await client.query('select 1 as one')).rows, [{ one: 1 }], `usable after ${sql}`);
      }
      await tableStillThere();
    } finally {
      await client.end();
    }
  });

  it('pg: allowed statements pass, including ones that only mention drop', async () => {
    const client = await connect();
    try {
      await client.query('create temp table scratch (v text)');
      await client.query("insert into scratch values ('drop table keep_me')");
      const r = await client.query('-- drop table keep_me\nselect v, 1 as dropped from scratch');
      assert.deepEqual(r.rows, [{ v: 'drop table keep_me', dropped: 1 }]);
      const ext = await client.query('select $1::text as v', ['drop table x']);
      assert.deepEqual(ext.rows, [{ v: 'drop table x' }]);
      await tableStillThere();
    } finally {
      await client.end();
    }
  });

  it("reads statements as PostgreSQL does: $ in identifiers, name'\\' and nested comments neither hide nor invent a statement", async () => {
    const client = await connect();
    try {
      // Each would have run the drop behind a splitter that took a$b$ for a dollar quote or name'\' for an E'' string.
      for (const sql of ['select 1 as a$b$; drop table keep_me; select 1 as c$b$', "select name'\\'; drop table keep_me; --'"]) {
        await assert.rejects(client.query(sql), (e: PgErr) => (assert.equal(e.code, '42501', `${sql}: ${e.message}`), true));
        await tableStillThere();
      }
      // And these only look like a drop to a splitter that ends a comment at the first */ or knows ASCII tags only.
      const nested = await client.query('/* a /* b */ ; drop table keep_me; */ select 1 as one');
      assert.deepEqual(nested.rows, [{ one: 1 }]);
      const tagged = await client.query('select $é$; drop table keep_me; $é$ as v');
      assert.deepEqual(tagged.rows, [{ v: '; drop table keep_me; ' }]);
      await tableStillThere();
    } finally {
      await client.end();
    }
  });

  it('pg: inside a transaction a denied statement fails the transaction (25P02 next) and rollback works', async () => {
    const client = await connect();
    try {
      await client.query('begin');
      await client.query('insert into keep_me values (1)');
      await assert.rejects(client.query('drop table keep_me'), (e: PgErr) => {
        assert.equal(e.code, '42501');
        assert.equal(e.message, DENIED);
        assert.equal(e.where, undefined, 'no PL/pgSQL context leaks to the client');
        return true;
      });
      await assert.rejects(client.query('select 1'), sqlstate('25P02'));
      await client.query('rollback');
      assert.deepEqual((await client.query('select count(*)::int as n from keep_me')).rows, [{ n: 0 }]);

      // COMMIT of the failed transaction rolls back, as PostgreSQL does.
      await client.query('begin');
      await client.query('insert into keep_me values (2)');
      await assert.rejects(client.query('drop table keep_me'), sqlstate('42501'));
      const commit = await client.query('commit');
      assert.equal(commit.command, 'ROLLBACK');
      assert.deepEqual((await client.query('select count(*)::int as n from keep_me')).rows, [{ n: 0 }]);
      await tableStillThere();
    } finally {
      await client.end();
    }
  });

  it('pg, extended protocol: a denied Parse gets 42501 and the next query works', async () => {
    const client = await connect();
    try {
      await assert.rejects(client.query({ text: 'drop table keep_me', values: [], queryMode: 'extended' } as pg.QueryConfig), sqlstate('42501'));
      assert.deepEqual((await client.query('select $1::int + 1 as n', [41])).rows, [{ n: 42 }]);
      await assert.rejects(client.query({ name: 'dropper', text: 'drop table keep_me' }), sqlstate('42501'));
      assert.deepEqual((await client.query('select 2 as two')).rows, [{ two: 2 }]);
      await tableStillThere();
    } finally {
      await client.end();
    }
  });

  it('pg, extended protocol inside a transaction: 42501, then 25P02, rollback; a denied named statement stays denied', async () => {
    const client = await connect();
    try {
      await client.query('begin');
      await assert.rejects(client.query({ name: 'drop-it', text: 'drop table keep_me' }), sqlstate('42501'));
      await assert.rejects(client.query('select $1::int as n', [1]), sqlstate('25P02'));
      await client.query('rollback');
      // pg re-executes the named statement without a new Parse: still refused.
      await assert.rejects(client.query({ name: 'drop-it', text: 'drop table keep_me' }), sqlstate('42501'));
      assert.deepEqual((await client.query('select $1::int as n', [3])).rows, [{ n: 3 }]);
      await tableStillThere();
    } finally {
      await client.end();
    }
  });

  it('postgres.js: prepared and pipelined queries keep their order around a denied one', async () => {
    const sql = postgres(proxy.url('postgres'), { max: 1, onnotice: () => {} });
    try {
      await assert.rejects(sql`drop table keep_me`.execute(), sqlstate('42501'));
      const [a, denied, b] = await Promise.allSettled([sql`select ${1}::int as v`, sql`drop table keep_me`, sql`select ${2}::int as v`]);
      assert.equal(a.status === 'fulfilled' && a.value[0]!.v, 1);
      assert.equal(denied.status === 'rejected' && (denied.reason as PgErr).code, '42501');
      assert.equal(b.status === 'fulfilled' && b.value[0]!.v, 2);
      const [row] = await sql`select 'still usable' as s`;
      assert.equal(row!.s, 'still usable');
      await tableStillThere();
    } finally {
      await sql.end();
    }
  });

  /** A hand-driven session: writes whole pipelines in one go and returns what came back for them. */
  async function rawSession(): Promise<RawClient & { send(messages: FrontendMessage[], readyForQueries: number): Promise<string[]> }> {
    const c = await RawClient.connect(proxy.port);
    c.write(encodeStartupMessage([['user', 'postgres'], ['database', 'postgres']]));
    await until(() => c.messages.some((m) => m.type === 'ReadyForQuery' || m.type === 'Authentication'), 5_000, 'the handshake');
    if (!c.messages.some((m) => m.type === 'ReadyForQuery')) {
      c.write(fe.password('unused').raw);
      await until(() => c.messages.some((m) => m.type === 'ReadyForQuery'), 5_000, 'ReadyForQuery');
    }
    return Object.assign(c, {
      async send(messages: FrontendMessage[], readyForQueries: number): Promise<string[]> {
        const from = c.messages.length;
        c.write(Buffer.concat(messages.map((m) => m.raw)));
        const count = () => c.messages.slice(from).filter((m) => m.type === 'ReadyForQuery').length;
        await until(() => count() >= readyForQueries, 5_000, `${readyForQueries} ReadyForQuery`);
        await new Promise((r) => setTimeout(r, 50)); // nothing more may follow
        return trace(c.messages.slice(from));
      },
    });
  }

  const extended = (sql: string): FrontendMessage[] => [
    fe.parse({ name: '', sql, paramTypes: [] }),
    fe.bind({ portal: '', statement: '', paramFormats: [], params: [], resultFormats: [] }),
    fe.describe('P'),
    fe.execute(),
  ];

  it('pipelined simple queries: the denied one is answered in its place (by PostgreSQL, since others are in flight)', async () => {
    await using c = await rawSession();
    const before = logEvents(proxy.logs, 'statement denied').filter((e) => e.answered === 'by backend').length;
    const got = await c.send([fe.query('select 1'), fe.query('drop table keep_me'), fe.query('select 2')], 3);
    assert.deepEqual(got, ['RowDescription', 'D:1', 'C:SELECT 1', 'Z:I', 'E:42501', 'Z:I', 'RowDescription', 'D:2', 'C:SELECT 1', 'Z:I']);
    const after = logEvents(proxy.logs, 'statement denied').filter((e) => e.answered === 'by backend').length;
    assert.equal(after, before + 1, 'the rewrite path was taken');
    await tableStillThere();
  });

  it('pipelined extended batches (a Sync each): replies stay in order', async () => {
    await using c = await rawSession();
    const got = await c.send([...extended('select 1'), fe.sync(), ...extended('drop table keep_me'), fe.sync(), ...extended('select 2'), fe.sync()], 3);
    assert.deepEqual(got.slice(0, 6), ['ParseComplete', 'BindComplete', 'RowDescription', 'D:1', 'C:SELECT 1', 'Z:I']);
    assert.deepEqual(got.slice(-6), ['ParseComplete', 'BindComplete', 'RowDescription', 'D:2', 'C:SELECT 1', 'Z:I']);
    const middle = got.slice(6, -6);
    assert.deepEqual(middle.slice(-2), ['E:42501', 'Z:I'], middle.join(' '));
    assert.ok(!middle.includes('C:DO'), 'the stand-in statement never completes');
    await tableStillThere();
  });

  it('one extended batch with a denied statement in the middle: the error ends it and undoes the earlier part, as PostgreSQL would', async () => {
    await using c = await rawSession();
    const got = await c.send([...extended('insert into keep_me values (7)'), ...extended('drop table keep_me'), ...extended('select 2'), fe.sync()], 1);
    assert.deepEqual(got.slice(0, 4), ['ParseComplete', 'BindComplete', 'NoData', 'C:INSERT 0 1']);
    assert.deepEqual(got.slice(-2), ['E:42501', 'Z:I']);
    assert.ok(!got.includes('D:2'), 'nothing after the denied statement ran');
    const n = await cluster.sql('select count(*)::int as n from keep_me');
    assert.equal(n.rows[0]!.n, 0, 'the implicit transaction was rolled back');
    await tableStillThere();
  });

  it('a plugin that throws ends only its own session, with an ErrorResponse, and is logged by name', async () => {
    const victim = await connect();
    const bystander = await connect();
    try {
      const ended = new Promise<void>((resolve) => victim.once('end', () => resolve()));
      await assert.rejects(victim.query("select 'boom'"), (e: PgErr) => {
        assert.equal(e.code, 'XX000', e.message);
        assert.equal(e.severity, 'FATAL');
        assert.match(e.message ?? '', /plugin "thrower" failed/);
        return true;
      });
      await ended;
      assert.deepEqual((await bystander.query('select 1 as one')).rows, [{ one: 1 }], 'the other session keeps working');
      const events = logEvents(proxy.logs, 'plugin error');
      assert.ok(
        events.some((e) => e.plugin === 'thrower' && e.where === 'frontend' && /thrower went boom/.test(String(e.error))),
        JSON.stringify(events),
      );
      assert.ok(!events.some((e) => e.plugin === 'deny-statements'), 'the plugin before it is not blamed');
      const fresh = await connect();
      assert.deepEqual((await fresh.query('select 2 as two')).rows, [{ two: 2 }], 'new sessions work');
      await fresh.end();
    } finally {
      await victim.end().catch(() => {});
      await bystander.end();
    }
  });
});
