import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { buildProxyConfig } from '../../src/config/proxy-config.js';
import { PgCluster } from '../helpers/pg-cluster.js';
import { logEvents, startTestProxy, type TestProxy } from '../helpers/proxy.js';
import { until } from '../helpers/wait.js';

/**
 * `--logConnections` / `--logDisconnections` (like PostgreSQL's and PgBouncer's log_connections and
 * log_disconnections): off, routine sessions write no line, while whatever an operator must see
 * — refused logins, sessions the backend or pgward ended — is still logged. Real PostgreSQL, `pg`.
 */
describe('session start and end lines can be turned off', () => {
  let cluster: PgCluster;

  before(async () => {
    cluster = await PgCluster.start({
      hba: ['host all all 127.0.0.1/32 scram-sha-256'],
      users: [{ name: 'alice', password: 'alice pw' }, { name: 'bob', password: 'bob pw' }],
    });
  });
  after(async () => {
    await cluster?.stop();
  });

  // Passthrough logs the client's user in with the URL's password: alice gets in, bob is refused.
  const flags = () => ['--insecure', '--auth', 'passthrough', '--backend', `${cluster.url('alice', 'alice pw')}?sslmode=disable`];

  /** A session that logs in, asks its backend pid and ends cleanly. */
  async function cleanSession(proxy: TestProxy): Promise<number> {
    const c = new pg.Client({ connectionString: proxy.url('alice', 'alice pw') });
    await c.connect();
    const { rows } = await c.query('select pg_backend_pid() as pid');
    await c.end();
    return rows[0].pid as number;
  }

  /** Waits until the proxy serves no session: its end has been handled, and logged if it is. */
  const settled = (proxy: TestProxy) => until(() => proxy.proxy.server.sessions.size === 0, 10_000, 'the session to end');

  it('by default a session logs its start and its end', async () => {
    await using proxy = await startTestProxy(flags());
    await cleanSession(proxy);
    await until(() => logEvents(proxy.logs, 'session ended').length === 1, 10_000, 'the session ended line');
    assert.equal(logEvents(proxy.logs, 'session started').length, 1);
    assert.equal(logEvents(proxy.logs, 'session ended')[0]!.reason, 'client-terminate');
  });

  it('off: a clean session writes neither line; a refused login and a backend that ends the session are still logged', async () => {
    await using proxy = await startTestProxy([...flags(), '--no-logConnections', '--no-logDisconnections']);
    await cleanSession(proxy);
    await settled(proxy);
    assert.deepEqual(logEvents(proxy.logs, 'session started'), []);
    assert.deepEqual(logEvents(proxy.logs, 'session ended'), []);

    const refused = new pg.Client({ connectionString: proxy.url('bob', 'anything') });
    await assert.rejects(refused.connect(), (err: { code?: string }) => err.code === '28P01');
    const refusal = () => proxy.logs.filter((l) => l.includes('28P01'));
    await until(() => refusal().length > 0, 10_000, 'the refused login line');

    const victim = new pg.Client({ connectionString: proxy.url('alice', 'alice pw') });
    victim.on('error', () => {});
    await victim.connect();
    const { rows } = await victim.query('select pg_backend_pid() as pid');
    await cluster.sql(`select pg_terminate_backend(${rows[0].pid as number}, 5000)`);
    await until(() => logEvents(proxy.logs, 'session ended').length === 1, 10_000, 'the line of the session the backend ended');
    assert.notEqual(logEvents(proxy.logs, 'session ended')[0]!.reason, 'client-terminate');
    assert.deepEqual(logEvents(proxy.logs, 'session started'), []);
    await victim.end().catch(() => {});
  });

  it('each can be turned off alone, and a reload turns them on again for new sessions', async () => {
    await using proxy = await startTestProxy([...flags(), '--no-logDisconnections']);
    await cleanSession(proxy);
    await settled(proxy);
    assert.equal(logEvents(proxy.logs, 'session started').length, 1);
    assert.deepEqual(logEvents(proxy.logs, 'session ended'), []);

    await proxy.proxy.reload(buildProxyConfig(['--bindAddr', '127.0.0.1:0', ...flags(), '--no-logConnections'], {}));
    await cleanSession(proxy);
    await until(() => logEvents(proxy.logs, 'session ended').length === 1, 10_000, 'the session ended line after the reload');
    assert.equal(logEvents(proxy.logs, 'session started').length, 1, 'no start line after the reload');
  });
});
