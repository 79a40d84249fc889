// The plugin test kit (pgward/plugin/testing), used only through the public entry points.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { filter, map, mergeMap, tap } from 'rxjs';
import {
  be,
  decodePassword,
  definePlugin,
  fe,
  PgError,
  PLUGIN_API_VERSION,
  SqlState,
  type AuthProvider,
  type AuthServices,
  type BackendMessage,
  type FrontendMessage,
  type Middleware,
} from '../../src/index.js';
import { loadTestPlugins, startTestLogin, startTestSession, summarize, testTokenServices } from '../../src/testing.js';

const types = (messages: readonly { type: string }[]) => messages.map((m) => m.type);
const sqlOf = (m: FrontendMessage) => (m.type === 'Query' ? m.body().sql : m.type);
const errorCode = (m: BackendMessage | undefined) => (m?.type === 'ErrorResponse' ? `${m.body().severity} ${m.body().code}` : m?.type);
const answer = (...more: BackendMessage[]) => [be.commandComplete('SELECT 1'), ...more, be.readyForQuery('I')];

describe('plugin test kit: startTestSession', () => {
  it('relays both ways untouched with no middleware, each message arriving undecoded as off a socket', async () => {
    const s = await startTestSession([]);
    const q = fe.query('select 1');
    s.client.send(q);
    assert.deepEqual(s.backend.received.map(sqlOf), ['select 1']);
    assert.notEqual(s.backend.received[0], q, 'a fresh message, decoded from its bytes');
    assert.deepEqual(s.backend.received[0]!.raw, q.raw);
    s.backend.send(...answer());
    assert.deepEqual(types(s.client.received), ['CommandComplete', 'ReadyForQuery']);
    assert.equal(s.ended, undefined);
  });

  it('runs frontend operators first to last and backend operators last to first', async () => {
    const order: string[] = [];
    const mw = (name: string): Middleware => ({
      name,
      session: () => ({ frontend: tap(() => void order.push(`${name}>`)), backend: tap(() => void order.push(`<${name}`)) }),
    });
    const s = await startTestSession([mw('a'), mw('b')]);
    s.client.send(fe.sync());
    s.backend.send(be.readyForQuery('I'));
    assert.deepEqual(order, ['a>', 'b>', '<b', '<a']);
  });

  it('shows a rewrite where it lands and an injection both in what a side received and in injected', async () => {
    const mw: Middleware = {
      name: 'upper',
      session: (ctx) => ({
        frontend: mergeMap((m) => {
          if (m.type !== 'Query') return [m];
          if (m.body().sql === 'hello') {
            ctx.sendToClient(be.noticeResponse({ severity: 'NOTICE', code: '00000', message: 'hi' }), ...answer());
            return [];
          }
          return [fe.query(m.body().sql.toUpperCase())];
        }),
      }),
    };
    const s = await startTestSession(mw);
    s.client.send(fe.query('select 1'), fe.query('hello'));
    assert.deepEqual(s.backend.take().map(sqlOf), ['SELECT 1']);
    assert.deepEqual(types(s.client.take()), ['NoticeResponse', 'CommandComplete', 'ReadyForQuery']);
    assert.deepEqual(types(s.injected.toClient), ['NoticeResponse', 'CommandComplete', 'ReadyForQuery']);
    assert.deepEqual(s.injected.toBackend, []);
    assert.deepEqual(s.backend.take(), [], 'take() forgets what it returned');
  });

  it('runs an observer (observeOnly) as a carrier does: its types go on untouched, it sees them after, only its injections are written', async () => {
    const seen: string[] = [];
    const observer: Middleware = {
      name: 'observer',
      messages: { frontend: ['Query'], backend: ['CommandComplete'], observeOnly: true },
      session: (ctx) => ({
        frontend: map((m) => {
          seen.push(sqlOf(m));
          if (m.type === 'Query' && m.body().sql === 'hello') ctx.sendToClient(be.noticeResponse({ severity: 'NOTICE', code: '00000', message: 'seen' }));
          return fe.query('rewritten'); // an observer's output is not written
        }),
        backend: filter(() => false), // nor is an observed message it drops kept from the client
      }),
    };
    const s = await startTestSession(observer);
    s.client.send(fe.query('select 1'), fe.query('hello'), fe.sync());
    assert.deepEqual(s.backend.take().map(sqlOf), ['select 1', 'hello', 'Sync'], 'forwarded as sent, once each');
    assert.deepEqual(seen, ['select 1', 'hello'], 'the observer saw only its declared type');
    assert.deepEqual(types(s.client.take()), ['NoticeResponse'], 'its injection was written');
    s.backend.send(...answer());
    assert.deepEqual(types(s.client.take()), ['CommandComplete', 'ReadyForQuery']);
  });

  it('keeps ctx.state as the relay does: requests unanswered until ReadyForQuery, its status, whenIdle', async () => {
    let idleAt: string | undefined;
    const s = await startTestSession({ name: 'watch', session: () => undefined });
    const state = s.context.state;
    assert.equal(state.phase, 'relay');
    s.client.send(fe.query('begin'), fe.query('select 1'));
    assert.equal(state.unanswered, 2);
    state.whenIdle(() => (idleAt = `${state.transactionStatus}/${state.unanswered}`));
    s.backend.send(be.commandComplete('BEGIN'), be.readyForQuery('T'));
    assert.equal(state.transactionStatus, 'T');
    s.backend.send(...answer());
    assert.equal(state.unanswered, 0);
    assert.equal(idleAt, 'I/0', 'whenIdle ran once the session was idle');
  });

  it('keeps serverParams current from ParameterStatus and starts from the options', async () => {
    const s = await startTestSession([], { serverParams: { standard_conforming_strings: 'on' }, user: 'bob', clientParams: { application_name: 'app' } });
    assert.equal(s.context.serverParams.get('standard_conforming_strings'), 'on');
    s.backend.send(be.parameterStatus('standard_conforming_strings', 'off'));
    assert.equal(s.context.serverParams.get('standard_conforming_strings'), 'off');
    assert.equal(s.context.user, 'bob');
    assert.equal(s.context.database, 'bob');
    assert.equal(s.context.clientParams.get('application_name'), 'app');
  });

  it('runs beforeBackendStartup first, on the parameters sent to the backend', async () => {
    const s = await startTestSession(
      { name: 'tag', beforeBackendStartup: ({ params, ctx }) => void params.set('app.client', ctx.client.address) },
      { client: { address: '203.0.113.9' }, clientParams: { application_name: 'psql', replication: 'database' } },
    );
    assert.deepEqual(Object.fromEntries(s.backendStartup), { user: 'alice', database: 'alice', application_name: 'psql', 'app.client': '203.0.113.9' });
  });

  it('a failing beforeBackendStartup ends the session before any backend: FATAL to the client, nothing to the backend', async () => {
    const s = await startTestSession({ name: 'no', beforeBackendStartup: () => Promise.reject(new PgError('FATAL', SqlState.InsufficientPrivilege, 'no')) });
    assert.equal(s.ended?.reason, 'error');
    assert.equal(s.ended?.error?.sqlstate, SqlState.InsufficientPrivilege);
    assert.deepEqual(s.client.received.map(errorCode), ['FATAL 42501']);
    assert.deepEqual(s.backend.received, []);
  });

  it('ctx.close(error): FATAL to the client, Terminate to the backend, onClose run, closed resolved', async () => {
    let closedRan = 0;
    const s = await startTestSession({
      name: 'closer',
      session: (ctx) => ({
        frontend: filter((m) => {
          if (m.type === 'Query' && m.body().sql === 'bye') ctx.close(new PgError('FATAL', SqlState.AdminShutdown, 'bye now'));
          return true;
        }),
        onClose: () => void closedRan++,
      }),
    });
    s.client.send(fe.query('bye'));
    assert.equal(s.ended?.reason, 'closed');
    assert.equal(s.ended?.error?.message, 'bye now');
    assert.deepEqual(s.client.received.map(errorCode), ['FATAL 57P01']);
    assert.deepEqual(types(s.backend.received), ['Terminate'], 'the Query never reached the backend: the session closed first');
    assert.equal(closedRan, 1);
    await s.context.closed;
    assert.equal(s.context.state.phase, 'closed');
    s.client.send(fe.query('after'));
    assert.deepEqual(types(s.backend.received), ['Terminate'], 'nothing is relayed after the end');
  });

  it('an operator that throws ends the session with XX000 (a PgError it throws is kept, made FATAL)', async () => {
    const thrower = (err: unknown): Middleware => ({
      name: 't',
      session: () => ({
        backend: map(() => {
          throw err;
        }),
      }),
    });
    const bug = await startTestSession(thrower(new TypeError('oops')));
    bug.backend.send(be.readyForQuery('I'));
    assert.deepEqual([bug.ended?.reason, bug.ended?.error?.message], ['error', 'internal proxy error']);
    assert.deepEqual(bug.client.received.map(errorCode), ['FATAL XX000']);
    assert.deepEqual(types(bug.backend.received), ['Terminate']);

    const meant = await startTestSession(thrower(new PgError('ERROR', SqlState.InsufficientPrivilege, 'not you')));
    meant.backend.send(be.readyForQuery('I'));
    assert.deepEqual(meant.client.received.map(errorCode), ['FATAL 42501']);
  });

  it('a session() that throws ends the session at once; middleware already set up get onClose', async () => {
    let closed = false;
    const s = await startTestSession([
      { name: 'first', session: () => ({ onClose: () => void (closed = true) }) },
      {
        name: 'broken',
        session: () => {
          throw new Error('cannot start');
        },
      },
    ]);
    assert.equal(s.ended?.reason, 'error');
    assert.equal(closed, true);
    assert.deepEqual(types(s.backend.received), ['Terminate']);
  });

  it('tells apart how a session ends: Terminate, client EOF, backend EOF, a backend that said why', async () => {
    const terminate = await startTestSession([]);
    terminate.client.send(fe.terminate());
    assert.equal(terminate.ended?.reason, 'client-terminate');
    assert.deepEqual(types(terminate.backend.received), ['Terminate'], 'the client\'s own Terminate, no second one');
    assert.deepEqual(terminate.client.received, []);

    const eof = await startTestSession([]);
    eof.client.end();
    assert.equal(eof.ended?.reason, 'client-eof');
    assert.deepEqual(types(eof.backend.received), ['Terminate']);

    const gone = await startTestSession([]);
    gone.backend.end();
    assert.equal(gone.ended?.reason, 'backend-eof');
    assert.deepEqual(gone.client.received.map(errorCode), ['FATAL 08006']);
    assert.deepEqual(gone.backend.received, []);

    const said = await startTestSession([]);
    said.backend.send(be.errorResponse(new PgError('FATAL', SqlState.AdminShutdown, 'shutting down').toFields()));
    said.backend.end();
    assert.deepEqual([said.ended?.reason, said.ended?.error], ['backend-eof', undefined]);
    assert.deepEqual(said.client.received.map(errorCode), ['FATAL 57P01'], 'only the backend\'s own word');
  });

  it('settle() lets asynchronous operators finish', async () => {
    const s = await startTestSession({
      name: 'slow',
      session: () => ({ frontend: mergeMap(async (m) => (await new Promise((r) => setTimeout(r, 0)), m)) }),
    });
    s.client.send(fe.query('select 1'));
    assert.deepEqual(s.backend.received, []);
    await s.settle();
    assert.deepEqual(s.backend.received.map(sqlOf), ['select 1']);
  });

  it('records what the middleware logged', async () => {
    const s = await startTestSession({ name: 'chatty', session: (ctx) => void ctx.log.info('hello', { user: ctx.user }) });
    assert.deepEqual(s.logs, [{ level: 'info', event: 'hello', fields: { user: 'alice' } }]);
  });
});

