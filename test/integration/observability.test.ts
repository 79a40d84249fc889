import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { exportSPKI, generateKeyPair, SignJWT } from 'jose';
import { parse as parseYaml } from 'yaml';
import pg from 'pg';
import { PgCluster } from '../helpers/pg-cluster.js';
import { startPgwardProcess } from '../helpers/pgward-process.js';
import { metricValue } from '../helpers/scrape.js';

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  attributes?: { key: string; value: Record<string, unknown> }[];
  status?: { code?: number };
}

/** A minimal OTLP/HTTP JSON receiver: collects every span it is sent. */
async function otlpReceiver() {
  const spans: OtlpSpan[] = [];
  const bodies: string[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      if (req.url === '/v1/traces') {
        bodies.push(body);
        const doc = JSON.parse(body) as { resourceSpans?: { scopeSpans?: { spans?: OtlpSpan[] }[] }[] };
        for (const rs of doc.resourceSpans ?? []) for (const ss of rs.scopeSpans ?? []) spans.push(...(ss.spans ?? []));
      }
      res.setHeader('content-type', 'application/json');
      res.end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { spans, bodies, port: (server.address() as AddressInfo).port, close: () => server.close() };
}

const attr = (s: OtlpSpan, key: string) => {
  const v = s.attributes?.find((a) => a.key === key)?.value;
  return v ? (v.stringValue ?? v.intValue ?? v.boolValue) : undefined;
};

describe('observability end to end (a real pgward process)', () => {
  it('scrapes metrics that move, flips /ready during drain, and exports nested spans without secrets', async () => {
    await using cluster = await PgCluster.start({ hba: ['host all all 127.0.0.1/32 scram-sha-256'], users: [{ name: 'alice', password: 'a-pw' }] });
    const otlp = await otlpReceiver();
    const dir = await mkdtemp(join(tmpdir(), 'pgward-obs-'));
    try {
      const key = await generateKeyPair('EdDSA', { extractable: true });
      await writeFile(join(dir, 'key.pem'), await exportSPKI(key.publicKey));
      await writeFile(join(dir, 'b.json'), JSON.stringify({ alice: `${cluster.url('alice', 'a-pw')}?sslmode=disable` }));
      await writeFile(join(dir, 'c.yaml'), 'pipeline:\n  - drain-gate\n  - query-log\n');
      await using proxy = await startPgwardProcess(
        ['--insecure', '--config', join(dir, 'c.yaml'), '--backends', join(dir, 'b.json'), '--signingKeys', join(dir, 'key.pem'), '--metricsAddr', '127.0.0.1:0', '--gracePeriod', '10s'],
        { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${otlp.port}`, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_BSP_SCHEDULE_DELAY: '200', OTEL_SERVICE_NAME: 'pgward-test' },
      );
      const listening = await proxy.waitFor('pgward listening');
      assert.equal(listening.tracing, 'on');
      const metricsUrl = String(listening.metrics);
      const base = metricsUrl.replace(/\/metrics$/, '');
      const get = async (path: string) => {
        const r = await fetch(base + path);
        return { status: r.status, text: await r.text() };
      };
      assert.equal((await get('/health')).status, 200);
      assert.equal((await get('/ready')).status, 200);

      const token = await new SignJWT({ sub: 'alice' }).setProtectedHeader({ alg: 'EdDSA' }).setIssuedAt().setExpirationTime('5m').sign(key.privateKey);
      const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
      const url = `postgres://alice:${token}@127.0.0.1:${proxy.port}/postgres?sslmode=disable`;
      const client = new pg.Client({ connectionString: url, options: `-c pgward.traceparent=00-${traceId}-00f067aa0ba902b7-01` } as pg.ClientConfig);
      client.on('error', () => {}); // the drain below ends this session on purpose
      await client.connect();
      await client.query("select 'secret-literal-42' as s");
      await assert.rejects(client.query('select * from missing_table'));
      const bad = new pg.Client({ connectionString: `postgres://alice:not-a-token@127.0.0.1:${proxy.port}/postgres?sslmode=disable` });
      await assert.rejects(bad.connect());

      // The refused connection leaves the gauge when pgward sees its socket close, a moment after
      // the client has its error; poll briefly rather than race it.
      let m = (await get('/metrics')).text;
      for (let i = 0; i < 50 && metricValue(m, 'pgward_connections_active') !== 1; i++) {
        await new Promise((r) => setTimeout(r, 100));
        m = (await get('/metrics')).text;
      }
      assert.equal((await get('/vars')).text.includes('pgward_queries_total'), true, '/vars serves the same metrics');
      assert.equal(metricValue(m, 'pgward_connections_total', { result: 'accepted' }), 1, 'one session reached the relay');
      assert.equal(metricValue(m, 'pgward_connections_total', { result: 'refused' }), 1, 'the bad token was refused');
      assert.equal(metricValue(m, 'pgward_connections_total', { result: 'failed' }), 0);
      assert.equal(metricValue(m, 'pgward_connections_active'), 1);
      assert.equal(metricValue(m, 'pgward_auth_attempts_total', { provider: 'jwt', result: 'success' }), 1);
      assert.equal(metricValue(m, 'pgward_auth_attempts_total', { provider: 'jwt', result: 'failure' }), 1);
      assert.ok(metricValue(m, 'pgward_queries_total') >= 2);
      // Bytes of a session still running show at each scrape, not only when it ends.
      const bytesOut = (text: string) => metricValue(text, 'pgward_bytes_total', { direction: 'backend_to_client' });
      assert.ok(bytesOut(m) > 0, "the live session's bytes to the client are counted");
      assert.ok(metricValue(m, 'pgward_bytes_total', { direction: 'client_to_backend' }) > 0, 'and its bytes to the backend');
      await client.query("select repeat('x', 10000)");
      assert.ok(bytesOut((await get('/metrics')).text) >= bytesOut(m) + 10_000, 'a 10 kB result moves the counter while the session lives');
      assert.ok(metricValue(m, 'pgward_backend_connect_seconds_count') >= 1);
      assert.equal(metricValue(m, 'pgward_build_info'), 1);
      assert.ok(metricValue(m, 'pgward_process_cpu_user_seconds_total') > 0, 'process metrics are served with --metricsAddr');
      assert.ok(m.includes('pgward_nodejs_eventloop_lag_p99_seconds'), 'and the event-loop delay');
      // Idle for a while: the lag is what the loop was late, not the 100 ms sampling interval
      // (which Node 20's monitorEventLoopDelay records as delay).
      await get('/metrics');
      await new Promise((r) => setTimeout(r, 600));
      const idle = (await get('/metrics')).text;
      for (const stat of ['min', 'p50']) {
        const lag = Number(new RegExp(`^pgward_nodejs_eventloop_lag_${stat}_seconds (\\S+)$`, 'm').exec(idle)?.[1]);
        assert.ok(lag >= 0 && lag < 0.05, `idle event-loop lag ${stat} ${lag} s is well below 0.1 s`);
      }
      // SPEC §8 names a pool's target `user@host:port/database` (the backend role, as in SHOW POOLS); nothing else carries a name.
      const [pooled, other] = partition(m.split('\n'), (line) => line.startsWith('pgward_pool_'));
      assert.ok(!other.join('\n').includes('alice') && !m.includes(token), 'no user names or tokens in metric labels');
      assert.ok(pooled.every((line) => !/alice/.test(line) || /target="alice@127\.0\.0\.1:\d+\/postgres"/.test(line)), 'the pool target label only');
      // Every metric the shipped Grafana dashboard and Prometheus alerts query is served.
      for (const [file, exprs] of dashboardAndAlertExprs()) {
        assert.ok(exprs.length > 0, `${file} has queries`);
        for (const name of new Set(exprs.flatMap((e) => e.match(/\bpgward_[a-z0-9_]+/g) ?? []))) {
          const family = name.replace(/_(bucket|sum|count)$/, '');
          assert.ok(m.includes(`# TYPE ${family} `), `${file}: ${name} is a metric pgward serves`);
        }
      }

      // Drain: a session in a transaction keeps it going while /ready reports 503.
      await client.query('begin');
      const closed = new Promise((r) => client.once('error', r));
      proxy.signal('SIGTERM');
      await proxy.waitFor('draining');
      assert.equal((await get('/ready')).status, 503);
      assert.equal((await get('/health')).status, 200);
      assert.equal(metricValue((await get('/metrics')).text, 'pgward_draining'), 1);
      await client.query('commit');
      await closed;
      assert.equal(await proxy.exited, 0);

      const spans = otlp.spans;
      const session = spans.find((s) => s.name === 'pgward.session' && s.traceId === traceId);
      assert.ok(session, `the session span joined the client's trace (${spans.map((s) => s.name).join(', ')})`);
      const children = spans.filter((s) => s.parentSpanId === session.spanId);
      const auth = children.find((s) => s.name === 'pgward.auth');
      const connect = children.find((s) => s.name === 'pgward.backend.connect');
      assert.ok(auth && connect, 'auth and backend connect are children of the session');
      assert.equal(attr(auth, 'pgward.auth.result'), 'success');
      assert.equal(attr(session, 'enduser.id'), 'alice');
      const statements = children.filter((s) => attr(s, 'db.query.text') !== undefined);
      assert.ok(statements.length >= 2, 'statement spans');
      for (const s of statements) assert.equal(attr(s, 'db.system.name'), 'postgresql');
      const failed = statements.find((s) => attr(s, 'db.response.status_code') === '42P01');
      assert.ok(failed && failed.status?.code === 2, 'a failing statement carries its SQLSTATE and error status');
      const everything = otlp.bodies.join('');
      assert.ok(!everything.includes('secret-literal-42'), 'literals are redacted in spans');
      assert.ok(!everything.includes(token), 'no token in spans');
    } finally {
      otlp.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

/** The PromQL of deploy/grafana/pgward.json's panels and deploy/prometheus/alerts.yml's rules. */
function dashboardAndAlertExprs(): [string, string[]][] {
  const root = new URL('../../../deploy/', import.meta.url);
  const dashboard = JSON.parse(readFileSync(new URL('grafana/pgward.json', root), 'utf8')) as { panels: { targets: { expr: string }[] }[] };
  const alerts = parseYaml(readFileSync(new URL('prometheus/alerts.yml', root), 'utf8')) as { groups: { rules: { alert: string; expr: string }[] }[] };
  return [
    ['grafana/pgward.json', dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr))],
    ['prometheus/alerts.yml', alerts.groups.flatMap((g) => g.rules.map((r) => r.expr))],
  ];
}

function partition<T>(items: T[], test: (item: T) => boolean): [T[], T[]] {
  return [items.filter(test), items.filter((i) => !test(i))];
}
