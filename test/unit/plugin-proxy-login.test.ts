// plugins/proxy-login in-process, with the plugin test kit and pgward's public entry points only
// (test/integration/proxy-login.test.ts runs it against PostgreSQL with psql, pg and postgres).
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import proxyLogin from '../../plugins/proxy-login/index.js';
import { fe, PgError, SqlState } from '../../src/index.js';
import { loadTestPlugins, startTestLogin, summarize, testTokenServices, type TestLoginOptions, type TestPlugins, type TestTokens } from '../../src/testing.js';

describe('proxy-login (unit, with the plugin test kit)', () => {
  let plugins: TestPlugins;
  let tokens: TestTokens;
  before(async () => {
    plugins = await loadTestPlugins(proxyLogin);
    tokens = await testTokenServices({ alice: 'postgres://alice:alice-pw@db.internal:5432/app' });
  });
  const login = (options: Record<string, unknown> = {}, opts?: TestLoginOptions) =>
    startTestLogin(plugins.authProvider('proxy-login', tokens.services, options), opts);

  it('completes the handshake itself: AuthenticationOk, parameters, its cancel key, ReadyForQuery', async () => {
    const l = login({}, { startup: { user: 'alice', database: 'app', application_name: 'psql' } });
    await l.settle();
    const sent = l.client.take();
    assert.deepEqual(summarize(sent).filter((t) => !t.startsWith('ParameterStatus:')), ['Authentication:Ok', 'BackendKeyData', 'ReadyForQuery:I']);
    assert.ok(summarize(sent).includes('ParameterStatus:server_version=15.0') && summarize(sent).includes('ParameterStatus:application_name=psql'));
    const keyData = sent.find((m) => m.type === 'BackendKeyData')!;
    assert.ok(keyData.type === 'BackendKeyData');
    assert.equal(keyData.body().processId, l.cancelKey?.processId, 'the key it reserved');
    assert.equal(l.handshakeCompleted, true);
    assert.equal(l.outcome, undefined);
    l.client.end(); // or its login timer would keep the test process alive
    await assert.rejects(l.result);
  });

  it('answers other statements with 28000 and a hint, an empty query with EmptyQueryResponse', async () => {
    const l = login();
    await l.settle();
    l.client.take();
    l.client.send(fe.query('select 1'), fe.query(' ; '));
    await l.settle();
    const replies = l.client.take();
    assert.deepEqual(summarize(replies), ['ErrorResponse:28000', 'ReadyForQuery:I', 'EmptyQueryResponse', 'ReadyForQuery:I']);
    const error = replies[0]!;
    assert.ok(error.type === 'ErrorResponse');
    assert.match(error.body().hint ?? '', /proxy_login/);
    l.client.end();
    await l.settle();
    assert.ok(l.outcome && 'error' in l.outcome && l.outcome.clientGone);
  });

  it("logs in with SELECT proxy_login('<jwt>'): the result row waits for the backend, as the completion", async () => {
    const l = login();
    l.client.send(fe.query(`SELECT proxy_login('${await tokens.sign({ sub: 'alice' })}')`));
    const result = await l.result;
    assert.equal(result.identity, 'alice');
    assert.deepEqual([result.target.host, result.target.user, result.target.database], ['db.internal', 'alice', 'app']);
    assert.deepEqual(summarize(result.clientHandshake!.completion), ['RowDescription', 'DataRow:alice', 'CommandComplete:SELECT 1', 'ReadyForQuery:I']);
    assert.equal(result.clientHandshake!.sentParameters.get('server_version'), '15.0');
    assert.deepEqual(l.logs.map((r) => r.event), ['proxy_login succeeded']);
  });

  it('logs in with the extended protocol and the token as a bind parameter', async () => {
    const l = login();
    l.client.send(
      fe.parse({ name: '', sql: 'select proxy_login($1)', paramTypes: [] }),
      fe.bind({ portal: '', statement: '', paramFormats: [], params: [Buffer.from(await tokens.sign({ sub: 'alice' }))], resultFormats: [] }),
      fe.describe('P'),
      fe.execute(),
    );
    const result = await l.result;
    assert.equal(result.identity, 'alice');
    assert.deepEqual(summarize(result.clientHandshake!.completion), ['DataRow:alice', 'CommandComplete:SELECT 1'], "the client's Sync goes on to the backend");
    assert.deepEqual(summarize(l.client.received).slice(-3), ['ParseComplete', 'BindComplete', 'RowDescription']);
  });

  it('refuses a forged token with an ERROR the client can retry after, and closes after maxAttempts', async () => {
    const l = login({ maxAttempts: 2 });
    await l.settle();
    l.client.take();
    const forged = await tokens.forge({ sub: 'alice' });
    l.client.send(fe.query(`select proxy_login('${forged}')`));
    await l.settle();
    const first = l.client.take();
    assert.deepEqual(summarize(first), ['ErrorResponse:28P01', 'ReadyForQuery:I']);
    assert.ok(first[0]!.type === 'ErrorResponse' && first[0]!.body().severity === 'ERROR');
    l.client.send(fe.query(`select proxy_login('${forged}')`));
    await assert.rejects(l.result, (e: unknown) => e instanceof PgError && e.fatal && e.sqlstate === SqlState.InvalidPassword && /too many failed login attempts/.test(e.message));
    assert.deepEqual(l.logs.map((r) => [r.event, r.fields.attempt]), [['proxy_login refused', 1], ['proxy_login refused', 2]]);
    assert.ok(!JSON.stringify(l.logs).includes(forged), 'the token is never logged');
  });

  it('ends with FATAL when the client leaves (Terminate) or takes longer than loginTimeout', async () => {
    const left = login();
    left.client.send(fe.terminate());
    await assert.rejects(left.result, (e: unknown) => e instanceof PgError && e.sqlstate === SqlState.ConnectionFailure);

    const slow = login({ loginTimeout: 0.05 });
    await assert.rejects(slow.result, (e: unknown) => e instanceof PgError && e.fatal && e.message === 'login timed out');
  });

  it('refuses bad options when the provider is built', () => {
    assert.throws(() => plugins.authProvider('proxy-login', tokens.services, { other: 1 }), /unknown auth option\(s\) other/);
    assert.throws(() => plugins.authProvider('proxy-login', tokens.services, { loginTimeout: 0 }), /loginTimeout must be a positive number/);
    assert.throws(() => plugins.authProvider('proxy-login', tokens.services, { maxAttempts: 1.5 }), /maxAttempts must be a whole number/);
  });
});
