import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { tap } from 'rxjs';
import { composeChain } from '../../src/pipeline/chain.js';
import type { Middleware, MiddlewareContext } from '../../src/pipeline/middleware.js';
import { Session } from '../../src/pipeline/session.js';
import { COUNTED, FULL, OBSERVED } from '../../src/pipeline/wants.js';
import { be, fe, type BackendMessage } from '../../src/protocol/index.js';
import { silentLogger } from '../../src/telemetry/log.js';
import { startTestSession } from '../../src/testing.js';

// Counted types (MessageInterest.count): forwarded like undeclared ones, never shown to an
// operator; the middleware reads how many passed with ctx.messageCount.

const D = 'D'.charCodeAt(0);
const C = 'C'.charCodeAt(0);
const Z = 'Z'.charCodeAt(0);

/** Observes CommandComplete and ReadyForQuery, counts DataRow: records the count at each message it sees. */
function counter(seen: string[], extra: Partial<Middleware['messages']> = {}): Middleware {
  return {
    name: 'counter',
    messages: { backend: ['CommandComplete', 'ReadyForQuery'], observeOnly: true, count: { backend: ['DataRow'] }, ...extra },
    session: (ctx: MiddlewareContext) => ({
      backend: tap((m: BackendMessage) => seen.push(`${m.type}@${ctx.messageCount('backend', 'DataRow')}`)),
    }),
  };
}

const rows = (n: number) => Array.from({ length: n }, (_, i) => be.dataRow([Buffer.from(String(i))]));

function chainOf(middleware: Middleware[]) {
  const toClient: string[] = [];
  const session = new Session({ client: { address: '127.0.0.1', port: 1, tls: false }, clientParams: new Map(), log: silentLogger });
  const chain = composeChain(middleware, session, { toBackend: () => {}, toClient: (m) => toClient.push(m.type), error: (err) => assert.fail(String(err)) });
  return { chain, toClient };
}

describe('counted types', () => {
  it('asks the carrier to count them; a type observed or wanted in full by anyone stays so', () => {
    assert.equal(chainOf([counter([])]).chain.wants.backend[D], COUNTED);
    assert.equal(chainOf([counter([])]).chain.wants.backend[C], OBSERVED);
    const observesRows: Middleware = { name: 'rows', messages: { backend: ['DataRow'], observeOnly: true }, session: () => ({ backend: tap(() => {}) }) };
    assert.equal(chainOf([counter([]), observesRows]).chain.wants.backend[D], OBSERVED);
    const wantsRows: Middleware = { name: 'rows', messages: { backend: ['DataRow'] }, session: () => ({ backend: tap(() => {}) }) };
    assert.equal(chainOf([wantsRows, counter([])]).chain.wants.backend[D], FULL);
    assert.equal(chainOf([wantsRows, counter([])]).chain.wants.backend[Z], OBSERVED);
  });

  it('counts what is only counted, observed or delivered alike, and shows the operator none of it', () => {
    const seen: string[] = [];
    const { chain, toClient } = chainOf([counter(seen)]);
    for (let i = 0; i < 3; i++) chain.countBackend(D);
    chain.observeBackend(be.commandComplete('SHOW'));
    chain.fromBackend(rows(1)[0]!); // delivered: another middleware wants it in full
    chain.observeBackend(rows(1)[0]!); // observed for another middleware
    chain.observeBackend(be.readyForQuery('I'));
    assert.deepEqual(seen, ['CommandComplete@3', 'ReadyForQuery@5']);
    assert.deepEqual(toClient, ['DataRow'], 'the delivered row goes on; nothing observed is written');
  });

  it('reads 0 for a type nobody counts, and counts nothing for a pipeline that counts nothing', () => {
    let count = -1;
    const mw: Middleware = {
      name: 'reader',
      messages: { backend: ['ReadyForQuery'], observeOnly: true },
      session: (ctx) => ({ backend: tap(() => void (count = ctx.messageCount('backend', 'DataRow') + ctx.messageCount('frontend', 'Query'))) }),
    };
    const { chain } = chainOf([mw]);
    chain.countBackend(D);
    chain.fromBackend(rows(1)[0]!);
    chain.observeBackend(be.readyForQuery('I'));
    assert.equal(count, 0);
  });

  it('counts in the plugin test kit as on a carrier: the counted type reaches the client, the operator only its count', async () => {
    const seen: string[] = [];
    const s = await startTestSession([counter(seen)]);
    s.client.send(fe.query('show work_mem'));
    s.backend.send(be.rowDescription([]), ...rows(2), be.commandComplete('SHOW'), be.readyForQuery('I'));
    assert.deepEqual(s.client.received.map((m) => m.type), ['RowDescription', 'DataRow', 'DataRow', 'CommandComplete', 'ReadyForQuery']);
    assert.deepEqual(seen, ['CommandComplete@2', 'ReadyForQuery@2']);
  });
});
