import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BUILTIN_MIDDLEWARE } from '../../src/middleware/index.js';
import type { SessionLogger } from '../../src/pipeline/middleware.js';
import { be, fe, type FrontendMessage } from '../../src/protocol/index.js';
import { silentLogger } from '../../src/telemetry/log.js';
import { assertLazy, bind, copyDataBe, copyDoneBe, copyInResponse, copyOutResponse, dataRow, err, harness, parse, rfq, rowDesc } from '../helpers/query-log-harness.js';

describe('query-log: simple protocol', () => {
  it('reports one event for a single statement, with rows and command from the tag', () => {
    const h = harness();
    h.client(fe.query("select * from t1 where name = 'bob' and age > 30"));
    h.tick(5);
    h.server(rowDesc(), dataRow(), dataRow(), be.commandComplete('SELECT 2'), rfq());
    assert.deepEqual(h.events, [
      {
        event: 'query',
        session: 'sess-1',
        user: 'alice',
        database: 'app',
        statement: 'select * from t1 where name = ? and age > ?',
        params: 0,
        duration_ms: 5,
        rows: 2,
        command: 'SELECT',
      },
    ]);
    assertLazy(h.decoded);
  });

  it('passes every message through unchanged, in order', () => {
    const h = harness();
    const q = fe.query('select 1');
    h.client(q, fe.terminate());
    const msgs = [rowDesc(), dataRow(), be.commandComplete('SELECT 1'), rfq()];
    h.server(...msgs);
    assert.deepEqual(
      h.toBackend.map((m) => m.raw),
      [q.raw, fe.terminate().raw],
    );
    assert.deepEqual(
      h.toClient.map((m) => m.raw),
      msgs.map((m) => m.raw),
    );
  });

  it('reports each statement of a multi-statement query, timed from the previous completion', () => {
    const h = harness();
    h.client(fe.query("insert into t values (1, 'a'); select * from t; update t set a = 2 where b = 'x';"));
    h.tick(3);
    h.server(be.commandComplete('INSERT 0 1'));
    h.tick(4);
    h.server(rowDesc(), dataRow(), be.commandComplete('SELECT 1'));
    h.tick(10);
    h.server(be.commandComplete('UPDATE 7'), rfq());
    assert.deepEqual(
      h.events.map((e) => [e.statement, e.duration_ms, e.rows, e.command]),
      [
        ['insert into t values (?, ?)', 3, 1, 'INSERT'],
        ['select * from t', 4, 1, 'SELECT'],
        ['update t set a = ? where b = ?', 10, 7, 'UPDATE'],
      ],
    );
  });

  it('stops at an error in a multi-statement query and reports its SQLSTATE', () => {
    const h = harness();
    h.client(fe.query('select 1; select 1/0; select 3'));
    h.server(rowDesc(), dataRow(), be.commandComplete('SELECT 1'), rowDesc(), err('22012'), be.readyForQuery('I'));
    assert.deepEqual(
      h.events.map((e) => [e.statement, e.sqlstate, e.command, e.rows]),
      [
        ['select ?', undefined, 'SELECT', 1],
        ['select ?/?', '22012', 'SELECT', undefined],
      ],
    );
    // The session goes on in step.
    h.client(fe.query('select 2'));
    h.server(be.commandComplete('SELECT 1'), rfq());
    assert.equal(h.events[2]!.statement, 'select ?');
  });

  it('keeps pipelined queries apart, a query answered making room for the next while another runs', () => {
    const h = harness();
    h.client(fe.query('select 1; select 2'), fe.query("select 'a'"));
    h.tick(1);
    h.server(be.commandComplete('SELECT 1'), be.commandComplete('SELECT 1'), rfq());
    h.client(fe.query('insert into t values (3); select 4'));
    h.tick(2);
    h.server(be.commandComplete('SELECT 1'), rfq());
    h.tick(3);
    h.server(be.commandComplete('INSERT 0 1'), be.commandComplete('SELECT 1'), rfq());
    // The same shape again and again: learned, checked, then trusted (reported by the shape).
    for (const n of [5, 67, 890, 1234]) {
      h.client(fe.query(`select abalance from a where aid = ${n};`));
      h.tick(1);
      h.server(rowDesc(), dataRow(), be.commandComplete('SELECT 1'), rfq());
    }
    assert.deepEqual(
      h.events.map((e) => [e.statement, e.duration_ms, e.command]),
      [
        ['select ?', 1, 'SELECT'],
        ['select ?', 0, 'SELECT'],
        ['select ?', 3, 'SELECT'],
        ['insert into t values (?)', 5, 'INSERT'], // sent at 1, while the one before ran
        ['select ?', 0, 'SELECT'],
        ...[1, 2, 3, 4].map(() => ['select abalance from a where aid = ?', 1, 'SELECT']),
      ],
    );
  });

  it('reports an empty query', () => {
    const h = harness();
    h.client(fe.query('  -- nothing\n'));
    h.server(be.emptyQueryResponse(), rfq());
    assert.equal(h.events.length, 1);
    assert.equal(h.events[0]!.statement, '');
    assert.equal(h.events[0]!.command, undefined);
  });

  it('falls back to the whole text when the statements cannot be told apart', () => {
    const h = harness({ redact: false });
    h.client(fe.query('select 1'));
    h.server(be.commandComplete('SELECT 1'), be.commandComplete('SELECT 1'), rfq());
    assert.deepEqual(
      h.events.map((e) => e.statement),
      ['select 1', 'select 1'],
    );
  });

  it('logs COPY FROM STDIN with the row count, without decoding the data', () => {
    const h = harness();
    h.client(fe.query('copy t (a, b) from stdin'));
    h.tick(1);
    h.server(copyInResponse());
    h.client(fe.copyData(Buffer.from('1\tsecret\n')), fe.copyData(Buffer.from('2\tsecret\n')), fe.copyDone());
    h.tick(9);
    h.server(be.commandComplete('COPY 2'), rfq());
    assert.deepEqual(
      h.events.map((e) => [e.statement, e.rows, e.command, e.duration_ms]),
      [['copy t (a, b) from stdin', 2, 'COPY', 10]],
    );
    assertLazy(h.decoded);
  });

  it('logs COPY TO STDOUT and a failed COPY FROM STDIN', () => {
    const h = harness();
    h.client(fe.query('copy t to stdout'));
    h.server(copyOutResponse(), copyDataBe('1\n'), copyDataBe('2\n'), copyDataBe('3\n'), copyDoneBe());
    h.server(be.commandComplete('COPY 3'), rfq());
    h.client(fe.query('copy t from stdin'));
    h.server(copyInResponse());
    h.client(fe.copyFail('client gave up'));
    h.server(err('57014'), rfq());
    assert.deepEqual(
      h.events.map((e) => [e.rows, e.sqlstate, e.command]),
      [
        [3, undefined, 'COPY'],
        [undefined, '57014', 'COPY'],
      ],
    );
    assertLazy(h.decoded);
  });
});

