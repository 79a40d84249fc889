import { be, PgError, SqlState } from '../protocol/index.js';
import type { Session } from '../pipeline/session.js';

export interface ExpiryPolicy {
  /** `close` ends the session at its first idle point after expiry; `ignore` lets it run. */
  mode: 'close' | 'ignore';
  toleranceMs: number;
  /** How long before expiry the client is warned with a NoticeResponse (0: no warning). */
  warningMs: number;
  /** Told each time expiry closes a session (`pgward_sessions_closed_total{reason="expired"}`). */
  closed?(): void;
}

/** Largest delay setTimeout accepts; later deadlines are re-armed in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

function at(when: number, fn: () => void): () => void {
  let timer: NodeJS.Timeout;
  const arm = () => {
    const delay = when - Date.now();
    if (delay <= 0) return fn();
    timer = setTimeout(delay > MAX_TIMER_MS ? arm : fn, Math.min(delay, MAX_TIMER_MS));
    timer.unref();
  };
  arm();
  return () => clearTimeout(timer);
}

/**
 * Watches a session whose credential expires at `expiresAt` (ms): warns the client, then closes
 * the session with FATAL 28P01 "token expired" as soon as it is idle (a transaction may finish).
 * Returns a function that cancels the watch.
 */
export function watchExpiry(session: Session, expiresAt: number, policy: ExpiryPolicy): () => void {
  if (policy.mode === 'ignore') return () => {};
  const cancels: (() => void)[] = [];
  if (policy.warningMs > 0) {
    cancels.push(
      at(expiresAt - policy.warningMs, () => {
        const seconds = Math.max(0, Math.round((expiresAt - Date.now()) / 1000));
        session.notifyClient(
          be.noticeResponse({
            severity: 'WARNING',
            severityV: 'WARNING',
            code: '01000',
            message: `token expires in ${seconds} s; the session will be closed when it is idle after that`,
            hint: 'Reconnect with a fresh token.',
          }),
        );
      }),
    );
  }
  cancels.push(
    at(expiresAt + policy.toleranceMs, () => {
      session.log.info('token expired', { identity: session.identity });
      session.state.whenIdle(() => {
        // The client may have left while the session waited to become idle: nothing to close then.
        if (session.state.phase === 'closed') return;
        session.close(new PgError('FATAL', SqlState.InvalidPassword, 'token expired', { hint: 'Reconnect with a fresh token.' }));
        policy.closed?.();
      });
    }),
  );
  return () => cancels.forEach((c) => c());
}
