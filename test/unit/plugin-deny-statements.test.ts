// plugins/deny-statements in-process, with the plugin test kit and pgward's public entry points
// only (test/integration/plugins.test.ts runs it against PostgreSQL).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import denyStatements from '../../plugins/deny-statements/index.js';
import { be, fe, PgError, SqlState } from '../../src/index.js';
import { loadTestPlugins, startTestSession, summarize, type TestSessionOptions } from '../../src/testing.js';

const DENIED = 'statement not allowed by the deny-statements policy';

async function session(options: unknown = { pattern: '^\\s*drop\\b' }, opts: TestSessionOptions = {}) {
  const plugins = await loadTestPlugins(denyStatements);
  return startTestSession(plugins.middleware('deny-statements', options), opts);
}

const raiseSql = (message = DENIED) => `DO $deny$BEGIN RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = E'${message}'; END$deny$`;

describe('deny-statements (unit, with the plugin test kit)', () => {
  // The example in plugins/README.md, §6: keep the two the same.
  it('answers a denied query itself when idle, and has PostgreSQL raise it inside a transaction', async () => {
    const plugins = await loadTestPlugins(denyStatements); // the loader's own checks, then setup()
    const s = await startTestSession(plugins.middleware('deny-statements', { pattern: '^\\s*drop\\b' }));

    s.client.send(fe.query('drop table t'));
    assert.deepEqual(s.backend.take(), []); // nothing reached PostgreSQL
    assert.deepEqual(s.client.take().map((m) => m.type), ['ErrorResponse', 'ReadyForQuery']);

    s.client.send(fe.query('begin'));
    s.backend.send(be.commandComplete('BEGIN'), be.readyForQuery('T')); // PostgreSQL's part, scripted
    s.client.send(fe.query('drop table t'));
    const sent = s.backend.take().at(-1)!;
    assert.ok(sent.type === 'Query' && sent.body().sql.startsWith('DO $deny$'));
  });

  it('answers a denied query itself when the session is idle: 42501 and ReadyForQuery, nothing to the backend', async () => {
    const s = await session();
    s.client.send(fe.query('drop table t'));
    assert.deepEqual(s.backend.received, []);
    assert.deepEqual(summarize(s.client.received), ['ErrorResponse:42501', 'ReadyForQuery:I']);
    assert.deepEqual(summarize(s.injected.toClient), ['ErrorResponse:42501', 'ReadyForQuery:I'], 'sent by the plugin itself');
    const error = s.client.received[0]!;
    assert.ok(error.type === 'ErrorResponse');
    assert.deepEqual([error.body().severity, error.body().message], ['ERROR', DENIED]);
    assert.deepEqual(s.logs.map((l) => [l.event, l.fields.answered]), [['statement denied', 'by proxy']]);
    assert.equal(s.ended, undefined, 'the session goes on');
    s.client.send(fe.query('select 1'));
    assert.deepEqual(summarize(s.backend.received), ['Query:select 1']);
  });

  it('inside a transaction, lets PostgreSQL raise the error in its place, without the PL/pgSQL context', async () => {
    const s = await session();
    s.client.send(fe.query('begin'));
    s.backend.send(be.commandComplete('BEGIN'), be.readyForQuery('T'));
    s.client.send(fe.query('drop table t'));
    assert.deepEqual(summarize(s.backend.take()), ['Query:begin', `Query:${raiseSql()}`]);
    const raised = { ...new PgError('ERROR', SqlState.InsufficientPrivilege, DENIED).toFields(), where: 'PL/pgSQL function inline_code_block line 1 at RAISE' };
    s.backend.send(be.errorResponse(raised), be.readyForQuery('E'));
    const error = s.client.received.at(-2)!;
    assert.ok(error.type === 'ErrorResponse');
    assert.deepEqual([error.body().code, error.body().message, error.body().where], ['42501', DENIED, undefined]);
    assert.deepEqual(s.logs.map((l) => l.fields.answered), ['by backend']);
  });

  it('with another request still unanswered, rewrites instead of answering out of order', async () => {
    const s = await session();
    s.client.send(fe.query('select pg_sleep(1)'), fe.query('drop table t'));
    assert.deepEqual(summarize(s.backend.received), ['Query:select pg_sleep(1)', `Query:${raiseSql()}`]);
    assert.deepEqual(s.client.received, []);
  });

  it("reads SQL as PostgreSQL does: a$b$ identifiers and name'\\' literals do not hide a drop", async () => {
    for (const sql of ['select 1 as a$b$; drop table t; select 1 as c$b$', "select name'\\'; drop table t; --'", 'select 1; /* x */ drop table t']) {
      const s = await session();
      s.client.send(fe.query(sql));
      assert.deepEqual(summarize(s.client.received), ['ErrorResponse:42501', 'ReadyForQuery:I'], sql);
      assert.deepEqual(s.backend.received, [], sql);
    }
  });

  it('and nested comments, non-ASCII dollar tags and quoted text do not make one up', async () => {
    for (const sql of ['/* a /* b */ ; drop table t; */ select 1', 'select $é$; drop table t; $é$', "select 'drop table t'", '-- drop table t\nselect 1']) {
      const s = await session();
      s.client.send(fe.query(sql));
      assert.deepEqual(summarize(s.backend.received), [`Query:${sql}`], sql);
    }
  });

  it('follows the session\'s standard_conforming_strings', async () => {
    const sql = "select '\\'; drop table t; --'";
    const off = await session(undefined, { serverParams: { standard_conforming_strings: 'off' } });
    off.client.send(fe.query(sql));
    assert.deepEqual(summarize(off.backend.received), [`Query:${sql}`], 'one string literal when backslashes escape');
    const on = await session(undefined, { serverParams: { standard_conforming_strings: 'on' } });
    on.client.send(fe.query(sql));
    assert.deepEqual(summarize(on.client.received), ['ErrorResponse:42501', 'ReadyForQuery:I']);
  });

  it('tests each statement without its comments', async () => {
    const s = await session({ pattern: '^drop table\\b' });
    s.client.send(fe.query('/* tidy */ drop/* up */table t'));
    assert.deepEqual(summarize(s.client.received), ['ErrorResponse:42501', 'ReadyForQuery:I']);
  });

  it('extended protocol, first of a batch and idle: ErrorResponse now, the rest dropped until Sync, which gets ReadyForQuery', async () => {
    const s = await session();
    s.client.send(fe.parse({ name: '', sql: 'drop table t', paramTypes: [] }), fe.bind({ portal: '', statement: '', paramFormats: [], params: [], resultFormats: [] }), fe.execute(), fe.sync());
    assert.deepEqual(s.backend.received, []);
    assert.deepEqual(summarize(s.client.received), ['ErrorResponse:42501', 'ReadyForQuery:I']);
  });

  it('extended protocol inside a batch: the Parse becomes the raising DO block and its Binds lose their parameters', async () => {
    const s = await session();
    s.client.send(
      fe.parse({ name: '', sql: 'select 1', paramTypes: [] }),
      fe.parse({ name: 's1', sql: 'drop table t', paramTypes: [] }),
      fe.bind({ portal: '', statement: 's1', paramFormats: [0], params: [Buffer.from('x')], resultFormats: [] }),
      fe.execute(),
      fe.sync(),
    );
    assert.deepEqual(summarize(s.backend.received), ['Parse::select 1', `Parse:s1:${raiseSql()}`, 'Bind:s1:0', 'Execute', 'Sync']);
  });

  it('refuses bad options when the pipeline is built', async () => {
    const plugins = await loadTestPlugins(denyStatements);
    const cases: [unknown, RegExp][] = [
      [undefined, /options must be a mapping/],
      [{}, /option "pattern" \(a regular expression\) is required/],
      [{ pattern: 'x', other: 1 }, /unknown option\(s\) other/],
      [{ pattern: 'x', flags: 'g' }, /without g or y/],
      [{ pattern: '(' }, /invalid pattern/],
      [{ pattern: 'x', message: 'a $deny$ b' }, /without NUL or "\$deny\$"/],
    ];
    for (const [options, message] of cases) assert.throws(() => plugins.middleware('deny-statements', options), message, JSON.stringify(options));
  });

  it('uses the configured message, quoted so that PostgreSQL reads it back whatever it holds', async () => {
    const s = await session({ pattern: '^drop', message: "no 'drop' \\ here" });
    s.client.send(fe.query('select 1'), fe.query('drop table t'));
    assert.deepEqual(summarize(s.backend.received).at(-1), `Query:DO $deny$BEGIN RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = E'no ''drop'' \\\\ here'; END$deny$`);
  });
});
