import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { map, Subject } from 'rxjs';
import { buildChain } from '../../src/pipeline/chain.js';
import { observer, seenBy } from '../../src/pipeline/lane-operators.js';
import type { Middleware, MiddlewareContext } from '../../src/pipeline/middleware.js';
import { Session } from '../../src/pipeline/session.js';
import { be, fe, PgError, SqlState, type BackendMessage, type FrontendMessage } from '../../src/protocol/index.js';
import { silentLogger } from '../../src/telemetry/log.js';
import { pluginCases, type Reported } from '../helpers/plugin-cases.js';

const { bridge, pluginSource, caseDir, load } = pluginCases();

describe('plugin loader: hooks', () => {
  it('runs each hook in load order with its arguments; a throwing hook is reported and the others still run', async () => {
    const dir = await caseDir();
    const calls: string[] = [];
    for (const n of ['h1', 'h2', 'h3']) await writeFile(join(dir, `${n}.mjs`), pluginSource({ name: n }));
    bridge.setups.set('h1', (api) => {
      api.on('onSessionStart', (s) => void calls.push(`h1:start:${s.id}`));
      api.on('preClose', () => void calls.push('h1:preClose'));
    });
    bridge.setups.set('h2', (api) => {
      api.on('onSessionStart', () => {
        throw new Error('hook bug');
      });
      api.on('onReady', async () => {
        await new Promise((r) => setTimeout(r, 5));
        calls.push('h2:ready');
      });
    });
    bridge.setups.set('h3', (api) => {
      api.on('onSessionStart', async (s) => void calls.push(`h3:start:${s.id}`));
      api.on('onReady', () => void calls.push('h3:ready'));
      api.on('onSessionEnd', () => Promise.reject(new Error('async hook bug')));
    });
    try {
      const { loading, reported } = load(['./h1.mjs', './h2.mjs', './h3.mjs'], dir);
      const loaded = await loading;
      const s = new Session({ id: 'sess1', client: { address: '127.0.0.1', port: 1, tls: false }, clientParams: new Map(), log: silentLogger });
      await loaded.runHook('onReady');
      await loaded.runHook('onSessionStart', s);
      await loaded.runHook('onAuthenticated', s);
      await loaded.runHook('onSessionEnd', s);
      await loaded.runHook('preClose');
      assert.deepEqual(calls, ['h2:ready', 'h3:ready', 'h1:start:sess1', 'h3:start:sess1', 'h1:preClose'], 'async hooks are awaited in order');
      assert.deepEqual(
        reported.map((r) => [r.plugin, r.where, (r.error as Error).message]),
        [
          ['h2', 'onSessionStart', 'hook bug'],
          ['h3', 'onSessionEnd', 'async hook bug'],
        ],
      );
    } finally {
      for (const n of ['h1', 'h2', 'h3']) bridge.setups.delete(n);
    }
  });
});

