import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { be, fe } from '../../src/protocol/index.js';
import { assertLazy, bind, dataRow, err, harness, parse, raw, rfq, rowDesc } from '../helpers/query-log-harness.js';

describe('query-log: extended protocol', () => {
  it('logs an unnamed statement with its parameter count, never the values', () => {
    const h = harness();
    h.client(parse('', 'select * from t where id = $1 and kind = 2'), bind('', '', 1), fe.describe('P'), fe.execute(), fe.sync());
    h.tick(7);
    h.server(be.parseComplete(), be.bindComplete(), rowDesc(), dataRow(), be.commandComplete('SELECT 1'), rfq());
    assert.equal(h.events.length, 1);
    const e = h.events[0]!;
    assert.equal(e.statement, 'select * from t where id = $1 and kind = ?');
    assert.equal(e.params, 1);
    assert.equal(e.rows, 1);
    assert.equal(e.duration_ms, 7);
    assert.doesNotMatch(JSON.stringify(h.events), /secret-value/);
    assertLazy(h.decoded);
  });

  it('remembers named statements across syncs and portals by name', () => {
    const h = harness();
    h.client(parse('s1', 'update t set a = $1 where id = $2'), fe.describe('S', 's1'), fe.sync());
    h.server(be.parseComplete(), be.parameterDescription([23, 23]), be.noData(), rfq());
    assert.equal(h.events.length, 0, 'nothing executed yet');
    for (let i = 0; i < 2; i++) {
      h.client(bind('p1', 's1', 2), fe.execute('p1'), fe.sync());
      h.tick(2);
      h.server(be.bindComplete(), be.commandComplete(`UPDATE ${i + 1}`), rfq());
    }
    assert.deepEqual(
      h.events.map((e) => [e.statement, e.params, e.rows, e.command]),
      [
        ['update t set a = $1 where id = $2', 2, 1, 'UPDATE'],
        ['update t set a = $1 where id = $2', 2, 2, 'UPDATE'],
      ],
    );
  });

  it('times each execute of a pipelined batch (Parse, Bind/Execute × N, Sync)', () => {
    const h = harness();
    h.client(parse('ins', 'insert into t values ($1)'));
    for (let i = 0; i < 3; i++) h.client(bind('', 'ins', 1), fe.execute());
    h.client(fe.sync());
    h.server(be.parseComplete());
    for (let i = 0; i < 3; i++) {
      h.tick(10);
      h.server(be.bindComplete(), be.commandComplete('INSERT 0 1'));
    }
    h.server(rfq());
    assert.deepEqual(
      h.events.map((e) => [e.statement, e.duration_ms, e.rows]),
      [
        ['insert into t values ($1)', 10, 1],
        ['insert into t values ($1)', 20, 1],
        ['insert into t values ($1)', 30, 1],
      ],
    );
  });

  it('attributes an error mid-pipeline to its execute and skips the rest until Sync', () => {
    const h = harness();
    h.client(parse('', 'insert into t values (1)'), bind('', ''), fe.execute());
    h.client(parse('', 'insert into t values (2)'), bind('', ''), fe.execute());
    h.client(parse('', 'insert into t values (3)'), bind('', ''), fe.execute());
    h.client(fe.sync());
    h.client(parse('', 'select 4'), bind('', ''), fe.execute(), fe.sync());
    h.server(be.parseComplete(), be.bindComplete(), be.commandComplete('INSERT 0 1'));
    h.server(be.parseComplete(), be.bindComplete(), err('23505'));
    h.server(rfq()); // the third statement never ran
    h.server(be.parseComplete(), be.bindComplete(), be.commandComplete('SELECT 1'), rfq());
    assert.deepEqual(
      h.events.map((e) => [e.statement, e.sqlstate, e.rows]),
      [
        ['insert into t values (?)', undefined, 1],
        ['insert into t values (?)', '23505', undefined],
        ['select ?', undefined, 1],
      ],
    );
  });

  it('reports a failed Parse or Bind once, and nothing for the skipped Execute', () => {
    const h = harness();
    h.client(parse('', 'selec 1'), bind('', ''), fe.execute(), fe.sync());
    h.tick(1);
    h.server(err('42601'), rfq());
    h.client(parse('', 'select $1::int'), bind('', '', 1), fe.execute(), fe.sync());
    h.server(be.parseComplete(), err('22P02'), rfq());
    assert.deepEqual(
      h.events.map((e) => [e.statement, e.sqlstate, e.params, e.command]),
      [
        ['selec ?', '42601', 0, 'SELEC'],
        ['select $1::int', '22P02', 1, 'SELECT'],
      ],
    );
  });

  it('ignores what the client sends after an error until its Sync (Flush-driven clients)', () => {
    const h = harness();
    h.client(parse('', 'select 1/0'), bind('', ''), fe.execute(), fe.flush());
    h.server(be.parseComplete(), be.bindComplete(), err('22012'));
    // The backend discards these: the client has not sent Sync yet.
    h.client(fe.query('select 2'), parse('', 'select 3'), bind('', ''), fe.execute());
    h.client(fe.sync());
    h.server(rfq());
    h.client(fe.query('select 4'));
    h.server(be.commandComplete('SELECT 1'), rfq());
    assert.deepEqual(
      h.events.map((e) => [e.statement, e.sqlstate]),
      [
        ['select ?/?', '22012'],
        ['select ?', undefined],
      ],
    );
  });

  it('reports a suspended portal with the rows sent so far', () => {
    const h = harness();
    h.client(parse('', 'select * from big'), bind('c', ''), fe.execute('c', 2), fe.flush());
    h.server(be.parseComplete(), be.bindComplete(), dataRow(), dataRow(), be.portalSuspended());
    h.client(fe.execute('c', 2), fe.sync());
    h.server(dataRow(), be.commandComplete('SELECT 1'), rfq());
    assert.deepEqual(
      h.events.map((e) => [e.rows, e.command]),
      [
        [2, 'SELECT'],
        [1, 'SELECT'],
      ],
    );
    assertLazy(h.decoded);
  });

  it('keeps in step across Close, Describe, FunctionCall and errors at Sync', () => {
    const h = harness();
    h.client(parse('a', 'select 1'), fe.describe('S', 'a'), fe.close('S', 'a'), fe.sync());
    h.server(be.parseComplete(), be.parameterDescription([]), rowDesc(), be.closeComplete(), rfq());
    h.client(fe.functionCall({ oid: 1, argFormats: [], args: [], resultFormat: 0 }));
    h.server(raw('V', (w) => w.int32(-1)), rfq());
    h.client(parse('', 'insert into d values (1)'), bind('', ''), fe.execute(), fe.sync());
    h.server(be.parseComplete(), be.bindComplete(), be.commandComplete('INSERT 0 1'), err('23503'), rfq());
    h.client(fe.query('select 5'));
    h.server(be.commandComplete('SELECT 1'), rfq());
    assert.deepEqual(
      h.events.map((e) => [e.statement, e.sqlstate]),
      [
        ['insert into d values (?)', undefined],
        ['select ?', undefined],
      ],
    );
  });

  it('logs an Execute of an unknown portal with an empty statement', () => {
    const h = harness();
    h.client(fe.execute('nope'), fe.sync());
    h.server(err('34000'), rfq());
    assert.deepEqual(
      h.events.map((e) => [e.statement, e.sqlstate, e.command]),
      [['', '34000', undefined]],
    );
  });
});
