/**
 * OpenTelemetry tracing setup: the Node SDK, configured only by the standard `OTEL_*` variables
 * (exporter, endpoint, protocol, headers, service name, resource attributes, sampler, batch
 * settings…), and off unless one of {@link ENABLING_VARIABLES} is set.
 *
 * - Off costs nothing: the SDK is not even loaded (it is loaded synchronously, on demand), no
 *   provider is registered, and `@opentelemetry/api` stays a no-op (see spans.ts).
 * - The SDK's metrics and logs exporters default to `none` (metrics are prom-client's); set
 *   `OTEL_METRICS_EXPORTER` / `OTEL_LOGS_EXPORTER` to turn them on anyway. `service.name`
 *   defaults to `pgward`. No auto-instrumentation: pgward makes its own spans.
 * - Call `shutdown()` on exit and `forceFlush()` on drain, so spans are exported.
 */
import { createRequire } from 'node:module';
import { context, propagation, trace } from '@opentelemetry/api';
import type { NodeSDK } from '@opentelemetry/sdk-node';

/** Tracing is on when any of these is set (and not disabled, see {@link tracingRequested}). */
export const ENABLING_VARIABLES = ['OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', 'OTEL_TRACES_EXPORTER'] as const;

/** Both methods reject when the exporter fails (collector down…): log it and carry on. */
export interface Tracing {
  /** Exports every finished span now. */
  forceFlush(): Promise<void>;
  /** Flushes, stops the SDK and unregisters it from the API (a later start may register again). */
  shutdown(): Promise<void>;
}

type Env = Readonly<Record<string, string | undefined>>;

const set = (env: Env, name: string) => (env[name] ?? '').trim() !== '';

/**
 * Whether `env` asks for tracing: an OTLP endpoint or a traces exporter is set, the exporter list
 * is not just `none`, and `OTEL_SDK_DISABLED` is not `true`.
 */
export function tracingRequested(env: Env = process.env): boolean {
  if ((env.OTEL_SDK_DISABLED ?? '').trim().toLowerCase() === 'true') return false;
  const exporters = (env.OTEL_TRACES_EXPORTER ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (exporters.length > 0 && exporters.every((e) => e === 'none')) return false;
  return ENABLING_VARIABLES.some((name) => set(env, name));
}

/**
 * Starts the SDK when `env` asks for tracing, else returns undefined having done nothing.
 *
 * The SDK reads `process.env` itself; the `OTEL_*` entries of `env` (plus pgward's defaults) are
 * laid over `process.env` only while the SDK is built and started — all of its reads happen then —
 * and `process.env` is put back afterwards, so child processes see the environment unchanged.
 */
export function startTracing(env: Env = process.env): Tracing | undefined {
  if (!tracingRequested(env)) return undefined;

  const overlay: Record<string, string> = { OTEL_METRICS_EXPORTER: 'none', OTEL_LOGS_EXPORTER: 'none' };
  if (!set(env, 'OTEL_SERVICE_NAME') && !/(^|,)\s*service\.name\s*=/.test(env.OTEL_RESOURCE_ATTRIBUTES ?? '')) {
    overlay.OTEL_SERVICE_NAME = 'pgward';
  }
  for (const [name, value] of Object.entries(env)) {
    if (name.startsWith('OTEL_') && value !== undefined) overlay[name] = value;
  }

  const sdk = withEnv(overlay, () => {
    const { NodeSDK: SDK } = createRequire(import.meta.url)('@opentelemetry/sdk-node') as typeof import('@opentelemetry/sdk-node');
    const s: NodeSDK = new SDK({ instrumentations: [] });
    s.start();
    return s;
  });

  let stopped: Promise<void> | undefined;
  return {
    async forceFlush() {
      if (stopped) return;
      const provider = trace.getTracerProvider() as { getDelegate?: () => unknown };
      const delegate = (provider.getDelegate?.() ?? provider) as { forceFlush?: () => Promise<void> };
      await delegate.forceFlush?.();
    },
    shutdown() {
      stopped ??= sdk.shutdown().finally(() => {
        trace.disable();
        context.disable();
        propagation.disable();
      });
      return stopped;
    },
  };
}

function withEnv<T>(overlay: Record<string, string>, fn: () => T): T {
  const saved = new Map<string, string | undefined>();
  for (const [name, value] of Object.entries(overlay)) {
    saved.set(name, process.env[name]);
    process.env[name] = value;
  }
  try {
    return fn();
  } finally {
    for (const [name, value] of saved) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
}
