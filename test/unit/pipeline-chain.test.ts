import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { filter, map, Subject, tap } from 'rxjs';
import { buildChain, composeChain } from '../../src/pipeline/chain.js';
import { Session, SessionStateTracker } from '../../src/pipeline/session.js';
import { SessionBook } from '../../src/pipeline/session-book.js';
import { MessageWants, sharedWants } from '../../src/pipeline/wants.js';
import type { Middleware, MiddlewareContext } from '../../src/pipeline/middleware.js';
import { be, fe, type BackendMessage, type FrontendMessage } from '../../src/protocol/index.js';
import { silentLogger } from '../../src/telemetry/log.js';

function session(): Session {
  return new Session({ client: { address: '127.0.0.1', port: 1, tls: false }, clientParams: new Map(), log: silentLogger });
}

function sqlOf(m: FrontendMessage): string {
  return m.type === 'Query' ? m.body().sql : m.type;
}

function harness(middleware: Middleware[]) {
  const toBackend: string[] = [];
  const toClient: string[] = [];
  const errors: unknown[] = [];
  const chain = composeChain(middleware, session(), {
    toBackend: (m) => toBackend.push(sqlOf(m)),
    toClient: (m) => toClient.push(m.type === 'CommandComplete' ? m.body().tag : m.type),
    error: (err) => errors.push(err),
  });
  const fromClient = { next: (m: FrontendMessage) => chain.fromClient(m) };
  const fromBackend = { next: (m: BackendMessage) => chain.fromBackend(m) };
  return { fromClient, fromBackend, toBackend, toClient, errors, chain };
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

  it('is no stream where no middleware has an operator: messages and injections go straight out, until closed', () => {
    let inject: ((m: FrontendMessage) => void) | undefined;
    const h = harness([{ name: 'noop', session: (ctx) => ((inject = ctx.sendToBackend), {}) }, { name: 'noop2', session: () => ({}) }]);
    h.fromClient.next(fe.query('select 1'));
    inject!(fe.query('injected'));
    assert.deepEqual(h.toBackend, ['select 1', 'injected']);
    h.chain.close();
    h.fromClient.next(fe.query('too late'));
    inject!(fe.query('too late'));
    assert.deepEqual(h.toBackend, ['select 1', 'injected']);
  });

  it('as streams (buildChain): each output completes when its source does', () => {
    const fromClient = new Subject<FrontendMessage>();
    const chain = buildChain([{ name: 'watch', session: () => ({ frontend: tap(() => {}) }) }], session(), fromClient, new Subject<BackendMessage>());
    const got: string[] = [];
    let completed = false;
    chain.toBackend$.subscribe({ next: (m) => got.push(sqlOf(m)), complete: () => (completed = true) });
    fromClient.next(fe.query('select 1'));
    fromClient.complete();
    assert.deepEqual(got, ['select 1']);
    assert.equal(completed, true);
  });

  it('stops a stream with operators when closed: its injections go nowhere', () => {
    let inject: ((m: BackendMessage) => void) | undefined;
    const h = harness([{ name: 'watch', session: (ctx) => ((inject = ctx.sendToClient), { backend: tap(() => {}) }) }]);
    h.fromBackend.next(be.commandComplete('SELECT 1'));
    h.chain.close();
    h.fromBackend.next(be.commandComplete('SELECT 2'));
    inject!(be.readyForQuery('I'));
    assert.deepEqual(h.toClient, ['SELECT 1']);
  });

  it('gives every middleware the session\'s facts, read through as they change, and controls that work detached', () => {
    const s = session();
    let seen: MiddlewareContext | undefined;
    const out: string[] = [];
    composeChain([{ name: 'ctx', session: (ctx) => void (seen = ctx) }], s, { toBackend: () => {}, toClient: (m) => out.push(m.type), error: () => {} });
    s.user = 'later';
    assert.equal(seen!.user, 'later');
    assert.equal(seen!.id, s.id);
    assert.equal(seen!.serverParams, s.serverParams);
    const { sendToClient } = seen!;
    sendToClient(be.readyForQuery('I'));
    assert.deepEqual(out, ['ReadyForQuery']);
    assert.equal(Object.getPrototypeOf(s), Session.prototype, 'the session is no context\'s prototype');
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
    h.fromClient.next(fe.query('select 1'));
    assert.match(String(h.errors[0]), /boom/);
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

describe('message declarations', () => {
  it('shows an operator only the types its middleware declared; the others pass it by, in order', () => {
    const seen: string[] = [];
    const h = harness([{ name: 'queries', messages: { frontend: ['Query'] }, session: () => ({ frontend: tap((m) => seen.push(m.type)) }) }]);
    h.fromClient.next(fe.parse({ name: '', sql: 'select 1', paramTypes: [] }));
    h.fromClient.next(fe.query('select 2'));
    h.fromClient.next(fe.sync());
    assert.deepEqual(seen, ['Query']);
    assert.deepEqual(h.toBackend, ['Parse', 'select 2', 'Sync']);
    assert.deepEqual([...h.chain.wants.frontend.keys()].filter((c) => h.chain.wants.frontend[c]), ['Q'.charCodeAt(0)]);
    assert.equal(h.chain.wants.backend.includes(1), false, 'no backend operator: no backend message is wanted');
  });

  it('keeps injections and changes of an operator that sees only some types in their place', () => {
    const h = harness([
      {
        name: 'answers-ping',
        messages: { frontend: ['Query'] },
        session: (ctx) => ({
          frontend: filter((m) => {
            if (m.type !== 'Query' || m.body().sql !== 'ping') return true;
            ctx.sendToBackend(fe.query('pong'));
            return false;
          }),
        }),
      },
    ]);
    h.fromClient.next(fe.sync());
    h.fromClient.next(fe.query('ping'));
    h.fromClient.next(fe.flush());
    assert.deepEqual(h.toBackend, ['Sync', 'pong', 'Flush']);
  });

  it('gives sessions with the same declarations one shared MessageWants; a copy added to leaves it as it was', () => {
    const queries: Middleware = { name: 'queries', messages: { frontend: ['Query'] }, session: () => ({ frontend: tap(() => {}) }) };
    const parses: Middleware = { name: 'parses', messages: { frontend: ['Parse'] }, session: () => ({ frontend: tap(() => {}) }) };
    const first = harness([queries]).chain.wants;
    assert.equal(harness([queries]).chain.wants, first, 'the same pipeline: the same wants');
    assert.notEqual(harness([parses]).chain.wants, first, 'other declarations: other wants');
    const more = first.copy().addBackend(['ParameterStatus']);
    assert.equal(first.backend.includes(1), false);
    assert.equal(more.backend['S'.charCodeAt(0)], 1);
    assert.equal(more.frontend['Q'.charCodeAt(0)], 1);
    assert.equal(sharedWants(first.copy()), first);
  });

  it('tells wants observed from wants in full when sharing, and gives bits that follow every add', () => {
    const full = sharedWants(new MessageWants().addFrontend(['Describe']));
    const observed = sharedWants(new MessageWants().addFrontend(['Describe'], true));
    assert.notEqual(full, observed);
    assert.equal(sharedWants(new MessageWants().addFrontend(['Describe'], true)), observed);
    const wants = new MessageWants().addFrontend(['Query']);
    assert.equal(wants.bits().filter((b) => b !== 0).length, 1);
    wants.addBackend(['ReadyForQuery']);
    assert.equal(wants.bits().filter((b) => b !== 0).length, 2, 'the bits made before the add are not reused');
  });

  it('wants every type of a direction whose operator declares nothing, and nothing for middleware without operators', () => {
    const everything = harness([{ name: 'all', session: () => ({ backend: tap(() => {}) }) }]);
    assert.equal(everything.chain.wants.backend.every((f) => f === 1), true);
    assert.equal(everything.chain.wants.frontend.includes(1), false);
    const passive = harness([{ name: 'passive', messages: { frontend: ['Query'] }, session: () => ({ onClose: () => {} }) }]);
    assert.equal(passive.chain.wants.none, true, 'a declaration without an operator asks for nothing');
  });

  it('puts the wants in bits for the native carrier: frontend types, then backend types (then the same, observed only)', () => {
    const wants = new MessageWants().addFrontend(['Query']).addBackend(['ReadyForQuery']);
    const bits = wants.bits();
    assert.equal(bits.length, 128);
    assert.equal(bits[0x51 >> 3], 1 << (0x51 & 7));
    assert.equal(bits[32 + (0x5a >> 3)], 1 << (0x5a & 7));
    assert.equal(bits.reduce((n, b) => n + (b ? 1 : 0), 0), 2);
  });
});

describe('session bookkeeping (the JavaScript carrier\'s, from the protocol table)', () => {
  const code = (c: string) => c.charCodeAt(0);
  const frame = (m: BackendMessage) => [m.code, m.raw, 0, m.raw.length] as const;

  it('counts Query/Sync/FunctionCall until their ReadyForQuery, pipelined batches included', () => {
    const b = new SessionBook();
    assert.equal(b.idle, true);
    for (const c of ['P', 'B', 'E', 'S', 'P', 'B', 'E', 'S']) b.fromClient(code(c));
    assert.equal(b.unanswered, 2);
    b.ready('I');
    assert.equal(b.idle, false, 'one Sync still unanswered');
    b.ready('I');
    assert.equal(b.idle, true);
  });

  it('tells a watcher once, at the next ReadyForQuery that leaves the session idle', () => {
    const b = new SessionBook();
    let told = 0;
    b.fromClient(code('Q'));
    b.watchIdle(() => told++);
    b.ready('T');
    assert.equal(told, 0, 'in a transaction');
    b.fromClient(code('Q'));
    b.ready('I');
    assert.equal(told, 1);
    b.fromClient(code('Q'));
    b.ready('I');
    assert.equal(told, 1, 'once');
  });

  it('knows whether the backend said it leaves: FATAL or PANIC, notices and ReadyForQuery after it aside', () => {
    const b = new SessionBook();
    b.fromBackend(...frame(be.errorResponse({ severity: 'ERROR', severityV: 'ERROR', code: '42601', message: 'syntax' })));
    assert.equal(b.backendSaidFatal, false);
    b.fromBackend(...frame(be.errorResponse({ severity: 'FATAL', severityV: 'FATAL', code: '57P01', message: 'bye' })));
    b.fromBackend(...frame(be.noticeResponse({ severity: 'NOTICE', code: '00000', message: 'later' })));
    assert.equal(b.backendSaidFatal, true);
    b.fromBackend(...frame(be.commandComplete('SELECT 1')));
    assert.equal(b.backendSaidFatal, false);
    // Before 9.6 only the (localized) S field says it.
    b.fromBackend(...frame(be.errorResponse({ severity: 'PANIC', code: 'XX000', message: 'old server' })));
    assert.equal(b.backendSaidFatal, true);
  });

  it('times statements from the Query or Execute sent to their end; those a ReadyForQuery cut short count nothing', () => {
    const timed: boolean[] = [];
    const b = new SessionBook({ statement: (_s, ok) => timed.push(ok), pull: () => () => {} });
    for (const c of ['P', 'B', 'E', 'E', 'S']) b.toBackend(code(c));
    b.fromBackend(...frame(be.commandComplete('SELECT 1')));
    b.fromBackend(...frame(be.errorResponse({ severity: 'ERROR', code: '22012', message: 'division by zero' })));
    b.toBackend(code('E'));
    b.fromBackend(...frame(be.readyForQuery('E')));
    b.fromBackend(...frame(be.commandComplete('SELECT 1')));
    assert.deepEqual(timed, [true, false]);
  });

  it('keeps the extended-protocol batch open from Parse to Sync, and Terminate', () => {
    const b = new SessionBook();
    b.toBackend(code('P'));
    assert.equal(b.batchOpen, true);
    b.toBackend(code('S'));
    assert.equal(b.batchOpen, false);
    b.toBackend(code('X'));
    assert.equal(b.terminated, true);
  });
});

describe('session state', () => {
  it('keeps its own count without a carrier (tests, the plugin test kit), and runs whenIdle at the idle point', () => {
    const s = new SessionStateTracker();
    s.fromClient('Q'.charCodeAt(0));
    s.toClient(be.readyForQuery('T'));
    assert.equal(s.transactionStatus, 'T');
    let fired = 0;
    s.whenIdle(() => fired++);
    s.fromClient('Q'.charCodeAt(0));
    s.toClient(be.readyForQuery('I'));
    assert.equal(fired, 1);
  });

  it('reads the carrier while attached, keeps its last values after, and runs whenIdle when told', () => {
    const s = new SessionStateTracker();
    assert.equal(s.idle, true, 'idle before the relay');
    const source = { transactionStatus: 'T' as 'I' | 'T' | 'E', unanswered: 1, watched: 0, watchIdle() { this.watched++; } };
    s.attach(source);
    assert.equal(s.transactionStatus, 'T');
    let fired = 0;
    s.whenIdle(() => fired++);
    assert.equal(source.watched, 1, 'the carrier is asked to tell');
    s.idleReached();
    assert.equal(fired, 0, 'told too early: still busy, asked again');
    assert.equal(source.watched, 2);
    source.transactionStatus = 'I';
    source.unanswered = 0;
    s.idleReached();
    assert.equal(fired, 1);
    source.transactionStatus = 'E';
    s.detach();
    source.transactionStatus = 'I';
    assert.equal(s.transactionStatus, 'E', 'the last value stays');
  });
});
