import assert from 'node:assert/strict';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { statementSummary } from '../../src/telemetry/statement-name.js';
import { parseTraceparent, stripTraceparentOption, traceparentFromStartup } from '../../src/telemetry/traceparent.js';
import {
  ATTR,
  SPAN,
  normalizeAuthReason,
  startSessionSpan,
} from '../../src/telemetry/spans.js';
import { startTracing, tracingRequested } from '../../src/telemetry/tracing.js';

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT_ID = '00f067aa0ba902b7';
const TRACEPARENT = `00-${TRACE_ID}-${PARENT_ID}-01`;
const TOKEN = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6MX0.c2VjcmV0LXNpZ25hdHVyZQ';
const LITERAL = 'hunter2-literal';
const CLIENT = { address: '192.0.2.10', port: 51234 };

describe('parseTraceparent', () => {
  it('accepts the W3C format and returns a remote span context', () => {
    assert.deepEqual(parseTraceparent(TRACEPARENT), { traceId: TRACE_ID, spanId: PARENT_ID, traceFlags: 1, isRemote: true });
    assert.equal(parseTraceparent(`00-${TRACE_ID}-${PARENT_ID}-00`)?.traceFlags, 0);
    // A later version may carry more fields after the flags.
    assert.equal(parseTraceparent(`01-${TRACE_ID}-${PARENT_ID}-01-extra`)?.traceId, TRACE_ID);
  });

  it('refuses everything else', () => {
    for (const bad of [
      undefined,
      '',
      'garbage',
      TRACEPARENT.toUpperCase(),
      `ff-${TRACE_ID}-${PARENT_ID}-01`,
      `00-${'0'.repeat(32)}-${PARENT_ID}-01`,
      `00-${TRACE_ID}-${'0'.repeat(16)}-01`,
      `00-${TRACE_ID}-${PARENT_ID}-01-extra`,
      `00-${TRACE_ID.slice(1)}-${PARENT_ID}-01`,
      `00-${TRACE_ID}-${PARENT_ID}-1`,
      `0g-${TRACE_ID}-${PARENT_ID}-01`,
    ]) {
      assert.equal(parseTraceparent(bad), undefined, String(bad));
    }
  });
});

describe('traceparentFromStartup', () => {
  const params = (o: Record<string, string>) => new Map(Object.entries(o));

  it('finds it in options (-c, -cname, --name, escapes) and application_name', () => {
    assert.equal(traceparentFromStartup(params({ options: `-c pgward.traceparent=${TRACEPARENT}` })), TRACEPARENT);
    assert.equal(traceparentFromStartup(params({ options: `-cpgward.traceparent=${TRACEPARENT}` })), TRACEPARENT);
    assert.equal(traceparentFromStartup(params({ options: `-c search_path=a\\ b --pgward.traceparent=${TRACEPARENT} -c x=y` })), TRACEPARENT);
    assert.equal(traceparentFromStartup(params({ options: `-c PGWARD.TRACEPARENT=${TRACEPARENT}` })), TRACEPARENT);
    assert.equal(traceparentFromStartup(params({ application_name: TRACEPARENT })), TRACEPARENT);
    assert.equal(traceparentFromStartup(params({ application_name: `app tp=${TRACEPARENT}` })), TRACEPARENT);
  });

  it('prefers options, skips invalid values, and finds nothing elsewhere', () => {
    const other = `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01`;
    assert.equal(traceparentFromStartup(params({ options: `-c pgward.traceparent=${TRACEPARENT}`, application_name: other })), TRACEPARENT);
    assert.equal(traceparentFromStartup(params({ options: '-c pgward.traceparent=nope', application_name: other })), other);
    assert.equal(traceparentFromStartup(params({ options: `-c other.traceparent=${TRACEPARENT}` })), undefined);
    assert.equal(traceparentFromStartup(params({ application_name: 'psql' })), undefined);
    assert.equal(traceparentFromStartup(params({ user: TRACEPARENT })), undefined);
  });

  it('strips the setting from options for the backend', () => {
    assert.equal(stripTraceparentOption(`-c pgward.traceparent=${TRACEPARENT}`), undefined);
    assert.equal(stripTraceparentOption(`-c search_path=a\\ b -c pgward.traceparent=${TRACEPARENT} --x=y`), '-c search_path=a\\ b --x=y');
    assert.equal(stripTraceparentOption('-c geqo=off'), '-c geqo=off');
  });
});

