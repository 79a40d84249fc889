import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { filter, map, Subject, tap } from 'rxjs';
import { buildChain } from '../../src/pipeline/chain.js';
import { Session, SessionStateTracker } from '../../src/pipeline/session.js';
import type { Middleware } from '../../src/pipeline/middleware.js';
import { be, fe, type BackendMessage, type FrontendMessage } from '../../src/protocol/index.js';
import { silentLogger } from '../../src/telemetry/log.js';

function session(): Session {
  return new Session({ client: { address: '127.0.0.1', port: 1, tls: false }, clientParams: new Map(), log: silentLogger });
}

function sqlOf(m: FrontendMessage): string {
  return m.type === 'Query' ? m.body().sql : m.type;
}

function harness(middleware: Middleware[]) {
  const fromClient = new Subject<FrontendMessage>();
  const fromBackend = new Subject<BackendMessage>();
  const chain = buildChain(middleware, session(), fromClient, fromBackend);
  const toBackend: string[] = [];
  const toClient: string[] = [];
  chain.toBackend$.subscribe({ next: (m) => toBackend.push(sqlOf(m)), error: () => {} });
  chain.toClient$.subscribe((m) => toClient.push(m.type === 'CommandComplete' ? m.body().tag : m.type));
  return { fromClient, fromBackend, toBackend, toClient, chain };
}

describe('middleware chain', () => {
  it('passes frontend messages first to last and backend messages last to first', () => {
    const seen: string[] = [];
    const mw = (name: string): Middleware => ({
      name,
      session: () => ({
        frontend: tap(() => seen.push(`${name}:fe`)),
        backend: tap(() => seen.push(`${name}:be`)),
      }),
    });
    const h = harness([mw('a'), mw('b'), mw('c')]);
    h.fromClient.next(fe.query('select 1'));
    h.fromBackend.next(be.commandComplete('SELECT 1'));
    assert.deepEqual(seen, ['a:fe', 'b:fe', 'c:fe', 'c:be', 'b:be', 'a:be']);
    assert.deepEqual(h.toBackend, ['select 1']);
    assert.deepEqual(h.toClient, ['SELECT 1']);
  });

  it('lets a middleware change and drop messages', () => {
    const h = harness([
      {
        name: 'rewrite',
        session: () => ({
          frontend: (s) =>
            s.pipe(
              filter((m) => !(m.type === 'Query' && m.body().sql.startsWith('drop'))),
              map((m) => (m.type === 'Query' ? fe.query(m.body().sql.toUpperCase()) : m)),
            ),
        }),
      },
    ]);
    h.fromClient.next(fe.query('select 1'));
    h.fromClient.next(fe.query('drop table x'));
    h.fromClient.next(fe.sync());
    assert.deepEqual(h.toBackend, ['SELECT 1', 'Sync']);
  });

  it('injects replies at the middleware position: earlier middleware see them, later do not', () => {
    const seenByA: string[] = [];
    const seenByC: string[] = [];
    const h = harness([
      { name: 'a', session: () => ({ backend: tap((m) => seenByA.push(m.type)) }) },
      {
        name: 'b-answers-alone',
        session: (ctx) => ({
          frontend: (s) =>
            s.pipe(
              filter((m) => {
                if (m.type === 'Query' && m.body().sql === 'ping') {
                  ctx.sendToClient(be.commandComplete('PONG'), be.readyForQuery('I'));
                  return false;
                }
                return true;
              }),
            ),
        }),
      },
      { name: 'c', session: () => ({ backend: tap((m) => seenByC.push(m.type)) }) },
    ]);
    h.fromClient.next(fe.query('ping'));
    assert.deepEqual(h.toClient, ['PONG', 'ReadyForQuery']);
    assert.deepEqual(h.toBackend, [], 'the backend never saw the ping');
    assert.deepEqual(seenByA, ['CommandComplete', 'ReadyForQuery']);
    assert.deepEqual(seenByC, []);
  });

  it('injects toward the backend past later middleware only', () => {
    const seenByA: string[] = [];
    const seenByC: string[] = [];
    const h = harness([
      { name: 'a', session: () => ({ frontend: tap((m) => seenByA.push(sqlOf(m))) }) },
      {
        name: 'b',
        session: (ctx) => ({
          frontend: tap((m) => {
            if (sqlOf(m) === 'select 1') ctx.sendToBackend(fe.query('set x = 1'));
          }),
        }),
      },
      { name: 'c', session: () => ({ frontend: tap((m) => seenByC.push(sqlOf(m))) }) },
    ]);
    h.fromClient.next(fe.query('select 1'));
    assert.deepEqual(seenByA, ['select 1']);
    assert.deepEqual(seenByC, ['set x = 1', 'select 1']);
    assert.deepEqual(h.toBackend, ['set x = 1', 'select 1']);
  });

  it('completes when the client stream completes, even with injection points', () => {
    const h = harness([{ name: 'noop', session: () => ({}) }, { name: 'noop2', session: () => ({}) }]);
    let completed = false;
    h.chain.toBackend$.subscribe({ complete: () => (completed = true) });
    h.fromClient.complete();
    assert.equal(completed, true);
  });

  it('propagates a middleware error to the subscriber (the relay turns it into an ErrorResponse)', () => {
    const h = harness([
      {
        name: 'thrower',
        session: () => ({
          frontend: map(() => {
            throw new Error('boom');
          }),
        }),
      },
    ]);
    let error: unknown;
    h.chain.toBackend$.subscribe({ error: (e) => (error = e) });
    h.fromClient.next(fe.query('select 1'));
    assert.match(String(error), /boom/);
  });
});

describe('session notices', () => {
  const notice = (message: string) => be.noticeResponse({ severity: 'WARNING', code: '01000', message });
  const text = (m: BackendMessage) => (m.type === 'NoticeResponse' ? m.body().message ?? '' : m.type);

  it('holds a notice sent before the relay installs its writer, then delivers it first', () => {
    const s = session();
    s.notifyClient(notice('early'));
    const got: string[] = [];
    s.onClientWriter((m) => got.push(text(m)));
    assert.deepEqual(got, ['early']);
    s.notifyClient(notice('later'));
    assert.deepEqual(got, ['early', 'later']);
  });
});

describe('session state', () => {
  const Z = 'Z'.charCodeAt(0);
  const code = (c: string) => c.charCodeAt(0);

  it('counts Query/Sync/FunctionCall until their ReadyForQuery, pipelined batches included', () => {
    const s = new SessionStateTracker();
    assert.equal(s.idle, true);
    for (const c of ['P', 'B', 'E', 'S', 'P', 'B', 'E', 'S']) s.fromClient(code(c));
    assert.equal(s.unanswered, 2);
    s.toClient(be.readyForQuery('I'));
    assert.equal(s.idle, false, 'one Sync still unanswered');
    s.toClient(be.readyForQuery('I'));
    assert.equal(s.idle, true);
  });

  it('tracks the transaction status and calls whenIdle listeners when idle again', () => {
    const s = new SessionStateTracker();
    s.fromClient(code('Q'));
    s.toClient(be.readyForQuery('T'));
    assert.equal(s.transactionStatus, 'T');
    let fired = 0;
    s.whenIdle(() => fired++);
    assert.equal(fired, 0);
    s.fromClient(code('Q'));
    s.toClient(be.readyForQuery('E'));
    assert.equal(fired, 0, 'a failed transaction is not idle');
    s.fromClient(code('Q'));
    s.toClient(be.readyForQuery('I'));
    assert.equal(fired, 1);
  });
});
