import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { startMetricsServer } from '../../src/telemetry/http.js';
import { createMetrics, DURATION_BUCKETS, type Metrics } from '../../src/telemetry/metrics.js';
import { AUTH_REASONS } from '../../src/telemetry/spans.js';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the Prometheus text exposition (samples only; comments skipped). */
function parseExposition(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/.exec(line);
    assert.ok(m, `unparseable exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1] as string] = l[2] as string;
    out.push({ name: m[1] as string, labels, value: Number(m[3]) });
  }
  return out;
}

async function scrape(metrics: Metrics): Promise<Sample[]> {
  return parseExposition(await metrics.registry.metrics());
}

/** The value of the one sample with this name whose labels include `labels` (undefined if none). */
function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const hits = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  assert.ok(hits.length <= 1, `${name} ${JSON.stringify(labels)} matches ${hits.length} samples`);
  return hits[0]?.value;
}

const fresh = () => createMetrics({ collectDefault: false, version: '9.9.9-test' });

describe('createMetrics', () => {
  it('adds what a login counts between scrapes once, scrape after scrape', async () => {
    const m = fresh();
    m.connectionResult('accepted');
    m.connectionResult('accepted');
    m.authAttempt('jwt', 'success');
    m.relaySession('native');
    m.connectionOpened();
    m.setLoginsPending(3);
    let s = await scrape(m);
    assert.equal(value(s, 'pgward_connections_total', { result: 'accepted' }), 2);
    assert.equal(value(s, 'pgward_auth_attempts_total', { provider: 'jwt', result: 'success' }), 1);
    assert.equal(value(s, 'pgward_relay_sessions_total', { relay: 'native' }), 1);
    assert.equal(value(s, 'pgward_connections_active'), 1);
    assert.equal(value(s, 'pgward_logins_pending'), 3);
    s = await scrape(m);
    assert.equal(value(s, 'pgward_connections_total', { result: 'accepted' }), 2, 'not published twice');
    m.connectionResult('accepted');
    m.authAttempt('jwt', 'success');
    m.connectionClosed();
    m.setLoginsPending(0);
    s = await scrape(m);
    assert.equal(value(s, 'pgward_connections_total', { result: 'accepted' }), 3);
    assert.equal(value(s, 'pgward_auth_attempts_total', { provider: 'jwt', result: 'success' }), 2);
    assert.equal(value(s, 'pgward_connections_active'), 0);
    assert.equal(value(s, 'pgward_logins_pending'), 0);
  });

  it('gives each call its own registry, so two sets never collide', async () => {
    const a = fresh();
    const b = fresh();
    assert.notEqual(a.registry, b.registry);
    a.connectionOpened();
    assert.equal(value(await scrape(a), 'pgward_connections_active'), 1);
    assert.equal(value(await scrape(b), 'pgward_connections_active'), 0);
  });

  it('starts with the fixed series at zero and build info at 1', async () => {
    const s = await scrape(fresh());
    assert.equal(value(s, 'pgward_build_info', { version: '9.9.9-test' }), 1);
    assert.equal(value(s, 'pgward_draining'), 0);
    for (const result of ['accepted', 'refused', 'failed']) assert.equal(value(s, 'pgward_connections_total', { result }), 0);
    for (const result of ['ok', 'error']) {
      assert.equal(value(s, 'pgward_queries_total', { result }), 0);
      assert.equal(value(s, 'pgward_config_reloads_total', { result }), 0);
    }
    for (const direction of ['client_to_backend', 'backend_to_client']) assert.equal(value(s, 'pgward_bytes_total', { direction }), 0);
    // Only what was asked for: no process metrics unless collectDefault.
    assert.ok(!s.some((x) => x.name.startsWith('pgward_process_') || x.name.startsWith('pgward_nodejs_')));
  });

  it('moves the values with the events', async () => {
    const m = fresh();
    m.connectionOpened();
    m.connectionOpened();
    m.connectionOpened();
    m.connectionClosed();
    m.connectionResult('accepted');
    m.connectionResult('accepted');
    m.connectionResult('refused');
    m.authAttempt('jwt', 'success');
    m.authAttempt('jwt', 'failure', 'token expired');
    m.authAttempt('jwt', 'failure', 'token expired');
    m.authAttempt('command', 'error', 'authenticator_failed');
    m.backendConnected(0.003);
    m.backendConnected(2);
    m.query(0.0004, true);
    m.query(0.2, true);
    m.query(7, false);
    // One finished session and one still running: both count.
    m.trackBytes({ bytesToBackend: 100, bytesToClient: 0 })();
    const live = { bytesToBackend: 23, bytesToClient: 4096 };
    const doneLive = m.trackBytes(live);
    m.configReload(true);
    m.configReload(false);
    m.setDraining(true);
    m.pluginError('proxy-login');

    const s = await scrape(m);
    assert.equal(value(s, 'pgward_connections_active'), 2);
    assert.equal(value(s, 'pgward_connections_total', { result: 'accepted' }), 2);
    assert.equal(value(s, 'pgward_connections_total', { result: 'refused' }), 1);
    assert.equal(value(s, 'pgward_auth_attempts_total', { provider: 'jwt', result: 'success', reason: 'none' }), 1);
    assert.equal(value(s, 'pgward_auth_attempts_total', { provider: 'jwt', result: 'failure', reason: 'token_expired' }), 2);
    assert.equal(value(s, 'pgward_auth_attempts_total', { provider: 'command', result: 'error', reason: 'authenticator_failed' }), 1);
    assert.equal(value(s, 'pgward_backend_connect_seconds_count'), 2);
    assert.equal(value(s, 'pgward_backend_connect_seconds_sum'), 2.003);
    assert.equal(value(s, 'pgward_backend_connect_seconds_bucket', { le: '0.005' }), 1);
    assert.equal(value(s, 'pgward_backend_connect_seconds_bucket', { le: '5' }), 2);
    assert.equal(value(s, 'pgward_queries_total', { result: 'ok' }), 2);
    assert.equal(value(s, 'pgward_queries_total', { result: 'error' }), 1);
    assert.equal(value(s, 'pgward_query_duration_seconds_count'), 3);
    assert.equal(value(s, 'pgward_query_duration_seconds_bucket', { le: '0.001' }), 1);
    assert.equal(value(s, 'pgward_query_duration_seconds_bucket', { le: '5' }), 2);
    assert.equal(value(s, 'pgward_query_duration_seconds_bucket', { le: '+Inf' }), 3);
    assert.equal(value(s, 'pgward_bytes_total', { direction: 'client_to_backend' }), 123);
    assert.equal(value(s, 'pgward_bytes_total', { direction: 'backend_to_client' }), 4096);
    assert.equal(value(s, 'pgward_config_reloads_total', { result: 'ok' }), 1);
    assert.equal(value(s, 'pgward_config_reloads_total', { result: 'error' }), 1);
    assert.equal(value(s, 'pgward_draining'), 1);
    assert.equal(value(s, 'pgward_plugin_errors_total', { plugin: 'proxy-login' }), 1);

    // A live session's growth shows at the next scrape, its end adds only what is new, nonsense
    // counts never make the counter go back; draining goes back to 0.
    live.bytesToBackend = 30;
    m.setDraining(false);
    m.query(0.001, true);
    const t = await scrape(m);
    assert.equal(value(t, 'pgward_bytes_total', { direction: 'client_to_backend' }), 130);
    // Statements counted between scrapes are added once, not again at every scrape.
    assert.equal(value(t, 'pgward_queries_total', { result: 'ok' }), 3);
    assert.equal(value(t, 'pgward_queries_total', { result: 'error' }), 1);
    assert.equal(value(await scrape(m), 'pgward_queries_total', { result: 'ok' }), 3);
    assert.equal(value(t, 'pgward_draining'), 0);
    live.bytesToClient = 5000;
    doneLive();
    doneLive();
    live.bytesToClient = 9999;
    m.trackBytes({ bytesToBackend: Number.NaN, bytesToClient: -5 })();
    const u = await scrape(m);
    assert.equal(value(u, 'pgward_bytes_total', { direction: 'backend_to_client' }), 5000);
    assert.equal(value(u, 'pgward_bytes_total', { direction: 'client_to_backend' }), 130);
  });

  it('uses the OpenTelemetry database buckets for both histograms', async () => {
    const s = await scrape(fresh());
    for (const name of ['pgward_backend_connect_seconds_bucket', 'pgward_query_duration_seconds_bucket']) {
      const les = s.filter((x) => x.name === name).map((x) => x.labels.le);
      assert.deepEqual(les, [...DURATION_BUCKETS.map(String), '+Inf']);
    }
  });

  it('keeps label sets bounded: no secret, user name or query text ever becomes a label value', async () => {
    const m = fresh();
    const token = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl';
    for (let i = 0; i < 500; i++) {
      m.authAttempt(`provider ${i} ${token}`, 'failure', `bad token ${token} #${i}`);
      m.authAttempt('jwt', 'failure', `SELECT * FROM users WHERE name = 'alice${i}'`);
      m.pluginError(`plugin/${i}/${token}`);
      m.connectionResult(`weird-${i}` as never);
      m.authAttempt('jwt', `maybe-${i}` as never, 'token expired');
    }
    const text = await m.registry.metrics();
    assert.ok(!text.includes(token));
    assert.ok(!text.includes('alice'));
    assert.ok(!text.includes('SELECT'));
    const s = parseExposition(text);
    const auth = s.filter((x) => x.name === 'pgward_auth_attempts_total');
    assert.deepEqual(
      auth.map((x) => x.labels).sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))),
      [
        { provider: 'jwt', result: 'error', reason: 'token_expired' },
        { provider: 'jwt', result: 'failure', reason: 'other' },
        { provider: 'other', result: 'failure', reason: 'other' },
      ],
    );
    for (const x of auth) assert.ok((AUTH_REASONS as readonly string[]).includes(x.labels.reason as string));
    assert.deepEqual(
      s.filter((x) => x.name === 'pgward_plugin_errors_total').map((x) => [x.labels.plugin, x.value]),
      [['other', 500]],
    );
    assert.equal(value(s, 'pgward_connections_total', { result: 'other' }), 500);
  });

  it('adds the Node process metrics with the pgward_ prefix when asked', async () => {
    const s = await scrape(createMetrics({ collectDefault: true }));
    assert.ok(value(s, 'pgward_process_cpu_user_seconds_total') !== undefined);
    assert.ok(s.some((x) => x.name === 'pgward_nodejs_heap_size_total_bytes'));
    const info = s.find((x) => x.name === 'pgward_build_info');
    assert.match(info?.labels.version ?? '', /^\d+\.\d+\.\d+/, 'build info carries the package version');
  });
});

