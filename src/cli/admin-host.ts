import { existsSync } from 'node:fs';
import type { ConsoleHost, SessionView } from '../admin/commands.js';
import { RevocationStore } from '../admin/revocations.js';
import { consoleEnabled, type AdminConfig } from '../config/admin-config.js';
import { ConfigError } from '../config/load.js';
import type { ProxyConfig } from '../config/proxy-config.js';
import type { Session } from '../pipeline/session.js';
import { PgError, SqlState } from '../protocol/index.js';
import { tokenInfo, type AdminHook } from '../server/admin-session.js';
import { statementsOf } from '../server/statement-telemetry.js';
import type { ExpiryPolicy } from '../server/token-expiry.js';
import { createAdminMetrics, type AdminMetrics } from '../telemetry/admin-metrics.js';
import type { Logger } from '../telemetry/log.js';
import type { Metrics } from '../telemetry/metrics.js';
import { formatHostPort } from '../util/host-port.js';

export interface AdminRuntime {
  hook: AdminHook;
  revocations: RevocationStore;
  metrics: AdminMetrics;
  revoked(subject: string | undefined, tokenId: string | undefined): boolean;
  /** Re-reads the revocation file (keeping the last good list when it is broken) and closes what it now revokes. */
  refresh(trigger: string): void;
  /** Takes a reloaded `admin:` (who may use the console, its database name) for new connections. */
  reconfigure(admin: AdminConfig): void;
  /** `policy` with its closes counted as `pgward_sessions_closed_total{reason="expired"}`. */
  expiryPolicy(policy: Omit<ExpiryPolicy, 'closed'>): ExpiryPolicy;
  /** A session closed for a shutdown (at its first idle point, or at the grace period): counted once. */
  drainClosed(sessionId: string): void;
}

export interface AdminRuntimeOptions {
  config: ProxyConfig;
  version: string;
  sessions(): Iterable<Session>;
  metrics: Metrics;
  log: Logger;
  /** What RELOAD does beyond re-reading revocations (SIGHUP's configuration reload under `pgward start`). */
  reload?(): Promise<void>;
  /** SHOW POOLS: the backend pool's targets now. */
  pools?: ConsoleHost['pools'];
}

function stateOf(s: Session): string {
  if (s.state.unanswered > 0) return 'active';
  return s.state.transactionStatus === 'I' ? 'idle' : 'idle in transaction';
}

function viewOf(s: Session): SessionView {
  const info = tokenInfo(s);
  return {
    id: s.id,
    subject: info?.subject,
    user: s.user,
    database: s.database,
    clientAddr: s.client.address,
    backend: s.backend ? formatHostPort(s.backend.address, s.backend.port) : undefined,
    state: info?.console ? 'active' : stateOf(s),
    tls: s.client.tls,
    relay: info?.relay,
    started: info ? new Date(info.started) : undefined,
    tokenExpires: info?.expiresAt !== undefined ? new Date(info.expiresAt) : undefined,
    bytesIn: info?.traffic?.bytesToBackend,
    bytesOut: info?.traffic?.bytesToClient,
    statements: statementsOf(s),
  };
}

/** Totals since start, from the metrics registry (every pgward_*_total series). */
async function stats(metrics: Metrics): Promise<[string, number][]> {
  const rows: [string, number][] = [];
  for (const m of await metrics.registry.getMetricsAsJSON()) {
    if (!m.name.endsWith('_total') || !m.name.startsWith('pgward_')) continue;
    for (const v of m.values) {
      const labels = Object.entries(v.labels).map(([k, l]) => `${k}="${String(l)}"`).join(',');
      rows.push([labels ? `${m.name}{${labels}}` : m.name, v.value]);
    }
  }
  return rows;
}

/** The console's hook, reading `admin:` as it was last reloaded. */
function reloadableHook(initial: AdminConfig, host: ConsoleHost): Pick<AdminRuntime, 'hook' | 'reconfigure'> {
  let admin = initial;
  return {
    hook: {
      get enabled() {
        return consoleEnabled(admin);
      },
      get database() {
        return admin.database;
      },
      host,
    },
    reconfigure: (next) => void (admin = next),
  };
}

/** Counting of the closes that happen outside the console: token expiry and a shutdown. */
function closeCounters(metrics: AdminMetrics): Pick<AdminRuntime, 'expiryPolicy' | 'drainClosed'> {
  const drained = new Set<string>();
  return {
    expiryPolicy: (policy) => ({ ...policy, closed: () => metrics.sessionClosed('expired') }),
    drainClosed: (id) => {
      if (drained.has(id)) return;
      drained.add(id);
      metrics.sessionClosed('drain');
    },
  };
}

/** The revocation list, the console's host and the admin metrics of one proxy. */
export function createAdminRuntime(opts: AdminRuntimeOptions): AdminRuntime {
  const { config, log } = opts;
  const path = config.revocationsPath;
  const revocations = new RevocationStore(path);
  const metrics = createAdminMetrics(opts.metrics.registry);
  if (path && existsSync(path)) {
    try {
      revocations.load();
    } catch (err) {
      throw new ConfigError([`revocations: ${path}: ${(err as Error).message}`]);
    }
  }
  metrics.setRevocations(revocations.size);
  const closeWhere = (match: (s: Session) => boolean, error: PgError, reason: 'admin' | 'revoked') => {
    let n = 0;
    for (const s of opts.sessions()) {
      if (s.state.phase === 'closed' || !match(s)) continue;
      s.close(error);
      metrics.sessionClosed(reason);
      n++;
    }
    return n;
  };
  const enforce = () => {
    metrics.setRevocations(revocations.size);
    const n = closeWhere(
      (s) => {
        const info = tokenInfo(s);
        return info !== undefined && revocations.match(info.subject, info.tokenId) !== undefined;
      },
      new PgError('FATAL', SqlState.InvalidPassword, 'token revoked'),
      'revoked',
    );
    if (n > 0) log.info('sessions of revoked tokens closed', { sessions: n });
    return n;
  };
  const refresh = (trigger: string) => {
    if (path && existsSync(path)) {
      try {
        revocations.load();
      } catch (err) {
        metrics.revocationLoadFailed();
        log.error('revocation file not loaded; keeping the last good list', { trigger, file: path, reason: (err as Error).message });
      }
    }
    enforce();
  };
  const host: ConsoleHost = {
    version: opts.version,
    sessions: () => [...opts.sessions()].map(viewOf),
    pools: opts.pools,
    stats: () => stats(opts.metrics),
    revocations,
    kill: ({ session, subject }) =>
      closeWhere(
        (s) => (session !== undefined ? s.id === session : (tokenInfo(s)?.subject ?? s.identity) === subject),
        new PgError('FATAL', SqlState.AdminShutdown, 'terminated by administrator'),
        'admin',
      ),
    enforceRevocations: enforce,
    reload: async () => {
      refresh('RELOAD');
      await opts.reload?.();
    },
  };
  return {
    ...reloadableHook(config.admin, host),
    ...closeCounters(metrics),
    revocations,
    metrics,
    revoked: (subject, tokenId) => revocations.match(subject, tokenId) !== undefined,
    refresh,
  };
}
