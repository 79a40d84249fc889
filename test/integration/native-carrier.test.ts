import assert from 'node:assert/strict';
import v8 from 'node:v8';
import vm from 'node:vm';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { tap } from 'rxjs';
import type { Middleware, MiddlewareContext } from '../../src/pipeline/index.js';
import { liveNativeCarriers, nativeCarrierAvailability } from '../../src/pipeline/native-carrier.js';
import { be, encodeStartupMessage, fe } from '../../src/protocol/index.js';
import { PgCluster } from '../helpers/pg-cluster.js';
import { logEvents, startTestProxy } from '../helpers/proxy.js';
import { RawClient } from '../helpers/raw-client.js';
import { metricValue } from '../helpers/scrape.js';
import { until } from '../helpers/wait.js';

/** A middleware with no stream operator that keeps each session's context. */
function passive(): Middleware & { contexts: MiddlewareContext[]; paramsAtClose: (string | undefined)[] } {
  const contexts: MiddlewareContext[] = [];
  const paramsAtClose: (string | undefined)[] = [];
  return {
    name: 'passive',
    contexts,
    paramsAtClose,
    session(ctx) {
      contexts.push(ctx);
      return { onClose: () => paramsAtClose.push(ctx.serverParams.get('application_name')) };
    },
  };
}