describe('plugin test kit: summarize', () => {
  it('writes one line per message, with what identifies the common ones', () => {
    assert.deepEqual(
      summarize([
        fe.query('select 1'),
        fe.parse({ name: 's1', sql: 'select $1', paramTypes: [] }),
        fe.bind({ portal: '', statement: 's1', paramFormats: [], params: [Buffer.from('x'), null], resultFormats: [] }),
        fe.sync(),
        be.authOk(),
        be.parameterStatus('TimeZone', 'UTC'),
        be.dataRow([Buffer.from('alice'), null]),
        be.commandComplete('SELECT 1'),
        be.errorResponse(new PgError('ERROR', SqlState.InsufficientPrivilege, 'no').toFields()),
        be.readyForQuery('T'),
      ]),
      [
        'Query:select 1',
        'Parse:s1:select $1',
        'Bind:s1:2',
        'Sync',
        'Authentication:Ok',
        'ParameterStatus:TimeZone=UTC',
        'DataRow:alice,NULL',
        'CommandComplete:SELECT 1',
        'ErrorResponse:42501',
        'ReadyForQuery:T',
      ],
    );
  });
});

describe('plugin test kit: loadTestPlugins', () => {
  const plugin = (fields: Partial<Parameters<typeof definePlugin>[0]> = {}) =>
    definePlugin({
      name: 'sample',
      version: '1.0.0',
      pluginApi: PLUGIN_API_VERSION,
      setup(api) {
        api.registerMiddleware('boom', (options) => {
          if (options !== undefined) throw new Error('boom: takes no options');
          return { name: 'boom', session: () => ({ frontend: map(() => assert.fail('boom')) }) };
        });
      },
      ...fields,
    });

  it('fences plugin middleware as the proxy does: XX000 naming the plugin, the error reported', async () => {
    const plugins = await loadTestPlugins(plugin());
    const s = await startTestSession(plugins.middleware('boom'));
    s.client.send(fe.sync());
    assert.equal(s.ended?.error?.message, 'plugin "sample" failed');
    assert.deepEqual(plugins.errors.map((e) => [e.plugin, e.where]), [['sample', 'frontend']]);
  });

  it('builds middleware from options as a pipeline entry does, and names what is registered', async () => {
    const plugins = await loadTestPlugins(plugin());
    assert.throws(() => plugins.middleware('boom', { x: 1 }), /boom: takes no options/);
    assert.throws(() => plugins.middleware('other'), /no middleware "other" was registered \(registered: boom\)/);
  });

  it('refuses a plugin as the loader does: another plugin API version, a bad shape', async () => {
    await assert.rejects(loadTestPlugins(plugin({ pluginApi: PLUGIN_API_VERSION + 1 })), /^PluginError: PGWARD_ERR_PLUGIN_API: plugin "sample": needs plugin API/);
    await assert.rejects(loadTestPlugins(plugin({ name: 'Not A Name' })), /PGWARD_ERR_PLUGIN_INVALID/);
    await assert.rejects(loadTestPlugins(plugin({ pgward: '>=99' }), { version: '0.1.0' }), /PGWARD_ERR_PLUGIN_VERSION: plugin "sample": needs pgward >=99, this is 0\.1\.0/);
  });

  it('runs hooks; a failing one is reported, not thrown', async () => {
    const seen: string[] = [];
    const plugins = await loadTestPlugins(
      plugin({
        setup(api) {
          api.on('onReady', () => void seen.push('ready'));
          api.on('preClose', () => {
            throw new Error('no');
          });
        },
      }),
    );
    await plugins.runHook('onReady');
    await plugins.runHook('preClose');
    assert.deepEqual(seen, ['ready']);
    assert.deepEqual(plugins.errors.map((e) => e.where), ['preClose']);
  });
});

