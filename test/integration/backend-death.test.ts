import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { PgCluster } from '../helpers/pg-cluster.js';
import { logEvents, startTestProxy } from '../helpers/proxy.js';

// A SIGKILLed backend makes the postmaster reset every session, so this has its own cluster.
describe('a backend killed mid-query', () => {
  it('gives the client 08006 and the proxy keeps serving', async () => {
    await using cluster = await PgCluster.start({});
    await using proxy = await startTestProxy(['--insecure', '--auth', 'passthrough', '--backend', `${cluster.url('postgres')}?sslmode=disable`]);
    const client = new pg.Client({ connectionString: proxy.url('postgres') });
    client.on('error', () => {});
    await client.connect();
    const refused = assert.rejects(
      client.query('select pg_sleep(30)'),
      (e: { code?: string; message: string }) => e.code === '08006' && /backend connection closed unexpectedly/.test(e.message),
    );
    await new Promise((r) => setTimeout(r, 300));
    assert.ok((await cluster.killBackends()) >= 1, 'a backend was killed');
    await refused;
    assert.ok(logEvents(proxy.logs, 'session ended').some((e) => e.reason === 'backend-eof' && e.sqlstate === '08006'));
    await cluster.waitReady();
    const again = new pg.Client({ connectionString: proxy.url('postgres') });
    await again.connect();
    assert.deepEqual((await again.query('select 1 as ok')).rows, [{ ok: 1 }]);
    await again.end();
  });
});
