import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { DURATION_BUCKETS } from './metrics.js';
import { Tally } from './tally.js';

export const POOL_ACQUIRE_RESULTS = ['reused', 'new', 'timeout'] as const;
export type PoolAcquireResult = (typeof POOL_ACQUIRE_RESULTS)[number];

/** One target's connections now, as the pool counts them. */
export interface PoolGaugeSource {
  stats(): readonly { target: string; active: number; idle: number }[];
}

/** Backend connection reuse (SPEC §8), registered beside the other metrics. */
export interface PoolMetrics {
  /** A session got a backend connection from the pool (or gave up waiting), after `waitedSeconds`. */
  acquired(target: string, result: PoolAcquireResult, waitedSeconds: number): void;
  /** Reads connection counts from `source` at each scrape. */
  watch(source: PoolGaugeSource): void;
}

/**
 * `target` labels are `user@host:port/database` (never a password): one series per target a
 * token maps to, as bounded as the backends file's mapping.
 */
export function createPoolMetrics(registry: Registry): PoolMetrics {
  const registers = [registry];
  let source: PoolGaugeSource | undefined;
  const connections: Gauge<'target' | 'state'> = new Gauge({
    name: 'pgward_pool_connections',
    help: 'Backend connections kept by the pool, by target and state (idle, or active: lent to a session, being opened or reset).',
    labelNames: ['target', 'state'] as const,
    registers,
    collect() {
      connections.reset();
      for (const s of source?.stats() ?? []) {
        connections.set({ target: s.target, state: 'idle' }, s.idle);
        connections.set({ target: s.target, state: 'active' }, s.active);
      }
    },
  });
  const acquireTally = new Tally<'target' | 'result'>((l) => `${l.result}\0${l.target}`);
  const acquires = new Counter({
    name: 'pgward_pool_acquire_total',
    help: 'Sessions given a backend connection by the pool, by target and result (reused, new, or timeout: waited pool.waitTimeout in vain).',
    labelNames: ['target', 'result'] as const,
    registers,
    collect() {
      acquireTally.publish(acquires);
    },
  });
  const wait = new Histogram({
    name: 'pgward_pool_wait_seconds',
    help: 'Time a session took to get a backend connection from the pool (waiting for a free one, resetting, opening), in seconds.',
    buckets: [0.0001, 0.0005, ...DURATION_BUCKETS],
    registers,
  });
  return {
    acquired: (target, result, waitedSeconds) => {
      acquireTally.add({ target, result });
      wait.observe(waitedSeconds);
    },
    watch: (s) => {
      source = s;
    },
  };
}
