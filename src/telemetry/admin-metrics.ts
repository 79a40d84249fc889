import { Counter, Gauge, type Registry } from 'prom-client';

export const CLOSE_REASONS = ['admin', 'revoked', 'expired', 'drain'] as const;
export type CloseReason = (typeof CLOSE_REASONS)[number];

/** The console's and revocation's metrics, registered beside the others. */
export interface AdminMetrics {
  /** A session pgward itself closed, by why. */
  sessionClosed(reason: CloseReason): void;
  setRevocations(n: number): void;
  /** The revocation file could not be read or parsed (the previous list stays). */
  revocationLoadFailed(): void;
}

export function createAdminMetrics(registry: Registry): AdminMetrics {
  const registers = [registry];
  const closed = new Counter({
    name: 'pgward_sessions_closed_total',
    help: 'Sessions pgward closed itself, by reason (admin: KILL; revoked: a revocation; expired: token expiry; drain: shutdown).',
    labelNames: ['reason'] as const,
    registers,
  });
  const revocations = new Gauge({ name: 'pgward_revocations', help: 'Revocation entries in force.', registers });
  const loadErrors = new Counter({
    name: 'pgward_revocation_load_errors_total',
    help: 'Times the revocation file could not be read or parsed (the last good list was kept).',
    registers,
  });
  for (const reason of CLOSE_REASONS) closed.inc({ reason }, 0);
  revocations.set(0);
  loadErrors.inc(0);
  return {
    sessionClosed: (reason) => closed.inc({ reason }),
    setRevocations: (n) => revocations.set(n),
    revocationLoadFailed: () => loadErrors.inc(),
  };
}
