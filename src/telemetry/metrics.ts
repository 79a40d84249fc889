/**
 * pgward's Prometheus metrics (SPEC §7), on a private prom-client registry.
 *
 * Names start with `pgward_`, are in base units (seconds, bytes) and counters end in `_total`.
 * Label values come from fixed sets or are configured names checked for shape
 * ({@link boundedName}); anything else becomes `other`, so no user name, token or query text can
 * ever become a label and the number of series stays bounded.
 */
import { readFileSync } from 'node:fs';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { realEventLoopLag } from './event-loop.js';
import { Tally } from './tally.js';
import { AUTH_RESULTS, boundedName, normalizeAuthReason, type AuthOutcome } from './spans.js';

/** Histogram buckets in seconds, from the OpenTelemetry database client conventions. */
export const DURATION_BUCKETS: readonly number[] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10];

export const CONNECTION_RESULTS = ['accepted', 'refused', 'abandoned', 'discovery', 'failed', 'draining', 'other'] as const;
/**
 * How a client connection ended its startup: `accepted` (relaying, or the admin console),
 * `refused` (authentication, policy, protocol or the backend said no), `abandoned` (the client
 * closed before the login was done, e.g. psql's password-less first try), `discovery` (an OAuth
 * client asked where to get a token; it reconnects with one), `failed` (backend unreachable or internal error),
 * `draining` (turned away during drain), `other` (a result this version does not name).
 */
export type ConnectionResult = (typeof CONNECTION_RESULTS)[number];

export const BYTE_DIRECTIONS = ['client_to_backend', 'backend_to_client'] as const;
export type ByteDirection = (typeof BYTE_DIRECTIONS)[number];

/** Running totals of one session's relayed bytes, only ever growing. */
export interface ByteCounts {
  readonly bytesToClient: number;
  readonly bytesToBackend: number;
}

export interface Metrics {
  readonly registry: Registry;
  /** A client connection was accepted (socket open): active +1. */
  connectionOpened(): void;
  /** A client connection closed: active -1. */
  connectionClosed(): void;
  /** The outcome of a connection's startup; see {@link ConnectionResult}. */
  connectionResult(result: ConnectionResult): void;
  /** One authentication attempt. `reason` is free text or a reason name, mapped onto a fixed set. */
  authAttempt(provider: string, result: AuthOutcome, reason?: string): void;
  /** Time from dialling the backend to its ReadyForQuery. */
  backendConnected(seconds: number): void;
  /** One statement, from sending it to its completion (or error). */
  query(durationSeconds: number, ok: boolean): void;
  /**
   * Counts a session's relayed bytes while it lives: read at each scrape (so a long session's
   * traffic shows as it happens, at no cost per message) and once more by the returned `done`.
   */
  trackBytes(counts: ByteCounts): () => void;
  /** Runs `fn` at every scrape before the statement metrics are read (to hand in what was measured elsewhere); returns its removal. */
  beforeStatementScrape(fn: () => void): () => void;
  configReload(ok: boolean): void;
  setDraining(draining: boolean): void;
  pluginError(plugin: string): void;
  /** A client's CancelRequest, or a peer's forwarded one, by where it went. */
  cancelRequest(result: CancelResult): void;
  /**
   * Which carrier carries a session (`native` or `js`), for its whole life.
   */
  relaySession(kind: RelayKind): void;
  /** Connections accepted and not yet in the relay (negotiating, authenticating, connecting), now. */
  setLoginsPending(n: number): void;
  /** A connection turned away at accept by a connection limit, by which one (also counted as `refused`). */
  connectionLimited(reason: LimitReason): void;
}

export const LIMIT_REASONS = ['max_connections', 'max_pending_logins', 'max_pending_logins_per_address'] as const;
export type LimitReason = (typeof LIMIT_REASONS)[number];

export const RELAY_KINDS = ['native', 'js'] as const;
export type RelayKind = (typeof RELAY_KINDS)[number];

export const CANCEL_RESULTS = ['backend', 'peer', 'from_peer', 'unknown', 'rejected', 'failed'] as const;
/**
 * `backend`: sent to a local session's backend; `peer`: forwarded to the instance that issued the
 * key; `from_peer`: a peer's forwarded cancel sent to a local backend; `unknown`: no session has
 * the key (dropped); `rejected`: a peer frame failed authentication; `failed`: a network error.
 */
export type CancelResult = (typeof CANCEL_RESULTS)[number];