describe('plugin loader: fenced middleware', () => {
  function session(): Session {
    return new Session({ client: { address: '127.0.0.1', port: 1, tls: false }, clientParams: new Map(), log: silentLogger });
  }

  /** Loads one plugin that registers `mw` as middleware "fenced" and returns the wrapped instance. */
  async function fenced(mw: Middleware): Promise<{ middleware: Middleware; reported: Reported[] }> {
    const dir = await caseDir();
    await writeFile(join(dir, 'f.mjs'), pluginSource({ name: 'fence-test' }));
    bridge.setups.set('fence-test', (api) => api.registerMiddleware('fenced', () => mw));
    try {
      const { loading, reported } = load(['./f.mjs'], dir);
      const loaded = await loading;
      return { middleware: loaded.middleware.get('fenced')!.factory({}), reported };
    } finally {
      bridge.setups.delete('fence-test');
    }
  }

  function run(middleware: Middleware[]) {
    const fromClient = new Subject<FrontendMessage>();
    const fromBackend = new Subject<BackendMessage>();
    const chain = buildChain(middleware, session(), fromClient, fromBackend);
    const out = { toBackend: [] as string[], toClient: [] as string[], backendError: undefined as unknown, clientError: undefined as unknown };
    chain.toBackend$.subscribe({ next: (m) => out.toBackend.push(m.type), error: (e) => (out.backendError = e) });
    chain.toClient$.subscribe({ next: (m) => out.toClient.push(m.type), error: (e) => (out.clientError = e) });
    return { fromClient, fromBackend, out };
  }

  /** Throws a TypeError (a bug, not a PgError) on the first Query (frontend) or CommandComplete (backend). */
  const failing = (direction: 'frontend' | 'backend'): Middleware => ({
    name: 'fenced',
    session: () =>
      direction === 'frontend'
        ? {
            frontend: map((m: FrontendMessage) => {
              if (m.type === 'Query') throw new TypeError('plugin bug');
              return m;
            }),
          }
        : {
            backend: map((m: BackendMessage) => {
              if (m.type === 'CommandComplete') throw new TypeError('plugin bug');
              return m;
            }),
          },
  });

  it('reports an operator that throws on the frontend with the plugin name and errors the stream with a FATAL PgError', async () => {
    const { middleware, reported } = await fenced(failing('frontend'));
    const h = run([middleware]);
    h.fromClient.next(fe.sync());
    h.fromClient.next(fe.query('select 1'));
    assert.deepEqual(h.out.toBackend, ['Sync']);
    const err = h.out.backendError;
    assert.ok(err instanceof PgError, String(err));
    assert.equal(err.severity, 'FATAL');
    assert.equal(err.sqlstate, SqlState.InternalError);
    assert.match(err.message, /plugin "fence-test" failed/);
    assert.ok(err.cause instanceof TypeError);
    assert.equal(reported.length, 1);
    assert.equal(reported[0]!.plugin, 'fence-test');
    assert.equal(reported[0]!.where, 'frontend');
    assert.equal((reported[0]!.error as Error).message, 'plugin bug');
  });

  it('reports an operator that throws on the backend side the same way', async () => {
    const { middleware, reported } = await fenced(failing('backend'));
    const h = run([middleware]);
    h.fromBackend.next(be.readyForQuery('I'));
    h.fromBackend.next(be.commandComplete('SELECT 1'));
    assert.deepEqual(h.out.toClient, ['ReadyForQuery']);
    assert.ok(h.out.clientError instanceof PgError);
    assert.match((h.out.clientError as PgError).message, /plugin "fence-test" failed/);
    assert.deepEqual(reported.map((r) => [r.plugin, r.where]), [['fence-test', 'backend']]);
  });

  it('keeps a PgError the plugin raises on purpose (still reported)', async () => {
    const own = new PgError('FATAL', SqlState.InsufficientPrivilege, 'not on my watch');
    const { middleware, reported } = await fenced({
      name: 'fenced',
      session: () => ({
        frontend: map(() => {
          throw own;
        }),
      }),
    });
    const h = run([middleware]);
    h.fromClient.next(fe.query('select 1'));
    assert.equal(h.out.backendError, own);
    assert.equal(reported.length, 1);
  });

  it('reports a session() that throws and turns it into a FATAL PgError', async () => {
    const { middleware, reported } = await fenced({
      name: 'fenced',
      session: () => {
        throw new Error('session setup bug');
      },
    });
    assert.throws(() => run([middleware]), (err: unknown) => err instanceof PgError && err.fatal && /plugin "fence-test" failed/.test(err.message));
    assert.deepEqual(reported.map((r) => [r.plugin, r.where]), [['fence-test', 'session']]);
  });

  it('does not blame the plugin for an upstream error passing through its operators', async () => {
    const seen: string[] = [];
    const { middleware, reported } = await fenced({
      name: 'fenced',
      session: () => ({
        frontend: map((m: FrontendMessage) => (seen.push(m.type), m)),
        backend: map((m: BackendMessage) => (seen.push(m.type), m)),
      }),
    });
    // An upstream middleware that fails (not a plugin), then the socket errors.
    const upstream: Middleware = {
      name: 'upstream',
      session: () => ({
        frontend: map((m: FrontendMessage) => {
          if (m.type === 'Query') throw new PgError('FATAL', SqlState.ProtocolViolation, 'upstream refused');
          return m;
        }),
      }),
    };
    const h = run([upstream, middleware]);
    h.fromClient.next(fe.sync());
    h.fromClient.next(fe.query('select 1'));
    assert.ok(h.out.backendError instanceof PgError);
    assert.equal((h.out.backendError as PgError).message, 'upstream refused', 'the original error, unwrapped');
    const socketError = new Error('ECONNRESET');
    h.fromBackend.error(socketError);
    assert.equal(h.out.clientError, socketError, 'the backend error reaches the relay untouched');
    assert.deepEqual(seen, ['Sync']);
    assert.deepEqual(reported, [], 'nothing was reported against the plugin');
  });

  it('keeps an observer\'s direct call for observed messages, and blames what it throws there on the plugin', async () => {
    const seen: string[] = [];
    const { middleware, reported } = await fenced({
      name: 'fenced',
      messages: { frontend: ['Query'], observeOnly: true },
      session: () => ({
        frontend: observer((m: FrontendMessage) => {
          if (m.type !== 'Query') return;
          if (m.body().sql === 'boom') throw new TypeError('observer bug');
          seen.push(m.body().sql);
        }),
      }),
    });
    // The chain calls an observer's function itself for observed messages (no RxJS hops): the fence keeps that.
    const handlers = middleware.session!({} as MiddlewareContext);
    assert.ok(handlers && seenBy(handlers.frontend!), 'the fenced operator is still marked as an observer');
    const fromClient = new Subject<FrontendMessage>();
    const chain = buildChain([middleware], session(), fromClient, new Subject<BackendMessage>());
    let error: unknown;
    const written: string[] = [];
    chain.toBackend$.subscribe({ next: (m) => written.push(m.type), error: (e) => (error = e) });
    chain.observeClient(fe.query('select 1'));
    assert.deepEqual(seen, ['select 1']);
    assert.deepEqual(written, [], 'an observed message is not written again');
    chain.observeClient(fe.query('boom'));
    assert.ok(error instanceof PgError, String(error));
    assert.equal(error.sqlstate, SqlState.InternalError);
    assert.match(error.message, /plugin "fence-test" failed/);
    assert.deepEqual(reported.map((r) => [r.plugin, r.where, (r.error as Error).message]), [['fence-test', 'frontend', 'observer bug']], 'reported once');
  });

  it('passes messages through untouched when the plugin behaves', async () => {
    const { middleware, reported } = await fenced({ name: 'fenced', session: () => ({ frontend: map((m: FrontendMessage) => m) }) });
    const h = run([middleware]);
    h.fromClient.next(fe.query('select 1'));
    h.fromBackend.next(be.readyForQuery('I'));
    h.fromClient.complete();
    assert.deepEqual(h.out.toBackend, ['Query']);
    assert.deepEqual(h.out.toClient, ['ReadyForQuery']);
    assert.equal(h.out.backendError, undefined);
    assert.deepEqual(reported, []);
  });
});