describe('statementSummary', () => {
  it('names statements after their operation and plain target, never a literal', () => {
    assert.deepEqual(statementSummary('SELECT 1'), { operation: 'SELECT', summary: 'SELECT' });
    assert.deepEqual(statementSummary('insert into orders (id) values ($1)'), { operation: 'INSERT', collection: 'orders', summary: 'INSERT orders' });
    assert.equal(statementSummary('SELECT a FROM public.orders o WHERE x = $1').summary, 'SELECT public.orders');
    assert.equal(statementSummary('SELECT (SELECT max(x) FROM inner_t) FROM outer_t').summary, 'SELECT outer_t');
    assert.equal(statementSummary('UPDATE ONLY accounts SET n = $1').summary, 'UPDATE accounts');
    assert.equal(statementSummary('DELETE FROM "Weird Name" WHERE true').summary, 'DELETE "Weird Name"');
    assert.equal(statementSummary('  -- comment\n/* c */ begin').summary, 'BEGIN');
    assert.equal(statementSummary("SELECT 'x FROM secret_table' FROM t").summary, 'SELECT t');
    assert.equal(statementSummary("SELECT E'it\\'s FROM leak' FROM t").summary, 'SELECT t');
    assert.equal(statementSummary('SELECT $tag$ FROM leak $tag$ FROM t').summary, 'SELECT t');
    assert.equal(statementSummary(`SELECT proxy_login('${TOKEN}')`).summary, 'SELECT');
    assert.equal(statementSummary('SELECT * FROM (VALUES (1)) v').summary, 'SELECT');
    assert.equal(statementSummary('COPY t FROM STDIN', 'copy').summary, 'COPY');
    assert.deepEqual(statementSummary(''), {});
    assert.deepEqual(statementSummary('$1'), {});
  });
});

describe('normalizeAuthReason', () => {
  it('maps the jwt sentences and refuses free text', () => {
    assert.equal(normalizeAuthReason('token expired'), 'token_expired');
    assert.equal(normalizeAuthReason('Signature-Invalid'), 'signature_invalid');
    assert.equal(normalizeAuthReason(undefined), 'none');
    assert.equal(normalizeAuthReason(`bad ${TOKEN}`), 'other');
  });
});

describe('with no tracer provider registered', () => {
  it('is a no-op: nothing records, every handle is inert', () => {
    assert.equal(tracingRequested({}), false);
    assert.equal(startTracing({}), undefined);
    const session = startSessionSpan(CLIENT, TRACEPARENT);
    assert.equal(session.recording, false);
    assert.equal(trace.getSpan(session.context), undefined);
    const a = session.auth('jwt');
    const b = session.statement('SELECT 1');
    assert.equal(a, session.backendConnect('db', 5432), 'shared no-op handles');
    assert.equal(b, session.statement('SELECT 2'));
    a.end({ result: 'success' });
    b.end({ sqlstate: '00000' });
    session.identify({ identity: 'alice', database: 'app' });
    session.end(new Error('x'));
  });
});