export interface MetricsOptions {
  /** Registry to register into; a new private one by default. */
  registry?: Registry;
  /** Also collect Node process metrics (`pgward_process_*`, `pgward_nodejs_*`); default true. */
  collectDefault?: boolean;
  /** The `version` label of `pgward_build_info`; default: package.json's. */
  version?: string;
}

/**
 * Sampling interval of the event-loop delay histogram among the process metrics, in ms. Its timer
 * wakes the process this often even when idle, so it is coarser than prom-client's 10 ms.
 */
const EVENT_LOOP_PRECISION_MS = 100;

export function createMetrics(opts: MetricsOptions = {}): Metrics {
  const registry = opts.registry ?? new Registry();
  const registers = [registry];
  if (opts.collectDefault ?? true) {
    collectDefaultMetrics({
      register: registry,
      prefix: 'pgward_',
      eventLoopMonitoringPrecision: EVENT_LOOP_PRECISION_MS,
    });
    realEventLoopLag(registry, 'pgward_', EVENT_LOOP_PRECISION_MS);
  }

  // What a login counts is kept in plain numbers and tallies, set or added at scrape time (see Tally).
  const now = { active: 0, pendingLogins: 0 };
  const active = new Gauge({
    name: 'pgward_connections_active',
    help: 'Client connections open now.',
    registers,
    collect() {
      active.set(now.active);
    },
  });
  const connectionTally = new Tally<'result'>((l) => l.result!);
  const connections = new Counter({
    name: 'pgward_connections_total',
    help: 'Client connections by outcome of their startup.',
    labelNames: ['result'] as const,
    registers,
    collect() {
      connectionTally.publish(connections);
    },
  });
  const authTally = new Tally<'provider' | 'result' | 'reason'>((l) => `${l.provider}\0${l.result}\0${l.reason}`);
  const auth = new Counter({
    name: 'pgward_auth_attempts_total',
    help: 'Authentication attempts by provider, result and reason.',
    labelNames: ['provider', 'result', 'reason'] as const,
    registers,
    collect() {
      authTally.publish(auth);
    },
  });
  const backendConnect = new Histogram({
    name: 'pgward_backend_connect_seconds',
    help: 'Time to connect and log in to a backend, in seconds.',
    buckets: [...DURATION_BUCKETS],
    registers,
  });
  // Counted in plain numbers per statement and handed to prom-client at scrape time: its `inc`
  // with a label set hashes the labels on every call (~0.25 µs, once per statement).
  const unpublishedQueries = { ok: 0, error: 0 };
  // Native relays hand their statement timings in here; registered before the histogram, so a
  // scrape sees them in both metrics.
  const statementSources = new Set<() => void>();
  const queries = new Counter({
    name: 'pgward_queries_total',
    help: 'Statements relayed, by result.',
    labelNames: ['result'] as const,
    registers,
    collect() {
      for (const drain of statementSources) drain();
      for (const result of ['ok', 'error'] as const) {
        const n = unpublishedQueries[result];
        if (n === 0) continue;
        unpublishedQueries[result] = 0;
        queries.inc({ result }, n);
      }
    },
  });
  const queryDuration = new Histogram({
    name: 'pgward_query_duration_seconds',
    help: 'Statement duration seen by the proxy, in seconds.',
    buckets: [...DURATION_BUCKETS],
    registers,
  });
  // The relay only adds to plain numbers; live sessions are read here at scrape time, so the
  // hot path does no metrics work and a long session's bytes still show while it runs.
  const trackedBytes = new Set<TrackedBytes>();
  const bytesCounter = new Counter({
    name: 'pgward_bytes_total',
    help: 'Bytes relayed, by direction.',
    labelNames: ['direction'] as const,
    registers,
    collect() {
      for (const t of trackedBytes) publishBytes(t);
    },
  });
  for (const direction of BYTE_DIRECTIONS) bytesCounter.inc({ direction }, 0);
  const publishBytes = (t: TrackedBytes) => {
    const toClient = t.counts.bytesToClient;
    const toBackend = t.counts.bytesToBackend;
    if (toClient > t.toClient) {
      bytesCounter.inc({ direction: 'backend_to_client' }, toClient - t.toClient);
      t.toClient = toClient;
    }
    if (toBackend > t.toBackend) {
      bytesCounter.inc({ direction: 'client_to_backend' }, toBackend - t.toBackend);
      t.toBackend = toBackend;
    }
  };
  const reloads = new Counter({
    name: 'pgward_config_reloads_total',
    help: 'Configuration reloads, by result.',
    labelNames: ['result'] as const,
    registers,
  });
  const draining = new Gauge({ name: 'pgward_draining', help: '1 while draining, else 0.', registers });
  const pluginErrors = new Counter({
    name: 'pgward_plugin_errors_total',
    help: 'Errors thrown by plugins, by plugin.',
    labelNames: ['plugin'] as const,
    registers,
  });
  const cancels = new Counter({
    name: 'pgward_cancel_requests_total',
    help: 'Cancel requests, by where they went.',
    labelNames: ['result'] as const,
    registers,
  });
  const relayTally = new Tally<'relay'>((l) => l.relay!);
  const relays = new Counter({
    name: 'pgward_relay_sessions_total',
    help: 'Sessions by the carrier that carried them: native (the C addon) or js (JavaScript).',
    labelNames: ['relay'] as const,
    registers,
    collect() {
      relayTally.publish(relays);
    },
  });
  const pendingLogins = new Gauge({
    name: 'pgward_logins_pending',
    help: 'Client connections still logging in (not yet in the relay), now.',
    registers,
    collect() {
      pendingLogins.set(now.pendingLogins);
    },
  });
  const limited = new Counter({
    name: 'pgward_connections_limited_total',
    help: 'Connections turned away by a connection limit, by limit.',
    labelNames: ['reason'] as const,
    registers,
  });
  const buildInfo = new Gauge({
    name: 'pgward_build_info',
    help: 'Always 1; the version is a label.',
    labelNames: ['version'] as const,
    registers,
  });

  // Series of the small fixed label sets exist from the start, at 0.
  for (const result of CONNECTION_RESULTS) connections.inc({ result }, 0);
  for (const result of ['ok', 'error']) {
    queries.inc({ result }, 0);
    reloads.inc({ result }, 0);
  }
  for (const result of CANCEL_RESULTS) cancels.inc({ result }, 0);
  for (const relay of RELAY_KINDS) relays.inc({ relay }, 0);
  for (const reason of LIMIT_REASONS) limited.inc({ reason }, 0);
  draining.set(0);
  buildInfo.set({ version: opts.version ?? packageVersion() }, 1);

  const connectionResults: ReadonlySet<string> = new Set(CONNECTION_RESULTS);
  const authResults: ReadonlySet<string> = new Set(AUTH_RESULTS);

  return {
    registry,
    connectionOpened: () => void now.active++,
    connectionClosed: () => void now.active--,
    connectionResult: (result) => connectionTally.add({ result: connectionResults.has(result) ? result : 'other' }),
    authAttempt: (provider, result, reason) =>
      authTally.add({
        provider: boundedName(provider),
        result: authResults.has(result) ? result : 'error',
        reason: normalizeAuthReason(reason ?? (result === 'success' ? undefined : 'other')),
      }),
    backendConnected: (seconds) => backendConnect.observe(seconds),
    query: (seconds, ok) => {
      if (ok) unpublishedQueries.ok++;
      else unpublishedQueries.error++;
      queryDuration.observe(seconds);
    },
    trackBytes: (counts) => {
      const t: TrackedBytes = { counts, toClient: 0, toBackend: 0 };
      trackedBytes.add(t);
      return () => {
        if (!trackedBytes.delete(t)) return;
        publishBytes(t);
      };
    },
    beforeStatementScrape: (fn) => {
      statementSources.add(fn);
      return () => void statementSources.delete(fn);
    },
    configReload: (ok) => reloads.inc({ result: ok ? 'ok' : 'error' }),
    setDraining: (b) => draining.set(b ? 1 : 0),
    pluginError: (plugin) => pluginErrors.inc({ plugin: boundedName(plugin) }),
    cancelRequest: (result) => cancels.inc({ result: (CANCEL_RESULTS as readonly string[]).includes(result) ? result : 'failed' }),
    relaySession: (relay) => relayTally.add({ relay }),
    setLoginsPending: (n) => void (now.pendingLogins = n),
    connectionLimited: (reason) => {
      connectionTally.add({ result: 'refused' });
      limited.inc({ reason });
    },
  };
}

interface TrackedBytes {
  readonly counts: ByteCounts;
  /** What has been published so far. */
  toClient: number;
  toBackend: number;
}

function packageVersion(): string {
  try {
    // dist/src/telemetry/metrics.js → the package root.
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}
