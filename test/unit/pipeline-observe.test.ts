import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { filter, map, tap } from 'rxjs';
import { composeChain } from '../../src/pipeline/chain.js';
import { observer as observing } from '../../src/pipeline/lane-operators.js';
import type { Middleware, MiddlewareContext } from '../../src/pipeline/middleware.js';
import { setReadTime } from '../../src/pipeline/read-time.js';
import { Session } from '../../src/pipeline/session.js';
import { FULL, MessageWants, OBSERVED } from '../../src/pipeline/wants.js';
import { be, fe, type FrontendMessage } from '../../src/protocol/index.js';
import { silentLogger } from '../../src/telemetry/log.js';

const Q = 'Q'.charCodeAt(0);
const P = 'P'.charCodeAt(0);
const Z = 'Z'.charCodeAt(0);

function harness(middleware: Middleware[]) {
  const toBackend: string[] = [];
  const toClient: string[] = [];
  const session = new Session({ client: { address: '127.0.0.1', port: 1, tls: false }, clientParams: new Map(), log: silentLogger });
  const chain = composeChain(middleware, session, {
    toBackend: (m) => toBackend.push(m.type === 'Query' ? m.body().sql : m.type),
    toClient: (m) => toClient.push(m.type),
    error: (err) => assert.fail(String(err)),
  });
  return { chain, toBackend, toClient };
}

/** An observer of Query and ReadyForQuery that records what it saw. */
function observer(seen: string[], extra: Partial<Middleware> = {}): Middleware {
  return {
    name: 'observer',
    messages: { frontend: ['Query'], backend: ['ReadyForQuery'], observeOnly: true },
    session: () => ({
      frontend: tap((m: FrontendMessage) => seen.push(m.type === 'Query' ? m.body().sql : m.type)),
      backend: tap((m) => seen.push(m.type)),
    }),
    ...extra,
  };
}

describe('observe-only interest', () => {
  it('asks the carrier to observe the declared types, not to hold them', () => {
    const { chain } = harness([observer([])]);
    assert.equal(chain.wants.frontend[Q], OBSERVED);
    assert.equal(chain.wants.backend[Z], OBSERVED);
    assert.equal(chain.wants.frontend[P], 0);
    assert.equal(chain.wants.none, false);
  });

  it('delivers a type in full for all when any middleware declares it without observeOnly, whatever the order', () => {
    const full: Middleware = { name: 'full', messages: { frontend: ['Query'] }, session: () => ({ frontend: tap(() => {}) }) };
    for (const pipeline of [[observer([]), full], [full, observer([])]]) {
      const { chain } = harness(pipeline);
      assert.equal(chain.wants.frontend[Q], FULL);
      assert.equal(chain.wants.backend[Z], OBSERVED, 'the types only observed stay observed');
    }
  });

  it('puts observed types in the second half of the native bits', () => {
    const bits = new MessageWants().addFrontend(['Query'], true).addBackend(['ReadyForQuery']).bits();
    assert.equal(bits[Q >> 3], 0);
    assert.equal(bits[64 + (Q >> 3)], 1 << (Q & 7));
    assert.equal(bits[32 + (Z >> 3)], 1 << (Z & 7));
    assert.equal(bits[96 + (Z >> 3)], 0);
  });

  it('shows an observed message to the operators and writes nothing the chain emits for it', () => {
    const seen: string[] = [];
    const h = harness([observer(seen)]);
    h.chain.observeClient(fe.query('select 1'));
    h.chain.observeBackend(be.readyForQuery('I'));
    assert.deepEqual(seen, ['select 1', 'ReadyForQuery']);
    assert.deepEqual(h.toBackend, [], 'already forwarded by the carrier: not written again');
    assert.deepEqual(h.toClient, []);
    // A message delivered in full still comes out.
    h.chain.fromClient(fe.query('select 2'));
    assert.deepEqual(h.toBackend, ['select 2']);
  });

  it('drops an observer\'s changes but writes what it injects in reply', () => {
    const h = harness([
      {
        name: 'meddler',
        messages: { frontend: ['Query'], observeOnly: true },
        session: (ctx) => ({
          frontend: (m$) =>
            m$.pipe(
              tap(() => ctx.sendToClient(be.noticeResponse({ severity: 'NOTICE', code: '00000', message: 'seen' }))),
              map(() => fe.query('changed')),
              filter(() => true),
            ),
        }),
      },
    ]);
    h.chain.observeClient(fe.query('select 1'));
    assert.deepEqual(h.toBackend, [], 'the change is not written');
    assert.deepEqual(h.toClient, ['NoticeResponse'], 'the injection is');
  });

  it('tells middleware when the message was read (readTime), and now outside a delivery', () => {
    let ctx: MiddlewareContext | undefined;
    const times: number[] = [];
    harness([{ name: 'clock', session: (c) => void (ctx = c) }]);
    const h = harness([observer([], { session: (c) => ({ frontend: tap(() => times.push(c.readTime())) }) })]);
    setReadTime(1234.5);
    try {
      h.chain.observeClient(fe.query('select 1'));
    } finally {
      setReadTime(undefined);
    }
    assert.deepEqual(times, [1234.5]);
    const before = performance.now();
    const now = ctx!.readTime();
    assert.ok(now >= before && now <= performance.now());
  });

  it('observer(see): sees observed messages (called directly) and delivered ones, passes on only the delivered, and fails the stream when see throws', () => {
    const seen: string[] = [];
    let fail = false;
    const see = (m: FrontendMessage) => {
      if (fail) throw new Error('see failed');
      seen.push(m.type === 'Query' ? m.body().sql : m.type);
    };
    const watcher: Middleware = { name: 'watcher', messages: { frontend: ['Query'], observeOnly: true }, session: () => ({ frontend: observing(see) }) };
    const full: Middleware = { name: 'full', messages: { frontend: ['Parse'] }, session: () => ({ frontend: tap(() => {}) }) };
    const errors: unknown[] = [];
    const toBackend: string[] = [];
    const session = new Session({ client: { address: '127.0.0.1', port: 1, tls: false }, clientParams: new Map(), log: silentLogger });
    const chain = composeChain([watcher, full], session, {
      toBackend: (m) => toBackend.push(m.type === 'Query' ? m.body().sql : m.type),
      toClient: () => {},
      error: (err) => errors.push(err),
    });
    chain.observeClient(fe.query('observed'));
    chain.fromClient(fe.query('delivered'));
    chain.fromClient(fe.parse({ name: '', sql: 'select 1', paramTypes: [] }));
    assert.deepEqual(seen, ['observed', 'delivered']);
    assert.deepEqual(toBackend, ['delivered', 'Parse']);
    fail = true;
    chain.observeClient(fe.query('again'));
    assert.equal(errors.length, 1);
    assert.match(String(errors[0]), /see failed/);
  });
});
