import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Gauge, type Registry } from 'prom-client';

const STATS = ['min', 'max', 'mean', 'stddev', 'p50', 'p90', 'p99'] as const;

/**
 * Replaces prom-client's event-loop delay gauges (`<prefix>nodejs_eventloop_lag_{min,max,mean,
 * stddev,p50,p90,p99}_seconds`) with ones that report lag. On Node 20 `monitorEventLoopDelay`
 * records the whole time between two ticks of its timer, so an idle process shows the sampling
 * interval itself (0.100 s at a 100 ms resolution) as delay; here the interval is subtracted (and
 * the result floored at 0), leaving the time the loop was late. `nodejs_eventloop_lag_seconds`
 * (a setImmediate round trip at scrape time) is prom-client's own and stays.
 */
export function realEventLoopLag(registry: Registry, prefix: string, resolutionMs: number): void {
  for (const s of STATS) registry.removeSingleMetric(`${prefix}nodejs_eventloop_lag_${s}_seconds`);
  const histogram = monitorEventLoopDelay({ resolution: resolutionMs });
  histogram.enable();
  const interval = resolutionMs * 1e6;
  const late = (ns: number) => (Number.isFinite(ns) ? Math.max(0, ns - interval) / 1e9 : 0);
  const gauges = new Map<(typeof STATS)[number], Gauge>();
  const read = () => {
    const values: Record<(typeof STATS)[number], number> = {
      min: late(histogram.min),
      max: late(histogram.max),
      mean: late(histogram.mean),
      stddev: Number.isFinite(histogram.stddev) ? histogram.stddev / 1e9 : 0,
      p50: late(histogram.percentile(50)),
      p90: late(histogram.percentile(90)),
      p99: late(histogram.percentile(99)),
    };
    for (const [s, g] of gauges) g.set(values[s]);
    histogram.reset();
  };
  for (const s of STATS) {
    gauges.set(s, new Gauge({
      name: `${prefix}nodejs_eventloop_lag_${s}_seconds`,
      help: `The ${s} event-loop lag since the last scrape (the delay beyond the ${resolutionMs} ms sampling interval).`,
      registers: [registry],
      // The first gauge collected reads the histogram for all of them (as prom-client does).
      ...(s === 'min' ? { collect: read } : {}),
    }));
  }
}
