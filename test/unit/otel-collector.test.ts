import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parse, parseDocument } from 'yaml';

// dist/test/unit/ → the repository root, where the collector config lives.
const PATH = new URL('../../../otel-collector.yaml', import.meta.url);

interface CollectorConfig {
  receivers: { otlp: { protocols: { grpc: { endpoint: string }; http: { endpoint: string } } } };
  processors: Record<string, unknown>;
  exporters: Record<string, { endpoint: string; tls?: { insecure?: boolean } }>;
  service: { pipelines: Record<string, { receivers: string[]; processors: string[]; exporters: string[] }> };
}

describe('otel-collector.yaml', () => {
  const text = readFileSync(PATH, 'utf8');
  const config = parse(text) as CollectorConfig;

  it('is one valid YAML document', () => {
    const doc = parseDocument(text);
    assert.deepEqual(doc.errors, []);
    assert.deepEqual(doc.warnings, []);
  });

  it('receives OTLP over gRPC on 4317 and HTTP on 4318', () => {
    assert.deepEqual(Object.keys(config.receivers), ['otlp']);
    assert.match(config.receivers.otlp.protocols.grpc.endpoint, /:4317$/);
    assert.match(config.receivers.otlp.protocols.http.endpoint, /:4318$/);
  });

  it('has memory_limiter and batch processors', () => {
    assert.deepEqual(Object.keys(config.processors).sort(), ['batch', 'memory_limiter']);
    const limiter = config.processors.memory_limiter as Record<string, unknown>;
    assert.ok(limiter.check_interval, 'memory_limiter needs check_interval');
    assert.ok(limiter.limit_mib !== undefined || limiter.limit_percentage !== undefined, 'memory_limiter needs a limit');
  });

  it('exports OTLP to Jaeger and Tempo', () => {
    assert.deepEqual(config.exporters, {
      'otlp/jaeger': { endpoint: 'jaeger:4317', tls: { insecure: true } },
      'otlp/tempo': { endpoint: 'tempo:4317', tls: { insecure: true } },
    });
  });

  it('wires a traces pipeline: otlp → memory_limiter, batch → both exporters', () => {
    assert.deepEqual(Object.keys(config.service.pipelines), ['traces']);
    const traces = config.service.pipelines.traces!;
    assert.deepEqual(traces.receivers, ['otlp']);
    assert.deepEqual(traces.processors, ['memory_limiter', 'batch'], 'memory_limiter must come first');
    assert.deepEqual([...traces.exporters].sort(), ['otlp/jaeger', 'otlp/tempo']);
    // Everything a pipeline names is defined.
    for (const r of traces.receivers) assert.ok(r in config.receivers, r);
    for (const p of traces.processors) assert.ok(p in config.processors, p);
    for (const e of traces.exporters) assert.ok(e in config.exporters, e);
  });

  it('comments each top-level section', () => {
    const lines = text.split('\n');
    for (const section of ['receivers:', 'processors:', 'exporters:', 'service:']) {
      const i = lines.indexOf(section);
      assert.ok(i > 0, `${section} at the top level`);
      assert.match(lines[i - 1] ?? '', /^#/, `a comment right above ${section}`);
    }
  });
});