describe('startMetricsServer', () => {
  it('serves /metrics, /vars, /health and /ready over HTTP', async () => {
    const metrics = fresh();
    metrics.connectionOpened();
    metrics.trackBytes({ bytesToClient: 42, bytesToBackend: 0 });
    let ready = false;
    const server = await startMetricsServer({ host: '127.0.0.1', port: 0, metrics, ready: () => ready });
    try {
      assert.equal(server.address.address, '127.0.0.1');
      assert.ok(server.address.port > 0);
      const url = (path: string) => `http://127.0.0.1:${server.address.port}${path}`;

      const res = await fetch(url('/metrics'));
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
      const body = await res.text();
      const s = parseExposition(body);
      assert.equal(value(s, 'pgward_connections_active'), 1);
      assert.equal(value(s, 'pgward_bytes_total', { direction: 'backend_to_client' }), 42);

      const vars = await fetch(url('/vars?format=text'));
      assert.equal(vars.status, 200);
      assert.equal(vars.headers.get('content-type'), res.headers.get('content-type'));
      assert.equal(await vars.text(), body);

      const health = await fetch(url('/health'));
      assert.equal(health.status, 200);
      assert.equal((await health.text()).trim(), 'ok');

      const notReady = await fetch(url('/ready'));
      assert.equal(notReady.status, 503);
      await notReady.text();
      ready = true;
      const isReady = await fetch(url('/ready'));
      assert.equal(isReady.status, 200);
      await isReady.text();

      const head = await fetch(url('/metrics'), { method: 'HEAD' });
      assert.equal(head.status, 200);
      assert.ok(Number(head.headers.get('content-length')) > 0);
      assert.equal(await head.text(), '');

      const missing = await fetch(url('/nope'));
      assert.equal(missing.status, 404);
      await missing.text();

      const post = await fetch(url('/metrics'), { method: 'POST', body: 'x' });
      assert.equal(post.status, 405);
      assert.equal(post.headers.get('allow'), 'GET, HEAD');
      await post.text();
    } finally {
      await server.close();
    }
  });

  it('rejects when the address is taken and closes idempotently', async () => {
    const metrics = fresh();
    const first = await startMetricsServer({ host: '127.0.0.1', port: 0, metrics, ready: () => true });
    try {
      await assert.rejects(
        startMetricsServer({ host: '127.0.0.1', port: first.address.port, metrics, ready: () => true }),
        (err: NodeJS.ErrnoException) => err.code === 'EADDRINUSE',
      );
    } finally {
      await first.close();
      await first.close();
    }
  });
});
