import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Subject } from 'rxjs';
import { BUILTIN_MIDDLEWARE } from '../../src/middleware/index.js';
import { queryLog, type QueryEvent, type QueryLogOptions } from '../../src/middleware/query-log.js';
import { buildChain } from '../../src/pipeline/chain.js';
import type { SessionLogger } from '../../src/pipeline/middleware.js';
import { Session } from '../../src/pipeline/session.js';
import {
  backendMessage,
  be,
  fe,
  MessageWriter,
  type BackendMessage,
  type FrontendMessage,
} from '../../src/protocol/index.js';
import { silentLogger } from '../../src/telemetry/log.js';

/** Bodies the middleware may decode; anything else decoded is a failure of the lazy-decode rule. */
const MAY_DECODE = new Set(['Query', 'Parse', 'Bind', 'Execute', 'CommandComplete', 'ErrorResponse']);

/** Wraps a message so that decoding its body is recorded (and, for DataRow, impossible). */
function spy<M extends FrontendMessage | BackendMessage>(m: M, decoded: string[]): M {
  return {
    type: m.type,
    code: m.code,
    raw: m.raw,
    payload: m.payload,
    body() {
      decoded.push(m.type);
      if (m.type === 'DataRow') throw new Error('DataRow body decoded');
      return m.body();
    },
  } as M;
}

function harness(opts: QueryLogOptions = {}, log: SessionLogger = silentLogger) {
  let clock = 1000;
  const events: QueryEvent[] = [];
  const decoded: string[] = [];
  const mw = queryLog({ emit: (e) => events.push(e), now: () => clock, ...opts });
  const session = new Session({
    id: 'sess-1',
    client: { address: '127.0.0.1', port: 5000, tls: false },
    clientParams: new Map(),
    log,
  });
  session.user = 'alice';
  session.database = 'app';
  const fromClient = new Subject<FrontendMessage>();
  const fromBackend = new Subject<BackendMessage>();
  const chain = buildChain([mw], session, fromClient, fromBackend);
  const toBackend: FrontendMessage[] = [];
  const toClient: BackendMessage[] = [];
  chain.toBackend$.subscribe((m) => toBackend.push(m));
  chain.toClient$.subscribe((m) => toClient.push(m));
  return {
    events,
    decoded,
    session,
    toBackend,
    toClient,
    client: (...ms: FrontendMessage[]) => ms.forEach((m) => fromClient.next(spy(m, decoded))),
    server: (...ms: BackendMessage[]) => ms.forEach((m) => fromBackend.next(spy(m, decoded))),
    tick: (ms: number) => void (clock += ms),
  };
}

const rfq = () => be.readyForQuery('I');
const err = (code: string, message = 'boom') => be.errorResponse({ severity: 'ERROR', code, message });
const dataRow = () => be.dataRow([Buffer.from('v')]);
const rowDesc = () =>
  be.rowDescription([{ name: 'x', tableOid: 0, columnAttr: 0, typeOid: 23, typeSize: 4, typeModifier: -1, format: 0 }]);
const parse = (name: string, sql: string) => fe.parse({ name, sql, paramTypes: [] });
const bind = (portal: string, statement: string, n = 0) =>
  fe.bind({
    portal,
    statement,
    paramFormats: [],
    params: Array.from({ length: n }, (_, i) => Buffer.from(`secret-value-${i}`)),
    resultFormats: [],
  });
function raw(code: string, write: (w: MessageWriter) => void = () => {}): BackendMessage {
  const w = new MessageWriter(code.charCodeAt(0));
  write(w);
  const buf = w.finish();
  return backendMessage(buf[0]!, buf);
}
const copyInResponse = () => raw('G', (w) => w.int8(0).int16(1).int16(0));
const copyOutResponse = () => raw('H', (w) => w.int8(0).int16(1).int16(0));
const copyDataBe = (s: string) => raw('d', (w) => w.bytes(Buffer.from(s)));
const copyDoneBe = () => raw('c');

function assertLazy(decoded: string[]) {
  const bad = decoded.filter((t) => !MAY_DECODE.has(t));
  assert.deepEqual(bad, [], `decoded bodies it should not have: ${bad.join(', ')}`);
}

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