describe('startTracing', () => {
  it('stays off unless an endpoint or a traces exporter is set', () => {
    assert.equal(tracingRequested({ OTEL_SERVICE_NAME: 'x', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' }), false);
    assert.equal(tracingRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' }), true);
    assert.equal(tracingRequested({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://c:4318/v1/traces' }), true);
    assert.equal(tracingRequested({ OTEL_TRACES_EXPORTER: 'console' }), true);
    assert.equal(tracingRequested({ OTEL_TRACES_EXPORTER: 'none' }), false);
    assert.equal(tracingRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_TRACES_EXPORTER: 'none' }), false);
    assert.equal(tracingRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_SDK_DISABLED: 'true' }), false);
    assert.equal(tracingRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: '  ' }), false);
    assert.equal(startTracing({ OTEL_TRACES_EXPORTER: 'none' }), undefined);
    assert.equal(trace.getTracer('t').startSpan('s').isRecording(), false, 'no provider was registered');
  });

  it('exports session spans over OTLP/HTTP from the OTEL_* variables, and only traces', async () => {
    const requests: { path: string; body: unknown }[] = [];
    const receiver = createServer(async (req: IncomingMessage, res) => {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      let raw = Buffer.concat(chunks);
      if (req.headers['content-encoding'] === 'gzip') raw = gunzipSync(raw);
      requests.push({ path: req.url ?? '', body: JSON.parse(raw.toString('utf8')) });
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    const before = { ...process.env };
    try {
      const env = {
        OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`,
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
        OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=test',
      };
      const tracing = startTracing(env);
      assert.ok(tracing);
      assert.deepEqual({ ...process.env }, before, 'process.env is left as it was');

      const session = startSessionSpan(CLIENT, TRACEPARENT);
      assert.equal(session.recording, true);
      session.statement('SELECT 1').end();
      session.end();
      await tracing.forceFlush();

      const spans = requests
        .filter((r) => r.path === '/v1/traces')
        .flatMap((r) => (r.body as Otlp).resourceSpans.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans.map((s) => ({ ...s, resource: rs.resource })))));
      assert.deepEqual(spans.map((s) => s.name).sort(), ['SELECT', SPAN.session]);
      const session0 = spans.find((s) => s.name === SPAN.session)!;
      assert.equal(session0.traceId.toLowerCase(), TRACE_ID);
      assert.equal(session0.parentSpanId.toLowerCase(), PARENT_ID);
      const resource = Object.fromEntries(session0.resource.attributes.map((a) => [a.key, a.value.stringValue]));
      assert.equal(resource['service.name'], 'pgward');
      assert.equal(resource['deployment.environment.name'], 'test');
      assert.deepEqual(
        requests.map((r) => r.path).filter((p) => p !== '/v1/traces'),
        [],
        'no metrics or logs exported by the SDK',
      );

      await tracing.shutdown();
      await tracing.shutdown();
      assert.equal(trace.getTracer('t').startSpan('s').isRecording(), false, 'unregistered after shutdown');
    } finally {
      await new Promise((r) => receiver.close(r));
    }
  });
});

interface Otlp {
  resourceSpans: {
    resource: { attributes: { key: string; value: { stringValue?: string } }[] };
    scopeSpans: { spans: { name: string; traceId: string; spanId: string; parentSpanId: string }[] }[];
  }[];
}

describe('session spans with an SDK registered', () => {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  before(() => {
    assert.ok(trace.setGlobalTracerProvider(provider));
  });
  after(async () => {
    await provider.shutdown();
    trace.disable();
  });
  beforeEach(() => exporter.reset());

  const byName = (name: string): ReadableSpan => {
    const hits = exporter.getFinishedSpans().filter((s) => s.name === name);
    assert.equal(hits.length, 1, `one span named ${name}`);
    return hits[0] as ReadableSpan;
  };

  it('nests auth, backend connect and statements under the session, with the conventions’ attributes', () => {
    const session = startSessionSpan(CLIENT);
    assert.equal(session.recording, true);

    const auth = session.auth('jwt');
    auth.end({ result: 'success' });
    session.identify({ identity: 'alice@example.com', database: 'shop' });
    const connect = session.backendConnect('db.internal', 5433, { tls: true });
    connect.end({ authMethod: 'scram-sha-256' });
    session.statement('SELECT 1').end({ sqlstate: '00000', rows: 1 });
    session.statement('INSERT INTO orders (id, note) VALUES ($1, $2)').end({ rows: 1 });
    const failing = session.statement('SELECT * FROM missing_table');
    failing.end({ sqlstate: '42P01' });
    failing.end({ sqlstate: '00000' });
    session.end();
    session.end();

    const spans = exporter.getFinishedSpans();
    assert.equal(spans.length, 6, spans.map((s) => s.name).join(', '));
    const root = byName(SPAN.session);
    assert.equal(root.kind, SpanKind.SERVER);
    assert.equal(root.parentSpanContext, undefined);
    for (const s of spans.filter((x) => x !== root)) {
      assert.equal(s.spanContext().traceId, root.spanContext().traceId);
      assert.equal(s.parentSpanContext?.spanId, root.spanContext().spanId, `${s.name} is a child of the session`);
    }
    assert.deepEqual(root.attributes, {
      [ATTR.dbSystemName]: 'postgresql',
      [ATTR.clientAddress]: CLIENT.address,
      [ATTR.clientPort]: CLIENT.port,
      [ATTR.enduserId]: 'alice@example.com',
      [ATTR.dbNamespace]: 'shop',
      [ATTR.serverAddress]: 'db.internal',
      [ATTR.serverPort]: 5433,
    });

    const a = byName(SPAN.auth);
    assert.equal(a.kind, SpanKind.INTERNAL);
    assert.deepEqual(a.attributes, { [ATTR.authProvider]: 'jwt', [ATTR.authResult]: 'success', [ATTR.authReason]: 'none' });
    assert.equal(a.status.code, SpanStatusCode.UNSET);

    const c = byName(SPAN.backendConnect);
    assert.equal(c.kind, SpanKind.CLIENT);
    assert.deepEqual(c.attributes, {
      [ATTR.serverAddress]: 'db.internal',
      [ATTR.serverPort]: 5433,
      [ATTR.backendTls]: true,
      [ATTR.backendAuthMethod]: 'scram-sha-256',
    });

    const select = spans.find((s) => s.name === 'SELECT') as ReadableSpan;
    assert.equal(select.kind, SpanKind.CLIENT);
    assert.deepEqual(select.attributes, {
      [ATTR.dbSystemName]: 'postgresql',
      [ATTR.clientAddress]: CLIENT.address,
      [ATTR.clientPort]: CLIENT.port,
      [ATTR.enduserId]: 'alice@example.com',
      [ATTR.dbNamespace]: 'shop',
      [ATTR.serverAddress]: 'db.internal',
      [ATTR.serverPort]: 5433,
      [ATTR.dbQueryText]: 'SELECT 1',
      [ATTR.dbOperationName]: 'SELECT',
      [ATTR.dbQuerySummary]: 'SELECT',
      [ATTR.dbResponseReturnedRows]: 1,
    });
    assert.equal(select.status.code, SpanStatusCode.UNSET);

    const insert = byName('INSERT orders');
    assert.equal(insert.attributes[ATTR.dbCollectionName], 'orders');
    assert.equal(insert.attributes[ATTR.dbOperationName], 'INSERT');

    const missing = byName('SELECT missing_table');
    assert.equal(missing.attributes[ATTR.dbResponseStatusCode], '42P01');
    assert.equal(missing.attributes[ATTR.errorType], '42P01');
    assert.equal(missing.status.code, SpanStatusCode.ERROR);
  });

  it('records failures as error status, and never a token or a literal in any name or attribute', () => {
    const session = startSessionSpan(CLIENT);
    // A provider name or reason carrying a secret is bounded away.
    session.auth(`jwt ${TOKEN}`).end({ result: 'failure', reason: `token expired: ${TOKEN}` });
    session.auth('jwt').end({ result: 'failure', reason: 'token expired' });
    const connect = session.backendConnect('db', 5432);
    connect.end({ error: Object.assign(new Error('connection refused'), { sqlstate: '08001' }) });
    // The session passes redacted SQL; naming reads no literal even from text that still has one.
    session.statement(`SELECT proxy_login('${TOKEN}')`, 'SELECT').end({ error: new Error('connection lost') });
    session.statement(`SELECT * FROM t WHERE secret = '${LITERAL}'`.replace(`'${LITERAL}'`, '$1')).end();
    session.end(Object.assign(new Error('backend closed the connection'), { sqlstate: '57P01' }));

    const spans = exporter.getFinishedSpans();
    assert.equal(spans.length, 6);
    const auths = spans.filter((s) => s.name === SPAN.auth);
    assert.deepEqual(
      auths.map((s) => [s.attributes[ATTR.authProvider], s.attributes[ATTR.authResult], s.attributes[ATTR.authReason], s.status.code]),
      [
        ['other', 'failure', 'other', SpanStatusCode.ERROR],
        ['jwt', 'failure', 'token_expired', SpanStatusCode.ERROR],
      ],
    );
    const c = byName(SPAN.backendConnect);
    assert.equal(c.status.code, SpanStatusCode.ERROR);
    assert.equal(c.attributes[ATTR.errorType], '08001');
    assert.equal(c.attributes[ATTR.dbResponseStatusCode], '08001');
    const root = byName(SPAN.session);
    assert.equal(root.status.code, SpanStatusCode.ERROR);
    assert.equal(root.attributes[ATTR.dbResponseStatusCode], '57P01');
    const lost = spans.find((s) => s.name === 'SELECT' && s.status.code === SpanStatusCode.ERROR);
    assert.equal(lost?.attributes[ATTR.errorType], 'Error');

    for (const s of spans) {
      const text = JSON.stringify([s.name, s.attributes, s.status, s.events]);
      // The only place SQL text goes is db.query.text, which the caller redacts; here one test
      // statement deliberately still holds the token, so look everywhere else.
      const { [ATTR.dbQueryText]: _query, ...rest } = s.attributes;
      assert.ok(!JSON.stringify([s.name, rest, s.status, s.events]).includes(TOKEN), `token in ${text}`);
      assert.ok(!text.includes(LITERAL), `literal in ${text}`);
      assert.ok(!JSON.stringify([s.name, rest]).includes('proxy_login'), `SQL outside db.query.text in ${text}`);
    }
  });

  it('joins the trace of a valid traceparent, and records nothing for an unsampled one', () => {
    const joined = startSessionSpan(CLIENT, TRACEPARENT);
    joined.statement('SELECT 1').end();
    joined.end();
    const root = byName(SPAN.session);
    assert.equal(root.spanContext().traceId, TRACE_ID);
    assert.equal(root.parentSpanContext?.spanId, PARENT_ID);
    assert.equal(root.parentSpanContext?.isRemote, true);
    assert.equal(byName('SELECT').spanContext().traceId, TRACE_ID);

    exporter.reset();
    const invalid = startSessionSpan(CLIENT, 'not-a-traceparent');
    invalid.end();
    const fresh = byName(SPAN.session);
    assert.notEqual(fresh.spanContext().traceId, TRACE_ID);
    assert.equal(fresh.parentSpanContext, undefined);

    exporter.reset();
    const unsampled = startSessionSpan(CLIENT, `00-${TRACE_ID}-${PARENT_ID}-00`);
    assert.equal(unsampled.recording, false);
    unsampled.statement('SELECT 1').end();
    unsampled.end();
    assert.equal(exporter.getFinishedSpans().length, 0);
  });

  it('dates the session from the accept when started later', () => {
    const acceptedAt = Date.now() - 5_000;
    startSessionSpan(CLIENT, undefined, acceptedAt).end();
    const root = byName(SPAN.session);
    const startMs = root.startTime[0] * 1000 + root.startTime[1] / 1e6;
    assert.ok(Math.abs(startMs - acceptedAt) < 5, `${startMs} vs ${acceptedAt}`);
  });
});