describe('the native carrier', () => {
  let cluster: PgCluster;

  before(async () => {
    cluster = await PgCluster.start({});
  });

  after(async () => {
    await cluster?.stop();
  });

  const args = () => ['--insecure', '--auth', 'passthrough', '--backend', cluster.url('postgres', undefined, 'postgres') + '?sslmode=disable'];

  it('is built and loads (the build step compiles native/*.c)', () => {
    assert.deepEqual(nativeCarrierAvailability(), { available: true });
  });

  it('carries a session whose middleware has a stream operator', async () => {
    const seen: string[] = [];
    const watcher: Middleware = { name: 'watcher', session: () => ({ frontend: (m$) => m$.pipe(tap((m) => seen.push(m.type))) }) };
    await using proxy = await startTestProxy(args(), { middleware: [watcher] });
    const client = new pg.Client({ connectionString: proxy.url('postgres') });
    await client.connect();
    await client.query('select 1');
    await client.end();
    await until(() => logEvents(proxy.logs, 'session ended').length === 1, 5000, 'the session to end');
    assert.equal(logEvents(proxy.logs, 'session ended')[0]!.relay, 'native');
    assert.deepEqual(seen, ['Query', 'Terminate'], 'the operator saw every message');
  });

  it('keeps ParameterStatus, byte counts and the transaction state', async () => {
    const mw = passive();
    await using proxy = await startTestProxy(args(), { middleware: [mw] });
    const client = new pg.Client({ connectionString: proxy.url('postgres') });
    await client.connect();
    await client.query(`set application_name = 'native-relay-test'`);
    await client.query('begin');
    const ctx = mw.contexts[0]!;
    // Read while the native relay carries the session: the tracker asks it.
    assert.equal(ctx.state.transactionStatus, 'T');
    assert.equal(ctx.state.idle, false);
    await client.query('commit');
    assert.equal(ctx.state.transactionStatus, 'I');
    assert.equal(ctx.state.unanswered, 0);
    const rows = await client.query(`select repeat('x', 1000) as x from generate_series(1, 2000)`);
    assert.equal(rows.rowCount, 2000);
    await client.end();
    await until(() => logEvents(proxy.logs, 'session ended').length === 1, 5000, 'the session to end');
    const ended = logEvents(proxy.logs, 'session ended')[0]!;
    assert.equal(ended.relay, 'native');
    assert.equal(ended.reason, 'client-terminate');
    assert.ok((ended.bytes_to_client as number) > 2000 * 1000, `bytes to client counted: ${ended.bytes_to_client}`);
    assert.ok((ended.bytes_to_backend as number) > 0);
    assert.deepEqual(mw.paramsAtClose, ['native-relay-test']);
  });

  it('writes what a middleware sends to the client, and stays native', async () => {
    const mw = passive();
    await using proxy = await startTestProxy(args(), { middleware: [mw] });
    const client = new pg.Client({ connectionString: proxy.url('postgres') });
    const notices: string[] = [];
    client.on('notice', (n) => notices.push(n.message ?? ''));
    await client.connect();
    await client.query('select 1');
    mw.contexts[0]!.sendToClient(be.noticeResponse({ severity: 'NOTICE', severityV: 'NOTICE', code: '00000', message: 'from the middleware' }));
    await until(() => notices.length === 1, 5000, 'the notice to arrive');
    assert.deepEqual(notices, ['from the middleware']);
    const r = await client.query('select count(*)::int as n from generate_series(1, 50000)');
    assert.equal(r.rows[0].n, 50000);
    await client.end();
    await until(() => logEvents(proxy.logs, 'session ended').length === 1, 5000, 'the session to end');
    assert.equal(logEvents(proxy.logs, 'session ended')[0]!.relay, 'native');
  });

  it('waits for the transaction to end before a close that waits for idle', async () => {
    const mw = passive();
    await using proxy = await startTestProxy(args(), { middleware: [mw] });
    const client = new pg.Client({ connectionString: proxy.url('postgres') });
    const errors: Error[] = [];
    client.on('error', (e) => errors.push(e));
    await client.connect();
    await client.query('begin');
    await client.query('select 1');
    const ctx = mw.contexts[0]!;
    let closedAt: string | undefined;
    ctx.state.whenIdle(() => {
      closedAt = ctx.state.transactionStatus;
      ctx.close();
    });
    // In a transaction: nothing may close it yet.
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(closedAt, undefined);
    assert.equal((await client.query('select 2 as two')).rows[0].two, 2);
    await client.query('commit').catch(() => {});
    await until(() => logEvents(proxy.logs, 'session ended').length === 1, 5000, 'the session to end');
    assert.equal(closedAt, 'I');
    assert.equal(logEvents(proxy.logs, 'session ended')[0]!.reason, 'closed');
    await client.end().catch(() => {});
  });

  it('times statements itself when only metrics watch them: counts and durations show at each scrape', async () => {
    await using proxy = await startTestProxy([...args(), '--metricsAddr', '127.0.0.1:0']);
    const address = proxy.proxy.metricsAddress!;
    const scrape = async () => (await fetch(`http://${address.host}:${address.port}/metrics`)).text();
    const client = new pg.Client({ connectionString: proxy.url('postgres') });
    await client.connect();
    for (let i = 0; i < 5; i++) await client.query('select $1::int as i', [i]);
    await client.query('select pg_sleep(0.6)');
    await client.query('select 1/0').catch(() => {});
    // Mid-session, from the live native relay.
    let text = await scrape();
    assert.equal(metricValue(text, 'pgward_relay_sessions_total', { relay: 'native' }), 1);
    assert.equal(metricValue(text, 'pgward_queries_total', { result: 'ok' }), 6);
    assert.equal(metricValue(text, 'pgward_queries_total', { result: 'error' }), 1);
    assert.equal(metricValue(text, 'pgward_query_duration_seconds_count'), 7);
    // 0.5 s, not less: a loaded machine (CI) can take a tenth of a second over a trivial statement.
    assert.equal(metricValue(text, 'pgward_query_duration_seconds_bucket', { le: '0.5' }), 6, 'only pg_sleep took longer than 0.5 s');
    assert.ok(metricValue(text, 'pgward_query_duration_seconds_sum') >= 0.6);
    await client.query('select 2');
    await client.end();
    await until(() => logEvents(proxy.logs, 'session ended').length === 1, 5000, 'the session to end');
    text = await scrape();
    assert.equal(metricValue(text, 'pgward_queries_total', { result: 'ok' }), 7);
    assert.equal(logEvents(proxy.logs, 'session ended')[0]!.relay, 'native');
  });

  it('closes a session whose client stopped reading mid-result, after the close grace period', async () => {
    const mw = passive();
    await using proxy = await startTestProxy(args(), { middleware: [mw] });
    await using c = await RawClient.connect(proxy.port);
    c.write(encodeStartupMessage([['user', 'postgres'], ['database', 'postgres']]));
    await until(() => c.messages.some((m) => m.type === 'ReadyForQuery'), 5000, 'the login');
    c.socket.pause();
    c.write(fe.query(`select repeat('x', 1000) from generate_series(1, 200000)`).raw);
    // Until every buffer between the backend and this client is full, mid-message.
    await new Promise((r) => setTimeout(r, 1000));
    mw.contexts[0]!.close();
    await until(() => logEvents(proxy.logs, 'session ended').length === 1, 10_000, 'the stuck session to be closed');
    assert.equal(logEvents(proxy.logs, 'session ended')[0]!.reason, 'closed');
    c.socket.resume();
    await c.closedWithin(5000, 'the client connection');
    assert.ok(c.bytes < 200_000 * 1000, 'the result was cut off, not delivered');
  });

  it('sends 08006 when the backend dies under the native carrier, and keeps serving', async () => {
    await using proxy = await startTestProxy(args());
    const victim = new pg.Client({ connectionString: proxy.url('postgres') });
    victim.on('error', () => {});
    await victim.connect();
    const pid = (await victim.query('select pg_backend_pid() as pid')).rows[0].pid as number;
    const running = victim.query('select pg_sleep(30)').then(
      () => assert.fail('the query should fail'),
      (e: Error & { code?: string }) => e,
    );
    await new Promise((r) => setTimeout(r, 200));
    process.kill(pid, 'SIGKILL');
    const err = await running;
    assert.equal(err.code, '08006', String(err));
    await until(async () => {
      const c = new pg.Client({ connectionString: proxy.url('postgres') });
      try {
        await c.connect();
        return (await c.query('select 1 as one')).rows[0].one === 1;
      } catch {
        return false;
      } finally {
        await c.end().catch(() => {});
      }
    }, 10_000, 'the cluster to serve again after the crash restart');
    assert.equal(logEvents(proxy.logs, 'session ended')[0]!.relay, 'native');
  });

  // Last: every case above ended its sessions, however they ended.
  it('frees the native carrier of every ended session', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    await until(() => (gc(), liveNativeCarriers() === 0), 5000, 'every native carrier to be freed');
  });
});