describe('query-log: options', () => {
  it('reports only statements at least slowMs long', () => {
    const h = harness({ slowMs: 100 });
    for (const ms of [50, 150, 100, 99.5]) {
      h.client(fe.query(`select ${ms}`));
      h.tick(ms);
      h.server(be.commandComplete('SELECT 1'), rfq());
    }
    assert.deepEqual(
      h.events.map((e) => e.duration_ms),
      [150, 100],
    );
  });

  it('keeps literals with redact: false, except proxy_login literals', () => {
    const h = harness({ redact: false });
    h.client(fe.query("select * from t where a = 'visible' and b = 42"));
    h.server(be.commandComplete('SELECT 0'), rfq());
    h.client(fe.query("SELECT proxy_login('eyJhbGciOiJFZERTQSJ9.e30.c2ln')"));
    h.server(be.commandComplete('SELECT 1'), rfq());
    h.client(parse('', "select public.PROXY_LOGIN(E'eyJ\\'x')"), bind('', ''), fe.execute(), fe.sync());
    h.server(be.parseComplete(), be.bindComplete(), be.commandComplete('SELECT 1'), rfq());
    assert.deepEqual(
      h.events.map((e) => e.statement),
      ["select * from t where a = 'visible' and b = 42", 'SELECT proxy_login(?)', 'select public.PROXY_LOGIN(?)'],
    );
  });

  it('honours standard_conforming_strings = off', () => {
    const h = harness();
    h.session.serverParams.set('standard_conforming_strings', 'off');
    h.client(fe.query("select 'it\\'s a secret' as x"));
    h.server(be.commandComplete('SELECT 1'), rfq());
    assert.equal(h.events[0]!.statement, 'select ? as x');
  });

  it('cuts long statements', () => {
    const h = harness({ redact: false, maxStatementLength: 20 });
    h.client(fe.query(`select '${'x'.repeat(100)}'`));
    h.server(be.commandComplete('SELECT 1'), rfq());
    assert.equal(h.events[0]!.statement, `select '${'x'.repeat(12)}…`);
    const r = harness({ maxStatementLength: 20 });
    r.client(fe.query(`select 1, '${'x'.repeat(100)}'`));
    r.server(be.commandComplete('SELECT 1'), rfq());
    assert.equal(r.events[0]!.statement, 'select ?, ?…', 'a literal cut short is still hidden');
  });

  it('logs through the session logger when no emit is given', () => {
    const lines: [string, Record<string, unknown> | undefined][] = [];
    const log: SessionLogger = { ...silentLogger, info: (event, fields) => lines.push([event, fields]) };
    const h = harness({ emit: undefined }, log);
    h.client(fe.query('select 1'));
    h.server(be.commandComplete('SELECT 1'), rfq());
    assert.equal(h.events.length, 0);
    assert.equal(lines.length, 1);
    assert.equal(lines[0]![0], 'query');
    assert.equal(lines[0]![1]!.event, 'query');
    assert.equal(lines[0]![1]!.statement, 'select ?');
  });

  it('never ends the session: a throwing emit or a malformed message is only logged', () => {
    const warnings: string[] = [];
    const log: SessionLogger = { ...silentLogger, warn: (event) => warnings.push(event) };
    const h = harness(
      {
        emit: () => {
          throw new Error('sink down');
        },
      },
      log,
    );
    h.client(fe.query('select 1'));
    h.server(be.commandComplete('SELECT 1'), rfq());
    const bad = Buffer.from([0x51, 0, 0, 0, 6, 0x61]); // Query without its terminator
    h.client({ type: 'Query', code: 0x51, raw: bad, payload: bad.subarray(5), body: () => { throw new Error('malformed'); } } as FrontendMessage);
    assert.equal(h.toBackend.length, 2);
    assert.equal(h.toClient.length, 2);
    assert.deepEqual(warnings, ['query-log: emit failed', 'query-log: lost track of the session']);
  });

  it('BUILTIN_MIDDLEWARE["query-log"] validates its options', () => {
    const factory = BUILTIN_MIDDLEWARE['query-log']!;
    assert.equal(factory(undefined).name, 'query-log');
    assert.equal(factory(null).name, 'query-log');
    assert.equal(factory({ redact: false, slowMs: 250 }).name, 'query-log');
    assert.throws(
      () => factory({ redact: 'yes', slowMs: -1, colour: 'red' }),
      (e: Error) =>
        /^query-log: /.test(e.message) &&
        /option "redact" must be a boolean/.test(e.message) &&
        /option "slowMs" must be a non-negative number/.test(e.message) &&
        /unknown option "colour"/.test(e.message),
    );
    assert.throws(() => factory('fast'), /query-log: options must be a mapping/);
    assert.throws(() => factory([1]), /options must be a mapping/);
    assert.equal(BUILTIN_MIDDLEWARE['constructor'], undefined);
  });
});