describe('plugin test kit: startTestLogin and testTokenServices', () => {
  /** Asks for a password and resolves it as a token, as the jwt provider does. */
  const passwordLogin = (services: AuthServices): AuthProvider => ({
    name: 'password-token',
    async authenticate(channel) {
      channel.send(be.authCleartext());
      const m = await channel.read();
      if (m.type !== 'AuthResponse') throw new PgError('FATAL', SqlState.ProtocolViolation, 'expected a password');
      return services.resolveToken(decodePassword(m.body().data), channel);
    },
  });

  it('verifies and routes a real token; refuses a forged and an expired one with 28P01', async () => {
    const tokens = await testTokenServices({ alice: 'postgres://alice:secret@db.internal:5432/app' });
    const ok = startTestLogin(passwordLogin(tokens.services));
    await ok.settle();
    assert.deepEqual(types(ok.client.take()), ['Authentication']);
    ok.client.send(fe.password(await tokens.sign({ sub: 'alice' })));
    const result = await ok.result;
    assert.deepEqual([result.identity, result.target.host, result.target.database, result.target.password], ['alice', 'db.internal', 'app', 'secret']);

    for (const token of [await tokens.forge({ sub: 'alice' }), await tokens.sign({ sub: 'alice', exp: Math.floor(Date.now() / 1000) - 60 })]) {
      const bad = startTestLogin(passwordLogin(tokens.services));
      bad.client.send(fe.password(token));
      await assert.rejects(bad.result, (e: unknown) => e instanceof PgError && e.sqlstate === SqlState.InvalidPassword);
      assert.ok(bad.outcome && 'error' in bad.outcome && !bad.outcome.clientGone);
    }
  });

  it('a client that leaves rejects the pending read, told apart as clientGone', async () => {
    const tokens = await testTokenServices({ alice: 'postgres://alice@db.internal/app' });
    const login = startTestLogin(passwordLogin(tokens.services));
    await login.settle();
    const waiting = login.outcome;
    assert.equal(waiting, undefined, 'waiting for the client');
    login.client.end();
    await login.settle();
    assert.ok(login.outcome && 'error' in login.outcome && login.outcome.clientGone);
  });

  it('records the handshake, the reserved cancel key and the startup parameters the provider saw', async () => {
    let user: string | undefined;
    const login = startTestLogin(
      {
        name: 'self',
        async authenticate(channel) {
          user = channel.startup.get('user');
          const key = channel.reserveCancelKey();
          channel.send(be.authOk(), be.backendKeyData(key.processId, key.secretKey), be.readyForQuery('I'));
          channel.handshakeComplete();
          await channel.read();
          throw new PgError('FATAL', SqlState.InvalidAuthorizationSpecification, 'done');
        },
      },
      { startup: { user: 'carol', database: 'app' } },
    );
    await login.settle();
    assert.equal(user, 'carol');
    assert.equal(login.handshakeCompleted, true);
    assert.ok(login.cancelKey && login.cancelKey.processId > 0);
    assert.deepEqual(types(login.client.received), ['Authentication', 'BackendKeyData', 'ReadyForQuery']);
    login.client.send(fe.sync());
    await login.settle();
    assert.ok(login.outcome && 'error' in login.outcome);
  });
});
